"""Browser clients: CORS is off unless GREENLIGHT_CORS_ORIGINS lists origins, and then
preflights from those origins are answered and no other origin is let in; and GraphQL over
HTTP's `application/graphql-response+json`, with which a request that fails before
execution gets a 4xx status and no `data`."""

from __future__ import annotations

import httpx
import pytest

from greenlight.app import create_app
from greenlight.config import ConfigError, Settings

ALLOWED = "https://console.example.com"
OTHER = "https://evil.example.net"
GRAPHQL_RESPONSE = "application/graphql-response+json"
ME = {"query": "query Me { me { email } }"}


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


@pytest.fixture
def settings(database_url) -> Settings:
    return Settings(
        database_url=database_url,
        background_jobs=False,
        mutations_per_minute=0,
        cors_origins=(ALLOWED, "http://localhost:5173"),
    )


@pytest.fixture
async def closed_http(database, database_url):
    """The app with the default configuration: no CORS origins."""
    app = create_app(Settings(database_url=database_url, background_jobs=False), manage_database=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://greenlight.test"
    ) as http:
        yield http


async def test_cors_is_off_by_default(closed_http, world):
    preflight = await closed_http.options("/graphql", headers=preflight_headers(ALLOWED))
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code in (400, 405), preflight.status_code
    answer = await closed_http.post(
        "/graphql", json=ME, headers={"Origin": ALLOWED, "Authorization": f"Bearer {world['dev'].token}"}
    )
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


async def test_cors_preflight_from_an_allowed_origin_is_answered(http):
    response = await http.options("/graphql", headers=preflight_headers(ALLOWED))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers and "content-type" in allowed_headers
    assert "access-control-allow-credentials" not in response.headers


async def test_cors_other_origins_are_not_let_in(http, world):
    refused = await http.options("/graphql", headers=preflight_headers(OTHER))
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    answer = await http.post(
        "/graphql", json=ME, headers={"Origin": OTHER, "Authorization": f"Bearer {world['dev'].token}"}
    )
    assert "access-control-allow-origin" not in answer.headers


async def test_cors_allowed_origin_reads_the_answer_and_its_request_id(http, world):
    answer = await http.post(
        "/graphql",
        json=ME,
        headers={"Origin": ALLOWED, "Authorization": f"Bearer {world['dev'].token}"},
    )
    assert answer.status_code == 200
    assert answer.json() == {"data": {"me": {"email": "dev@example.com"}}}
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()


def test_cors_origins_setting_is_a_comma_separated_list_of_origins():
    env = {"GREENLIGHT_CORS_ORIGINS": " https://a.example.com, http://localhost:5173/ ,"}
    assert Settings.from_env(env).cors_origins == ("https://a.example.com", "http://localhost:5173")
    assert Settings.from_env({}).cors_origins is None
    with pytest.raises(ConfigError, match="GREENLIGHT_CORS_ORIGINS"):
        Settings.from_env({"GREENLIGHT_CORS_ORIGINS": "a.example.com"})


async def post(http, body, accept: str, token: str | None = None, **kwargs) -> httpx.Response:
    headers = {"Accept": accept}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return await http.post("/graphql", json=body, headers=headers, **kwargs)


async def test_graphql_response_media_type_when_the_client_accepts_it(world):
    token = world["dev"].token
    answer = await post(world.http, ME, f"{GRAPHQL_RESPONSE}, application/json;q=0.9", token)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert answer.json() == {"data": {"me": {"email": "dev@example.com"}}}
    # Plain JSON for clients that prefer it or do not name the new type.
    for accept in ("application/json", "*/*", f"application/json, {GRAPHQL_RESPONSE};q=0.5"):
        plain = await post(world.http, ME, accept, token)
        assert plain.headers["content-type"].startswith("application/json"), accept


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"query": "query Broken { me { email }"}, 400, "BAD_USER_INPUT"),
        ({"query": "{ noSuchField }"}, 400, "BAD_USER_INPUT"),
        ({"query": "query($id: ID!) { pipeline(id: $id) { id } }", "variables": {}}, 400, "BAD_USER_INPUT"),
    ],
)
async def test_graphql_response_request_errors_get_a_4xx_and_no_data(world, body, status, code):
    answer = await post(world.http, body, GRAPHQL_RESPONSE, world["dev"].token)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    payload = answer.json()
    assert "data" not in payload
    assert payload["errors"][0]["extensions"]["code"] == code
    # The same request with Accept: application/json keeps today's 200 with data null.
    legacy = await post(world.http, body, "application/json", world["dev"].token)
    assert legacy.status_code == 200
    assert legacy.json()["data"] is None


async def test_graphql_response_without_credentials_is_401(world):
    answer = await post(world.http, ME, GRAPHQL_RESPONSE)
    assert answer.status_code == 401
    assert answer.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "data" not in answer.json()


async def test_graphql_response_field_errors_stay_200_with_data(world):
    """Refused inside execution (FORBIDDEN on a field) is a GraphQL response with data: 200."""
    answer = await post(
        world.http, {"query": "query ListUsers { users { id } }"}, GRAPHQL_RESPONSE, world["dev"].token
    )
    assert answer.status_code == 200
    payload = answer.json()
    assert "data" in payload
    assert payload["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_graphql_response_malformed_body_is_a_json_400(world):
    answer = await world.http.post(
        "/graphql",
        content=b"{not json",
        headers={"Accept": GRAPHQL_RESPONSE, "Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_graphql_response_rate_limited_mutation_is_429(world, database_url):
    from dataclasses import replace

    app = create_app(
        replace(Settings(database_url=database_url, background_jobs=False), mutations_per_minute=1),
        manage_database=False,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://greenlight.test"
    ) as http:
        answers = [
            await post(
                http,
                {"query": f'mutation {{ createEnvironment(name: "rate-{n}") {{ id }} }}'},
                GRAPHQL_RESPONSE,
                world["admin"].token,
            )
            for n in range(2)
        ]
    assert answers[0].status_code == 200, answers[0].text
    assert answers[1].status_code == 429, answers[1].text
    assert answers[1].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert "data" not in answers[1].json()
    assert answers[1].headers["Retry-After"]
