"""The console and GraphiQL are served by Greenlight itself, every asset from the Python
package (greenlight/console/static/): nothing is loaded from outside."""

from __future__ import annotations

import re

import httpx

from greenlight.app import create_app
from greenlight.config import Settings

ASSET = re.compile(r"""(?:src|href)="([^"]+)\"""")


def _client() -> httpx.AsyncClient:
    app = create_app(Settings(database_url="sqlite://:memory:", background_jobs=False), manage_database=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def test_graphiql_page_loads_every_asset_from_greenlight():
    async with _client() as http:
        page = await http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert "graphiql" in page.text.lower()
        assets = [a for a in ASSET.findall(page.text) if not a.startswith("data:")]
        assert len(assets) >= 5, assets
        for asset in assets:
            assert asset.startswith("/console/vendor/"), f"GraphiQL loads {asset} from outside Greenlight"
            answer = await http.get(asset)
            assert answer.status_code == 200, asset
            assert len(answer.content) > 500, asset


async def test_console_is_served_at_the_root_with_its_bundle():
    async with _client() as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-cache"
        assets = ASSET.findall(page.text)
        assert "/console/app/console.js" in assets and "/console/app/console.css" in assets
        for asset in assets:
            if asset.startswith("data:"):
                continue
            answer = await http.get(asset)
            assert answer.status_code == 200, asset
        script = await http.get("/console/app/console.js")
        assert "javascript" in script.headers["content-type"]
        # Still a GraphQL API for programs: a query over GET answers JSON, not the page.
        query = await http.get("/graphql", params={"query": "{ __typename }"})
        assert query.headers["content-type"].startswith("application/json")


def test_console_bundle_is_within_its_budget_compressed():
    from greenlight.console import budget

    sizes = budget.bundle_bytes()
    assert 10_000 < sizes["total"] < budget.BUNDLE_BUDGET_BYTES, sizes


async def test_console_page_names_the_identity_provider_only_where_single_sign_on_is_set():
    """Single sign-on in the browser: the console learns the issuer, its client id and scopes from
    its own page, without a private API; without a client id the page offers tokens only."""
    settings = Settings(
        database_url="sqlite://:memory:",
        background_jobs=False,
        oidc_issuer="https://idp.example.com/realms/acme",
        jwt_audience="greenlight-console",
        oidc_client_id="greenlight-console",
    )
    app = create_app(settings, manage_database=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
        page = (await http.get("/")).text
    assert '<meta name="greenlight-oidc-issuer" content="https://idp.example.com/realms/acme" />' in page
    assert '<meta name="greenlight-oidc-client-id" content="greenlight-console" />' in page
    assert '<meta name="greenlight-oidc-scopes" content="openid email profile" />' in page
    async with _client() as http:
        assert "greenlight-oidc" not in (await http.get("/")).text


def test_console_client_id_needs_the_issuer_it_is_discovered_from():
    """Single sign-on in the browser: a client id without GREENLIGHT_OIDC_ISSUER stops the start."""
    import pytest

    from greenlight.config import ConfigError

    with pytest.raises(ConfigError, match="GREENLIGHT_OIDC_CLIENT_ID needs GREENLIGHT_OIDC_ISSUER"):
        Settings.from_env({"GREENLIGHT_OIDC_CLIENT_ID": "greenlight-console"})
    with pytest.raises(ConfigError, match="must include openid"):
        Settings.from_env(
            {
                "GREENLIGHT_OIDC_ISSUER": "https://idp.example.com",
                "GREENLIGHT_JWT_AUDIENCE": "c",
                "GREENLIGHT_OIDC_SCOPES": "email profile",
            }
        )
