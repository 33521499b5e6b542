"""The README's story through the screens: a new user runs the server, signs in with the
bootstrap token, and walks the README's story ("The whole story in the console") through the
console alone, without GraphiQL and without the API: setting up shop on prod, its people,
their roles and tokens in Administration; CI registering the build; Dev asking for approval;
Alice's and Bob's approvals; Dev deploying, Progressing, then Healthy.

Each step uses only what the README tells: the links and buttons it names. Screenshots of
the README's screens go to tests/artifacts/console/readme-*.png (docs/console/ keeps copies).
Offline: every request not to the server is blocked. Skips when Chromium is missing."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

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
    Server,
    _environment,
    database_url,  # noqa: F401 (the fixture: SQLite, then PostgreSQL)
    serving,
)
from tests.support import bootstrap_token

LIVE_MS = 15_000
DIGEST = "sha256:4f1c2e5d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"Debian's chromium is not installed ({CHROMIUM} is missing)"
)


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory) -> Iterator[Server]:  # noqa: F811
    """`greenlight bootstrap you@example.com`, then the server, as the Quick start says."""
    cwd = tmp_path_factory.mktemp("readme")
    env = _environment(database_url)
    env.update(GREENLIGHT_ENV_FILE=str(cwd / "none.env"))
    token = bootstrap_token(cwd, env, "you@example.com")
    with serving(cwd, env, token) as server:
        yield server


async def test_a_new_user_walks_the_readme_story_through_the_screens(server):
    """The README's story through the screens alone: every step of it has a screen."""
    from playwright.async_api import expect

    outside: list[str] = []
    failures: list[str] = []
    async with chromium() as browser:

        async def sign_in(name: str, token: str):
            context = await browser.new_context(viewport=WIDE)

            async def block(route) -> None:
                outside.append(route.request.url)
                await route.abort()

            await context.route(re.compile(r"^(?!(https?|wss?)://127\.0\.0\.1[:/]).*"), block)
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda error: failures.append(f"{name}: page error: {error}"))
            await page.goto(server.url + "/")
            await page.get_by_label("API token").fill(token)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("button", name="Sign out").wait_for()
            return page

        async def admin_section(page, title: str) -> None:
            await (
                page.get_by_role("navigation", name="Main").get_by_role("link", name="Administration").click()
            )
            await (
                page.get_by_role("navigation", name="Administration").get_by_role("link", name=title).click()
            )

        async def open_pipeline(page, screen: str) -> None:
            await page.get_by_role("navigation", name="Main").get_by_role("link", name="Applications").click()
            await page.get_by_role("link", name="shop").first.click()
            await (
                page.get_by_role("listitem", name="Environment prod").get_by_role("link", name=screen).click()
            )

        try:
            you = await sign_in("you", server.admin_token)
            await shot(you, "readme-applications-empty")

            # shop, prod, and the pipeline: 2 approvals, approvals lasting 24 hours.
            await admin_section(you, "Applications, environments and pipelines")
            await you.get_by_label("Application name").fill("shop")
            await you.get_by_role("button", name="Create application").click()
            await expect(you.get_by_role("status").first).to_contain_text("Application created.")
            await you.get_by_label("Environment name").fill("prod")
            await you.get_by_role("button", name="Create environment").click()
            await expect(you.get_by_role("status").nth(1)).to_contain_text("Environment created.")
            pipeline = you.locator("form").nth(2)
            await pipeline.get_by_label("Application").select_option(label="shop")
            await pipeline.get_by_label("Environment").select_option(label="prod")
            await pipeline.get_by_label("Required approvals").fill("2")
            await pipeline.get_by_label("Approvals last").fill("24")
            await pipeline.get_by_role("button", name="Create pipeline").click()
            await expect(you.get_by_role("listitem").filter(has_text="shop / prod")).to_contain_text(
                "2 approval(s), approvals last 24 h"
            )

            # People, their roles and their tokens.
            await admin_section(you, "Users and roles")
            new_user = you.locator("form").filter(has=you.get_by_role("button", name="Create user"))
            for email, name in (
                ("ci@example.com", "CI"),
                ("dev@example.com", "Dev"),
                ("alice@example.com", "Alice"),
                ("bob@example.com", "Bob"),
            ):
                await new_user.get_by_label("Email").fill(email)
                await new_user.get_by_label("Name").fill(name)
                await new_user.get_by_role("button", name="Create user").click()
                await expect(you.get_by_role("row").filter(has_text=email)).to_be_visible()
            grant = you.locator("form").first
            for who, role, env in (
                ("CI", "build-and-deploy", "*"),
                ("Dev", "build-and-deploy", "*"),
                ("Alice", "image-approver", "prod"),
                ("Bob", "image-approver", "*"),
            ):
                email = f"{who.lower()}@example.com"
                await grant.get_by_label("User").select_option(label=f"{who} ({email})")
                await grant.get_by_label("Role").select_option(label=role)
                await grant.get_by_label("Application").select_option("shop")
                await grant.get_by_label("Environment").select_option(env)
                await grant.get_by_role("button", name="Grant role").click()
                await expect(you.get_by_role("row").filter(has_text=email)).to_contain_text(
                    f"{role} on shop/{env}"
                )
            await shot(you, "readme-administration-users")

            await admin_section(you, "API tokens")
            tokens: dict[str, str] = {}
            secret = you.locator("code.secret")
            for who in ("CI", "Dev", "Alice", "Bob"):
                await you.get_by_label("User").select_option(label=f"{who} ({who.lower()}@example.com)")
                await you.get_by_label("Token name").fill("laptop")
                await you.get_by_role("button", name="Issue token").click()
                # The token is shown once, in place of the one issued before.
                for earlier in tokens.values():
                    await expect(secret).not_to_have_text(earlier)
                await expect(secret).to_be_visible()
                tokens[who] = await secret.inner_text()
            assert len(set(tokens.values())) == 4

            # As CI, register the build (what CI's registerImage does).
            ci = await sign_in("ci", tokens["CI"])
            await open_pipeline(ci, "Approval for deployment")
            register = ci.get_by_role("form", name="Register an image")
            await register.get_by_label("Repository").fill("registry.example.com/acme/shop")
            await register.get_by_label("Tag").fill("1.4.2")
            await register.get_by_label("Digest").fill(DIGEST)
            await register.get_by_role("button", name="Register image").click()
            await expect(ci.get_by_role("row").filter(has_text="1.4.2")).to_contain_text("not requested")

            # As Dev, ask for approval.
            dev = await sign_in("dev", tokens["Dev"])
            await open_pipeline(dev, "Approval for deployment")
            row = dev.get_by_role("row").filter(has_text="1.4.2")
            await row.get_by_role("button", name="Request Approval").click()
            await dev.get_by_label("Comment").fill("Fixes the checkout timeout")
            await shot(dev, "readme-request-approval")
            await dev.get_by_role("button", name="Submit Request").click()
            mine = dev.get_by_role("listitem", name="Request 1.4.2 for shop on prod").first
            await expect(mine).to_contain_text("0 of 2 approvals")

            # As Alice, one approval: still pending, and Select Image stays empty (R12).
            alice = await sign_in("alice", tokens["Alice"])
            await alice.get_by_role("link", name="Approval pending").click()
            await approve_awaiting(alice)
            await expect(mine).to_contain_text("1 of 2 approvals", timeout=LIVE_MS)
            await shot(dev, "readme-approval-pending")
            await open_pipeline(dev, "Select Image")
            await expect(dev.get_by_text("No approved images: request approval first.")).to_be_visible()

            # As Bob, the second approval: the image appears in Dev's Select Image.
            bob = await sign_in("bob", tokens["Bob"])
            await bob.get_by_role("link", name="Approval pending").click()
            await approve_awaiting(bob)
            chosen = dev.get_by_role("row").filter(has_text="1.4.2")
            await expect(chosen).to_contain_text("Alice", timeout=LIVE_MS)
            await shot(dev, "readme-select-image")

            # As Dev, deploy: Progressing, then Healthy; Active on prod.
            await chosen.get_by_role("button", name="Deploy").click()
            await dev.get_by_role("button", name="Confirm deploy").click()
            await expect(dev.locator(".deployment").first).to_contain_text("Healthy", timeout=LIVE_MS)
            await dev.get_by_role("navigation", name="Main").get_by_role("link", name="Applications").click()
            await dev.get_by_role("link", name="shop").first.click()
            prod = dev.get_by_role("listitem", name="Environment prod")
            await expect(prod).to_contain_text("Active on prod: 1.4.2")
            await shot(dev, "readme-build-and-deploy")
            await assert_accessible(dev)

            # The audit log tells it all, to the super-admin.
            await admin_section(you, "Audit log")
            await you.get_by_label("Action").fill("deploy")
            await you.get_by_role("button", name="Filter").click()
            log = you.get_by_role("table", name="Audit log, newest first")
            await expect(log.get_by_role("row").filter(has_text="Dev")).to_have_count(1)
            await shot(you, "readme-audit-log")
        except Exception:
            SHOTS.mkdir(parents=True, exist_ok=True)
            for name in ("you", "ci", "dev", "alice", "bob"):
                page = locals().get(name)
                if page is not None:
                    await page.screenshot(path=str(SHOTS / f"failure-readme-{name}.png"), full_page=True)
            raise
    assert outside == [], outside
    assert failures == [], failures
