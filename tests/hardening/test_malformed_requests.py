"""Bad input is refused clearly, never a bare 500 nor INTERNAL, and writes nothing: bodies that
are not a JSON object, JSON nested beyond reading, bytes that are not UTF-8, `query`,
`operationName` or `variables` of the wrong type, lone surrogates in any text, and one-click
links that are not link tokens at all."""

import json
from datetime import timedelta

import pytest

from greenlight.clock import now
from greenlight.config import Settings
from greenlight.models import Approval
from greenlight.notifications import links

SECRET = "a-test-secret-key-of-at-least-32-characters"


@pytest.fixture
def settings(database_url) -> Settings:
    # Email on (nothing is sent: no background jobs), so the one-click pages exist.
    return Settings(
        database_url=database_url,
        background_jobs=False,
        mutations_per_minute=0,
        smtp_host="127.0.0.1",
        smtp_port=9,
        smtp_from="greenlight@example.com",
        secret_key=SECRET,
    )


async def post_json(world, who: str, query: str, variables: dict):
    """POST as a client whose JSON encoder writes lone surrogates as escapes (\\ud800)."""
    return await post(world, json.dumps({"query": query, "variables": variables}).encode(), who)


async def post(world, body: bytes, who: str = "admin"):
    return await world.http.post(
        "/graphql",
        content=body,
        headers={"Authorization": f"Bearer {world[who].token}", "Content-Type": "application/json"},
    )


NOT_AN_OBJECT = [
    pytest.param(b"null", id="null"),
    pytest.param(b"1", id="number"),
    pytest.param(b'"x"', id="string"),
    pytest.param(b"true", id="true"),
    pytest.param(b"", id="empty"),
]


@pytest.mark.parametrize("body", NOT_AN_OBJECT)
async def test_a_body_that_is_not_a_json_object_is_http_400(world, unchanged, body):
    async with unchanged():
        response = await post(world, body)
    assert response.status_code == 400
    assert "JSON object" in response.text


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="arrays"),
        pytest.param(b'{"query": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001, id="objects"),
        pytest.param(
            b'{"query": "{ me { id } }", "variables": {"v": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}",
            id="variables",
        ),
    ],
)
async def test_deeply_nested_json_is_http_400_not_a_recursion_error(world, unchanged, body):
    async with unchanged():
        response = await post(world, body)
    assert response.status_code == 400
    assert "nested too deeply" in response.text


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            b'{"query": "mutation { createApplication(name: \\"caf\xe9\\") { id } }"}', id="latin-1"
        ),
        pytest.param(b'{"query": "\xff\xfe"}', id="invalid-bytes"),
        pytest.param(
            b'{"query": "mutation { createApplication(name: \\"\xed\xa0\x80\\") { id } }"}',
            id="encoded-surrogate",
        ),
    ],
)
async def test_bytes_that_are_not_utf8_are_http_400(world, unchanged, body):
    async with unchanged():
        response = await post(world, body)
    assert response.status_code == 400
    assert "UTF-8" in response.text


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"query": "{ me { id } }", "operationName": 5}', "operationName"),
        (b'{"query": "{ me { id } }", "operationName": ["a"]}', "operationName"),
        (b'{"query": "{ me { id } }", "operationName": {"a": 1}}', "operationName"),
        (b'{"query": 5}', "query"),
        (b'{"query": ["{ me { id } }"]}', "query"),
        (b'{"query": "{ me { id } }", "variables": [1]}', "variables"),
        (b'{"query": "{ me { id } }", "variables": "x"}', "variables"),
    ],
)
async def test_request_fields_of_the_wrong_type_are_http_400(world, unchanged, body, says):
    async with unchanged():
        response = await post(world, body)
    assert response.status_code == 400
    assert says in response.text


SURROGATE = "caf\ud800"
TEXT_INPUTS = {
    "application name": ("mutation($v: String!) { createApplication(name: $v) { id } }", {}),
    "group name": ("mutation($v: String!) { createGroup(name: $v) { id } }", {}),
    "user name": (
        'mutation($v: String!) { createUser(input: {email: "new@example.com", name: $v}) { id } }',
        {},
    ),
    "token name": (
        "mutation($v: String!, $u: ID!) { issueApiToken(input: {userId: $u, name: $v}) { token } }",
        {"u": "nobody"},
    ),
    "image tag": (
        """mutation($v: String!) { registerImage(input: {application: "shop",
             repository: "registry.example.com/acme/shop", tag: $v,
             digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}) { id } }""",
        {},
    ),
    "freeze name": (
        """mutation($v: String!, $e: ID!) { createDeployFreeze(input: {name: $v, environmentId: $e,
             startsAt: "2030-01-01T00:00:00Z", endsAt: "2030-01-02T00:00:00Z"}) { id } }""",
        {"e": "prod"},
    ),
    "audit filter": ("query($v: String) { auditEvents(filter: {action: $v}) { totalCount } }", {}),
}


def _variables(world, extra: dict) -> dict:
    named = {"nobody": world["nobody"].user_id if "nobody" in world.clients else None}
    return {k: named.get(v) or world.ids.get(v, v) for k, v in extra.items()}


@pytest.mark.parametrize("case", list(TEXT_INPUTS))
async def test_a_lone_surrogate_in_any_text_input_is_refused_and_writes_nothing(world, unchanged, case):
    query, extra = TEXT_INPUTS[case]
    variables = {"v": SURROGATE, **_variables(world, extra)}
    async with unchanged():
        response = await post_json(world, "admin", query, variables)
    assert response.status_code == 400, response.text
    assert "surrogate" in response.text


async def test_a_lone_surrogate_in_comments_and_reasons_is_refused(world, unchanged):
    image = await world.register_image()
    request = await world.request_approval(image, who="dev2")
    other = await world.register_image()
    cases = [
        (
            "dev",
            "mutation($v: String, $p: ID!, $i: ID!) {"
            " requestApproval(input: {pipelineId: $p, imageId: $i, comment: $v}) { id } }",
            {"p": world.ids["shop/prod"], "i": other},
        ),
        (
            "approver1",
            "mutation($v: String, $r: ID!) { approveRequest(id: $r, comment: $v) { id } }",
            {"r": request},
        ),
        (
            "approver1",
            "mutation($v: String!, $r: ID!) { rejectRequest(id: $r, reason: $v) { id } }",
            {"r": request},
        ),
    ]
    for who, query, variables in cases:
        async with unchanged():
            response = await post_json(world, who, query, {"v": "ok \udfff then", **variables})
        assert response.status_code == 400, (query, response.text)
        assert "surrogate" in response.text


async def test_a_lone_surrogate_escaped_in_the_query_itself_writes_nothing(world, unchanged):
    body = b'{"query": "mutation { createApplication(name: \\"x\\\\ud800\\") { id } }"}'
    async with unchanged():
        response = await post(world, body)
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_a_surrogate_pair_is_text_and_is_read():
    """A properly paired escape is one character (here an emoji), not a lone surrogate."""
    from greenlight.limits import payload

    assert payload.decode(b'{"v": "\\ud83d\\ude00"}') == {"v": "\U0001f600"}


async def test_r8_one_click_link_with_non_ascii_characters_is_http_400(world, unchanged):
    image = await world.register_image()
    request = await world.request_approval(image, who="dev2")
    token = links.make_token(
        SECRET,
        int(request.rpartition(":")[2]),
        int(world["approver1"].user_id.rpartition(":")[2]),
        now() + timedelta(hours=1),
    )
    payload_part, signature = token.split(".")
    for bad in (f"{payload_part}.é{signature[1:]}", f"é{payload_part[1:]}.{signature}", "é.é", "\u2603"):
        async with unchanged():
            page = await world.http.get("/one-click/approve", params={"token": bad})
            clicked = await world.http.post("/one-click/approve", data={"token": bad})
        for response in (page, clicked):
            assert response.status_code == 400, response.text
            assert "malformed" in response.text and "<form" not in response.text
    assert await Approval.all().count() == 0


def test_the_workflow_refuses_a_lone_surrogate_in_text_however_it_arrives():
    """Text that does not come through a JSON body (a background job, a CLI) is checked too."""
    from greenlight.errors import BadUserInput
    from greenlight.workflow import validation

    with pytest.raises(BadUserInput, match="surrogate"):
        validation.text("comment", "fine \ud800")
