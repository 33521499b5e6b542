"""The console, end to end in a real browser: a `greenlight serve` process (SQLite, and
PostgreSQL when GREENLIGHT_TEST_POSTGRES_URL is set), Debian's Chromium through
Playwright, several people in browser contexts of their own at once. The seed story through
the screens: CI registers an image through the API; the developer requests approval naming
two approvers; the builder and the requester see Approve disabled with the reason; one
approval keeps Select Image empty and the others see "1 of 2 approvals" without reloading;
the second shows the image; the developer deploys, watches Progressing turn Healthy, and the
image is Active on prod and gone from Select Image. Then a cancel, a rejection with a
reason, an approval let expire, and a super-admin granting a role in Administration while
the new approver, who has Approval pending open, sees the request appear.

Offline throughout: every request not to the server is blocked. No browser console errors.
Screenshots of each screen, at 1440 px and 390 px wide, go to tests/artifacts/console/.
Skips, saying why, when Chromium is missing or cannot start."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.e2e.test_story import (
    ROLES,
    Api,
    Server,
    Story,
    _environment,
    database_url,  # noqa: F401 (the fixture: SQLite, then PostgreSQL)
    serving,
)
from tests.support import bootstrap_token, free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
TIMEOUT_MS = 20_000
# Two people looking at one request see the same state within a second; the test allows
# for a loaded machine, never asserting speed.
LIVE_MS = 15_000
WIDE = {"width": 1440, "height": 900}
NARROW = {"width": 390, "height": 844}

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"Debian's chromium is not installed ({CHROMIUM} is missing); .ci/run installs it",
)


class Sink:
    """An SMTP server that accepts everything: email is configured, so the approver picker shows."""

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        return "250 accepted"


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory) -> Iterator[Server]:  # noqa: F811
    cwd = tmp_path_factory.mktemp("console")
    smtp_port = free_port()
    smtp = Controller(Sink(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    env = _environment(database_url)
    env.update(
        GREENLIGHT_SMTP_HOST="127.0.0.1",
        GREENLIGHT_SMTP_PORT=str(smtp_port),
        GREENLIGHT_SMTP_FROM="greenlight@example.com",
        GREENLIGHT_SMTP_SECURITY="none",
        GREENLIGHT_SECRET_KEY="console-test-secret-key-0123456789abcdef",
        GREENLIGHT_ENV_FILE=str(cwd / "none.env"),
    )
    token = bootstrap_token(cwd, env, "admin@example.com")
    try:
        with serving(cwd, env, token) as server:
            yield server
    finally:
        smtp.stop()


@pytest.fixture(scope="module")
def story(server) -> Story:
    """The story's world, set up through the API: shop on prod needing 2 approvals, its people."""
    admin = Api(server.http, server.admin_token)
    admin.user_id = admin.ok("{ me { id } }")["me"]["id"]
    story = Story(server, admin)
    story.ids["shop"] = admin.ok('mutation { createApplication(name: "shop") { id } }')["createApplication"][
        "id"
    ]
    story.ids["prod"] = admin.ok('mutation { createEnvironment(name: "prod") { id } }')["createEnvironment"][
        "id"
    ]
    story.ids["pipeline"] = admin.ok(
        "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }",
        {
            "i": {
                "applicationId": story.ids["shop"],
                "environmentId": story.ids["prod"],
                "requiredApprovals": 2,
                "ttlHours": 24,
            }
        },
    )["createPipeline"]["id"]
    for name, bindings in {**ROLES, "carol": []}.items():
        user_id = admin.ok(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
            {"i": {"email": f"{name}@example.com", "name": name}},
        )["createUser"]["id"]
        for role, app, env in bindings:
            admin.ok(
                "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }",
                {"i": {"userId": user_id, "role": role, "application": app, "environment": env}},
            )
        token = admin.ok(
            "mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }",
            {"i": {"userId": user_id, "name": "console"}},
        )["issueApiToken"]["token"]
        story.users[name] = Api(server.http, token, user_id)
    return story


class People:
    """One browser context per person, each signed in through the console's own form."""

    def __init__(self, browser, server: Server, failures: list[str]) -> None:
        self.browser = browser
        self.server = server
        self.failures = failures
        self.outside: list[str] = []
        self.pages: dict[str, object] = {}

    async def sign_in(self, name: str, token: str, viewport=WIDE):
        context = await self.browser.new_context(viewport=viewport)

        async def block(route) -> None:  # offline: only the server answers
            self.outside.append(route.request.url)
            await route.abort()

        await context.route(re.compile(r"^(?!(https?|wss?)://127\.0\.0\.1[:/]).*"), block)
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: self.failures.append(f"{name}: page error: {error}"))
        page.on(
            "console",
            lambda message: (
                self.failures.append(f"{name}: console {message.type}: {message.text}")
                if message.type in ("error", "warning")
                else None
            ),
        )
        await page.goto(self.server.url + "/")
        await page.get_by_label("API token").fill(token)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("button", name="Sign out").wait_for()
        self.pages[name] = page
        return page


async def go(page, route: str) -> None:
    await page.evaluate("route => { window.location.hash = route }", route)


async def shot(page, name: str) -> None:
    """The screen at 1440 px, then at 390 px, saved as test artifacts."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    await page.set_viewport_size(WIDE)
    await page.screenshot(path=str(SHOTS / f"{name}-1440.png"), full_page=True)
    await page.set_viewport_size(NARROW)
    await page.screenshot(path=str(SHOTS / f"{name}-390.png"), full_page=True)
    # Readable at 390 px: nothing wider than the screen.
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= NARROW["width"] + 1, f"{name} is {overflow} px wide at 390 px"
    await page.set_viewport_size(size)


UNLABELLED = """() => [...document.querySelectorAll('button, input, select, textarea, a[href]')]
  .filter(el => {
    const label = el.getAttribute('aria-label') || (el.labels && [...el.labels].map(l => l.textContent).join(''))
      || el.textContent || el.getAttribute('title');
    return !label || !label.trim();
  })
  .map(el => el.outerHTML.slice(0, 120))"""


async def assert_accessible(page) -> None:
    """Every control has a label, and none is taken out of the keyboard's reach."""
    assert await page.evaluate(UNLABELLED) == []
    unreachable = await page.evaluate(
        "() => [...document.querySelectorAll('[tabindex]')].filter(e => e.tabIndex < 0).length"
    )
    assert unreachable == 0


@asynccontextmanager
async def chromium() -> AsyncIterator:
    """Debian's Chromium through Playwright, headless; the test skips when it cannot start."""
    from playwright.async_api import Error, async_playwright

    async with async_playwright() as playwright:
        try:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        except Error as error:
            pytest.skip(f"Playwright could not launch {CHROMIUM}: {error}")
        try:
            yield browser
        finally:
            await browser.close()


async def approve_awaiting(page) -> None:
    """Approve, then Approve Request, on the request awaiting the person's approval."""
    await (
        page.get_by_role("region", name="Awaiting my approval").get_by_role("button", name="Approve").click()
    )
    await page.get_by_role("button", name="Approve Request").click()


def card(page, tag: str):
    return page.get_by_role("listitem", name=f"Request {tag} for shop on prod").first


async def test_console_story_through_the_screens_offline(story, server):
    from playwright.async_api import expect

    def register(tag: str) -> str:
        digest = "sha256:" + os.urandom(32).hex()
        return story["ci"].ok(
            "mutation($i: RegisterImageInput!) { registerImage(input: $i) { id } }",
            {
                "i": {
                    "application": "shop",
                    "repository": "registry.example.com/acme/shop",
                    "tag": tag,
                    "digest": digest,
                }
            },
        )["registerImage"]["id"]

    failures: list[str] = []
    async with chromium() as browser:
        try:
            people = People(browser, server, failures)
            # A token the server refuses: the sign-in form says so, with the contract's code.
            stranger = await browser.new_page()
            await stranger.route(
                re.compile(r"^(?!(https?|wss?)://127\.0\.0\.1[:/]).*"), lambda route: route.abort()
            )
            await stranger.goto(server.url + "/")
            await stranger.get_by_label("API token").fill("not-a-token")
            await stranger.get_by_role("button", name="Sign in").click()
            await expect(stranger.get_by_role("status")).to_contain_text("UNAUTHENTICATED")
            await expect(stranger.get_by_label("API token")).to_be_visible()
            assert await stranger.evaluate("sessionStorage.length") == 0
            await stranger.close()
            dev = await people.sign_in("dev", story["dev"].token)
            ci = await people.sign_in("ci", story["ci"].token)
            alice = await people.sign_in("alice", story["alice"].token)
            bob = await people.sign_in("bob", story["bob"].token)

            # CI registers an image through the API, as CI would.
            register("build-1")

            await expect(dev.get_by_role("link", name="shop")).to_be_visible()
            await shot(dev, "applications")
            await assert_accessible(dev)
            await dev.get_by_role("link", name="shop").first.click()
            prod = dev.get_by_role("listitem", name="Environment prod")
            await expect(prod).to_contain_text("Active on prod")
            await expect(prod).to_contain_text("nothing deployed yet")
            await shot(dev, "build-and-deploy-empty")

            await prod.get_by_role("link", name="Select Image").click()
            await expect(dev.get_by_text("No approved images: request approval first.")).to_be_visible()
            await shot(dev, "select-image-empty")

            # Approval for deployment: request approval of build-1, naming alice and bob.
            await go(dev, "#/app/shop/prod/approval")
            row = dev.get_by_role("row").filter(has_text="build-1")
            await expect(row).to_contain_text("not requested")
            await row.get_by_role("button", name="Request Approval").click()
            await dev.get_by_label("Comment").fill("ship it")
            picker = dev.get_by_role("group", name="Approvers to notify by email")
            # eligibleApprovers leaves out the builder and the requester (R9).
            await expect(picker.get_by_role("checkbox", name=re.compile("^alice"))).to_be_visible()
            await expect(picker.get_by_role("checkbox", name=re.compile("^dev"))).to_have_count(0)
            await expect(picker.get_by_role("checkbox", name=re.compile("^ci"))).to_have_count(0)
            await picker.get_by_role("checkbox", name=re.compile("^alice")).check()
            await picker.get_by_role("checkbox", name=re.compile("^bob")).check()
            await shot(dev, "request-approval")
            await dev.get_by_role("button", name="Submit Request").click()

            # Approval pending: the requester and the builder see Approve disabled, with why.
            mine = card(dev, "build-1")
            await expect(mine).to_contain_text("0 of 2 approvals")
            await expect(mine.get_by_role("button", name="Approve")).to_be_disabled()
            await expect(mine).to_contain_text("You requested this approval")
            await go(ci, "#/pending")
            await expect(card(ci, "build-1").get_by_role("button", name="Approve")).to_be_disabled()
            await expect(card(ci, "build-1")).to_contain_text("You built this image")

            # alice approves; dev sees 1 of 2 without reloading.
            await go(alice, "#/pending")
            theirs = alice.get_by_role("region", name="Awaiting my approval")
            await theirs.get_by_role("button", name="Approve").click()
            await shot(alice, "approve")
            await alice.get_by_role("button", name="Approve Request").click()
            await expect(mine).to_contain_text("1 of 2 approvals", timeout=LIVE_MS)
            await expect(card(ci, "build-1")).to_contain_text("1 of 2 approvals", timeout=LIVE_MS)
            await shot(dev, "approval-pending")

            # Partial approval is no approval (R12): Select Image stays empty.
            await go(dev, "#/app/shop/prod/select")
            await expect(dev.get_by_text("No approved images: request approval first.")).to_be_visible()

            # bob approves: the image appears on dev's Select Image without reloading.
            await go(bob, "#/pending")
            await approve_awaiting(bob)
            chosen = dev.get_by_role("row").filter(has_text="build-1")
            await expect(chosen).to_contain_text("alice", timeout=LIVE_MS)
            await expect(chosen).to_contain_text("bob")
            await shot(dev, "select-image")

            # Deploy asks to confirm, then follows the rollout: Progressing, then Healthy.
            await chosen.get_by_role("button", name="Deploy").click()
            await dev.get_by_role("button", name="Confirm deploy").click()
            await expect(dev.locator(".deployment").first).to_contain_text(re.compile("Progressing|Healthy"))
            await expect(dev.locator(".deployment").first).to_contain_text("Healthy", timeout=LIVE_MS)
            await expect(dev.get_by_text("No approved images: request approval first.")).to_be_visible()
            await expect(dev.get_by_role("row").filter(has_text="build-1")).to_have_count(0)

            await go(dev, "#/app/shop")
            await expect(prod).to_contain_text("Active on prod: build-1")
            await expect(prod).to_contain_text("Healthy")
            await shot(dev, "build-and-deploy")
            await go(dev, "#/app/shop/details/prod")
            await expect(dev.get_by_role("list", name="Strategy steps")).to_be_visible()
            await expect(dev.get_by_role("row").filter(has_text="build-1")).to_contain_text("healthy")
            await shot(dev, "app-details")

            # Cancel, by the requester.
            register("build-2")
            await go(dev, "#/app/shop/prod/approval")
            await (
                dev.get_by_role("row")
                .filter(has_text="build-2")
                .get_by_role("button", name="Request Approval")
                .click()
            )
            await dev.get_by_role("button", name="Submit Request").click()
            await card(dev, "build-2").get_by_role("button", name="Cancel").click()
            closed = dev.get_by_role("region", name="Recently closed")
            await expect(
                closed.get_by_role("listitem", name="Request build-2 for shop on prod")
            ).to_contain_text("cancelled")

            # Reject, with a reason (required: the button waits for one).
            image3 = register("build-3")
            story.request(image3)
            await go(alice, "#/pending")
            await card(alice, "build-3").get_by_role("button", name="Reject").click()
            reject = alice.get_by_role("button", name="Reject Request")
            await expect(reject).to_be_disabled()
            await alice.get_by_label("Reason (required)").fill("fails the smoke test")
            await reject.click()
            rejected = alice.get_by_role("region", name="Recently closed").get_by_role(
                "listitem", name="Request build-3 for shop on prod"
            )
            await expect(rejected).to_contain_text("fails the smoke test")
            await expect(
                dev.get_by_role("region", name="Recently closed").get_by_role(
                    "listitem", name="Request build-3 for shop on prod"
                )
            ).to_contain_text("rejected", timeout=LIVE_MS)

            # Let an approval expire, by the requester.
            image4 = register("build-4")
            request4 = story.request(image4)["id"]
            for who in ("alice", "bob"):
                story[who].ok("mutation($id: ID!) { approveRequest(id: $id) { id } }", {"id": request4})
            await go(dev, "#/pending")
            await (
                card(dev, "build-4").get_by_role("button", name="Let approval expire").click(timeout=LIVE_MS)
            )
            await expect(
                dev.get_by_role("region", name="Recently closed").get_by_role(
                    "listitem", name="Request build-4 for shop on prod"
                )
            ).to_contain_text("expired")
            await shot(dev, "approval-pending-closed")

            # A super-admin grants carol a role; carol, watching Approval pending, sees the request.
            image5 = register("build-5")
            story.request(image5)
            carol = await people.sign_in("carol", story["carol"].token)
            await go(carol, "#/pending")
            await expect(carol.get_by_text("Nothing awaits your approval.")).to_be_visible()
            admin = await people.sign_in("admin", story.admin.token)
            await go(admin, "#/admin/users")
            form = admin.locator("form").first
            await form.get_by_label("User").select_option(label="carol (carol@example.com)")
            await form.get_by_label("Role").select_option(label="image-approver")
            await form.get_by_label("Application").select_option("shop")
            await form.get_by_label("Environment").select_option("prod")
            await form.get_by_role("button", name="Grant role").click()
            await expect(admin.get_by_role("status")).to_contain_text("Role granted.")
            await expect(admin.get_by_role("row").filter(has_text="carol@example.com")).to_contain_text(
                "image-approver on shop/prod"
            )
            await shot(admin, "administration")
            awaiting = carol.get_by_role("region", name="Awaiting my approval")
            await expect(
                awaiting.get_by_role("listitem", name="Request build-5 for shop on prod")
            ).to_be_visible(timeout=LIVE_MS)
            await expect(awaiting.get_by_role("button", name="Approve")).to_be_enabled()

            # carol approves through the console; alice's approval through the API completes it.
            await awaiting.get_by_role("button", name="Approve").click()
            await carol.get_by_role("button", name="Approve Request").click()
            await expect(card(carol, "build-5")).to_contain_text("1 of 2 approvals", timeout=LIVE_MS)
            request5 = story["alice"].ok(
                "{ approvalRequests(filter: {awaitingMyApproval: true}) { edges { node { id } } } }"
            )["approvalRequests"]["edges"][0]["node"]["id"]
            story["alice"].ok("mutation($id: ID!) { approveRequest(id: $id) { id } }", {"id": request5})

            # Groups: a super-admin makes a team and adds a member.
            await go(admin, "#/admin/groups")
            await admin.get_by_label("Group name").fill("sre")
            await admin.get_by_role("button", name="Create group").click()
            sre = admin.get_by_role("region", name="Group sre")
            await sre.get_by_label("Add member").select_option(label="alice (alice@example.com)")
            await sre.get_by_role("button", name="Add", exact=True).click()
            await expect(sre.get_by_role("listitem").filter(has_text="alice@example.com")).to_be_visible()

            # Approval policies: a team quorum and an exception, edited in Administration. A
            # policy the API refuses shows its words and code, and changes nothing.
            policy_query = (
                "query($id: ID!) { pipeline(id: $id) { approvalPolicy { kind requiredApprovals "
                "groupQuorums { minApprovals group { name } } exceptionUsers { email } } } }"
            )
            await go(admin, "#/admin/policies")
            policy = admin.get_by_role("form", name="Approval policy of shop / prod")
            await policy.get_by_label("Whose approvals count").select_option("GROUP_QUORUMS")
            await policy.get_by_role("button", name="Save policy").click()
            await expect(admin.get_by_role("alert")).to_contain_text("name at least one group")
            await expect(admin.get_by_role("alert")).to_contain_text("BAD_USER_INPUT")
            unchanged = story.admin.ok(policy_query, {"id": story.ids["pipeline"]})["pipeline"][
                "approvalPolicy"
            ]
            assert unchanged["kind"] == "ANY" and unchanged["groupQuorums"] == []
            await policy.get_by_label("Approvals from sre").fill("1")
            await (
                policy.get_by_role("group", name="Exceptions: users who may deploy without approval")
                .get_by_role("checkbox", name=re.compile("^carol"))
                .check()
            )
            await policy.get_by_role("button", name="Save policy").click()
            await expect(admin.get_by_role("status")).to_contain_text("Policy saved.")
            await expect(admin.get_by_role("region", name="Policy of shop / prod")).to_contain_text(
                "with 1 from sre"
            )
            saved = story.admin.ok(policy_query, {"id": story.ids["pipeline"]})["pipeline"]["approvalPolicy"]
            assert saved == {
                "kind": "GROUP_QUORUMS",
                "requiredApprovals": 2,
                "groupQuorums": [{"minApprovals": 1, "group": {"name": "sre"}}],
                "exceptionUsers": [{"email": "carol@example.com"}],
            }
            await shot(admin, "administration-policies")
            # The rest of the story runs under the policy it started with.
            story.admin.ok(
                "mutation($id: ID!, $i: ApprovalPolicyInput!) { updateApprovalPolicy(pipelineId: $id, input: $i) { id } }",
                {
                    "id": story.ids["pipeline"],
                    "i": {
                        "requiredApprovals": 2,
                        "ttlHours": 24,
                        "kind": "ANY",
                        "groupQuorums": [],
                        "exceptionUserIds": [],
                    },
                },
            )

            # The audit log, filtered by who and when: the admin's policy edits of today.
            await go(admin, "#/admin/audit")
            filters = admin.get_by_role("form", name="Audit log filters")
            await filters.get_by_label("Who").select_option(story.admin.user_id)
            await filters.get_by_label("Action").fill("update_approval_policy")
            await filters.get_by_label("From").fill(
                (datetime.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
            )
            await filters.get_by_role("button", name="Filter").click()
            log = admin.get_by_role("table", name="Audit log, newest first")
            await expect(log.get_by_role("row").filter(has_text="update_approval_policy")).to_have_count(2)
            await filters.get_by_label("Until").fill(
                (datetime.now() - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M")
            )
            await filters.get_by_role("button", name="Filter").click()
            await expect(admin.get_by_text("No event matches these filters.")).to_be_visible()
            await shot(admin, "administration-audit")

            # Why can't I? A freeze made in Administration disables Deploy, with the API's words.
            now = datetime.now()
            await go(admin, "#/admin/freezes")
            await admin.get_by_label("Name").fill("release freeze")
            await admin.get_by_label("Environment").select_option(label="prod")
            await admin.get_by_label("From").fill((now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
            await admin.get_by_label("Until").fill((now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
            await admin.get_by_role("button", name="Create freeze").click()
            await expect(admin.get_by_role("row").filter(has_text="release freeze")).to_contain_text("prod")
            await shot(admin, "administration-freezes")
            await dev.reload()
            await go(dev, "#/app/shop/prod/select")
            frozen = dev.get_by_role("row").filter(has_text="build-5")
            await expect(frozen.get_by_role("button", name="Deploy")).to_be_disabled(timeout=LIVE_MS)
            await expect(frozen).to_contain_text("Frozen until")
            await shot(dev, "select-image-frozen")
            # Deleting the freeze lets the deploy through again.
            await admin.get_by_role("button", name="Delete freeze release freeze").click()
            await expect(admin.get_by_role("row").filter(has_text="release freeze")).to_have_count(0)
            await dev.reload()
            await expect(frozen.get_by_role("button", name="Deploy")).to_be_enabled(timeout=LIVE_MS)

            # Keyboard only: Deploy, then Confirm deploy, each reached with Tab and pressed with Enter.
            await frozen.get_by_role("button", name="Deploy").focus()
            await dev.keyboard.press("Enter")
            confirm = dev.get_by_role("button", name="Confirm deploy")
            for _ in range(10):
                if await confirm.evaluate("el => el === document.activeElement"):
                    break
                await dev.keyboard.press("Tab")
            assert await confirm.evaluate("el => el === document.activeElement"), (
                "Confirm deploy is out of Tab's reach"
            )
            await dev.keyboard.press("Enter")
            await expect(dev.locator(".deployment").first).to_contain_text("Healthy", timeout=LIVE_MS)

            # Rolling back is deploying an earlier image under the same rules: build-1's
            # approval was used by its deploy, so App Details shows the reason, not the button.
            await go(dev, "#/app/shop/details/prod")
            earlier = dev.get_by_role("row").filter(has_text="build-1")
            await expect(earlier.get_by_role("button", name="Roll back to this")).to_be_disabled()
            await expect(earlier).to_contain_text("Not approved")
            await shot(dev, "app-details-rollback")

            # A stale image (older than the active build-5) is flagged; approving needs the tick.
            story.request(image4)
            await go(alice, "#/pending")
            stale = card(alice, "build-4")
            await expect(stale).to_contain_text("older than the one active on prod", timeout=LIVE_MS)
            await stale.get_by_role("button", name="Approve").click()
            approve = alice.get_by_role("button", name="Approve Request")
            await expect(approve).to_be_disabled()
            await alice.get_by_label("I know this image is older than the active one").check()
            await approve.click()
            await expect(stale).to_contain_text("1 of 2 approvals", timeout=LIVE_MS)
            await shot(alice, "approval-pending-stale")

            for page in people.pages.values():
                await assert_accessible(page)

            # Signing out forgets the token.
            await dev.get_by_role("button", name="Sign out").click()
            await expect(dev.get_by_label("API token")).to_be_visible()
            assert await dev.evaluate("sessionStorage.length") == 0
            await dev.reload()
            await expect(dev.get_by_label("API token")).to_be_visible()
        except Exception:
            for name, page in getattr(locals().get("people"), "pages", {}).items():
                SHOTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SHOTS / f"failure-{name}.png"), full_page=True)
            raise
    assert people.outside == [], f"the console asked for something outside Greenlight: {people.outside}"
    assert failures == [], failures
