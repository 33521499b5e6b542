"""The console's single sign-on, end to end: where single sign-on is configured, a person
signs in through the identity provider in the browser (OpenID Connect authorization code
with PKCE, the provider discovered from its issuer), sees their name, acts, and signing out
forgets the credentials.

The identity provider is a real one, never a mock: panva's oidc-provider (a certified
OpenID Provider; a devDependency of console/, installed by `make console`), started on
loopback by console/scripts/oidc-test-provider.mjs with one public client (PKCE, redirect URI
= the console) and one user with an email claim. Greenlight discovers the same issuer and
checks the ID token's audience against the client id. The browser reaches only the server
and the provider. Skips, saying why, when node, the provider package or Chromium is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_console_browser import (
    CHROMIUM,
    SHOTS,
    TIMEOUT_MS,
    WIDE,
    approve_awaiting,
    assert_accessible,
    chromium,
    shot,
)
from tests.e2e.test_story import (
    Api,
    Server,
    _environment,
    database_url,  # noqa: F401 (the fixture: SQLite, then PostgreSQL)
    serving,
)
from tests.support import bootstrap_token, free_port

CONSOLE = Path(__file__).resolve().parents[2] / "console"
PROVIDER_SCRIPT = CONSOLE / "scripts" / "oidc-test-provider.mjs"
NODE = shutil.which("node")
CLIENT_ID = "greenlight-console"
LIVE_MS = 15_000

pytestmark = [
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"Debian's chromium is not installed ({CHROMIUM} is missing)"
    ),
    pytest.mark.skipif(NODE is None, reason="node is not installed: the test's identity provider runs on it"),
    pytest.mark.skipif(
        not (CONSOLE / "node_modules" / "oidc-provider").is_dir(),
        reason="oidc-provider is not installed in console/node_modules: run `make console` first",
    ),
]


@pytest.fixture(scope="module")
def provider(tmp_path_factory) -> Iterator[tuple[str, int]]:
    """The identity provider, listening; yields its issuer and the console's port it sends back to."""
    port, console_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                NODE,
                str(PROVIDER_SCRIPT),
                str(port),
                CLIENT_ID,
                f"http://127.0.0.1:{console_port}/",
                "alice",
                "alice@example.com",
                "Alice from the IdP",
            ],
            cwd=CONSOLE,
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
        )
    try:
        line = process.stdout.readline()
        if not line.startswith("ready "):
            process.wait(timeout=10)
            pytest.fail(f"the identity provider did not start:\n{line}{log.read_text()}")
        yield line.split()[1], console_port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(database_url, provider, tmp_path_factory) -> Iterator[Server]:  # noqa: F811
    issuer, port = provider
    cwd = tmp_path_factory.mktemp("console-sso")
    env = _environment(database_url)
    env.update(
        GREENLIGHT_OIDC_ISSUER=issuer,
        GREENLIGHT_JWT_AUDIENCE=CLIENT_ID,
        GREENLIGHT_OIDC_CLIENT_ID=CLIENT_ID,
        GREENLIGHT_ENV_FILE=str(cwd / "none.env"),
    )
    token = bootstrap_token(cwd, env, "admin@example.com")
    with serving(cwd, env, token, port=port) as server:
        yield server


def world(server: Server) -> str:
    """shop on prod needing one approval, a request for build-1 by the admin, and alice (known to
    Greenlight by the email her identity provider vouches for) an image approver. Returns the
    request's id."""
    admin = Api(server.http, server.admin_token)
    app = admin.ok('mutation { createApplication(name: "shop") { id } }')["createApplication"]["id"]
    env = admin.ok('mutation { createEnvironment(name: "prod") { id } }')["createEnvironment"]["id"]
    pipeline = admin.ok(
        "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }",
        {"i": {"applicationId": app, "environmentId": env, "requiredApprovals": 1}},
    )["createPipeline"]["id"]
    alice = admin.ok(
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        {"i": {"email": "alice@example.com", "name": "Alice"}},
    )["createUser"]["id"]
    admin.ok(
        "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }",
        {"i": {"userId": alice, "role": "IMAGE_APPROVER", "application": "shop", "environment": "prod"}},
    )
    image = admin.ok(
        "mutation($i: RegisterImageInput!) { registerImage(input: $i) { id } }",
        {
            "i": {
                "application": "shop",
                "repository": "registry.example.com/acme/shop",
                "tag": "build-1",
                "digest": "sha256:" + os.urandom(32).hex(),
            }
        },
    )["registerImage"]["id"]
    return admin.ok(
        "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }",
        {"i": {"pipelineId": pipeline, "imageId": image}},
    )["requestApproval"]["id"]


async def test_console_signs_in_through_the_identity_provider_and_signing_out_forgets_it(server, provider):
    """Single sign-on in the browser: the issuer's provider signs alice in with PKCE, the console
    shows her name and she approves with the ID token; signing out leaves no credential behind."""
    from playwright.async_api import expect

    issuer, _ = provider
    request_id = world(server)
    admin = Api(server.http, server.admin_token)
    allowed = (server.url, issuer)
    console_asked_outside: list[str] = []
    failures: list[str] = []
    async with chromium() as browser:
        context = await browser.new_context(viewport=WIDE)

        async def block(route) -> None:
            # Offline: only the server and the provider answer. The provider's own
            # development login page asks for a web font; what matters is that the console
            # asks for nothing else.
            if route.request.frame.url.startswith(server.url):
                console_asked_outside.append(route.request.url)
            await route.abort()

        await context.route(
            lambda url: not url.startswith(allowed) and not url.startswith(server.url.replace("http", "ws")),
            block,
        )
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: failures.append(f"page error: {error}"))
        page.on(
            "console",
            lambda m: (
                failures.append(f"console {m.type}: {m.text}")
                if m.type == "error" and m.location.get("url", "").startswith(server.url)
                else None
            ),
        )
        await page.goto(server.url + "/#/pending")
        await assert_accessible(page)
        await shot(page, "sso-sign-in")
        await page.get_by_role("button", name="Sign in with single sign-on").click()

        # At the identity provider: its own login form, then its consent screen.
        await page.wait_for_url(re.compile("^" + re.escape(issuer)))
        await page.locator("input[name=login]").fill("alice")
        await page.locator("input[name=password]").fill("any password")
        await page.get_by_role("button", name="Sign-in").click()
        await page.get_by_role("button", name="Continue").click()

        # Back at the console, signed in: her name (Greenlight's record of her), the screen
        # she started from, and no code left in the address bar.
        await page.get_by_role("button", name="Sign out").wait_for()
        await expect(page.locator("header")).to_contain_text("Alice")
        assert "code=" not in page.url and page.url.endswith("#/pending")
        stored = await page.evaluate("sessionStorage.getItem('greenlight.token')")
        assert stored and stored.count(".") == 2, "the ID token (a JWT) is the credential"
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / "sso-signed-in-1440.png"), full_page=True)

        # She acts with it: approving the request through the console.
        await approve_awaiting(page)
        await expect(
            page.get_by_role("listitem", name="Request build-1 for shop on prod").first
        ).to_contain_text("approved", timeout=LIVE_MS)
        approvals = admin.ok(
            "query($id: ID!) { approvalRequest(id: $id) { state approvals { user { email } } } }",
            {"id": request_id},
        )["approvalRequest"]
        assert approvals == {"state": "APPROVED", "approvals": [{"user": {"email": "alice@example.com"}}]}

        # Signing out forgets the credential: nothing left in storage, and a reload asks again.
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_role("button", name="Sign in with single sign-on")).to_be_visible()
        assert await page.evaluate("sessionStorage.length + localStorage.length") == 0
        await page.reload()
        await expect(page.get_by_role("button", name="Sign in with single sign-on")).to_be_visible()
        await expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    assert console_asked_outside == [], console_asked_outside
    assert failures == [], failures
