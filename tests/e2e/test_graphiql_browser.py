"""GraphiQL for humans, in a real browser: a `greenlight serve` process, Debian's
Chromium (headless, driven by Playwright) opens GET /graphql, the token goes into GraphiQL's
headers editor, `{ me { email } }` runs, the result pane shows the admin's email, and a
screenshot is saved to tests/artifacts/graphiql.png.

Offline: every request not to the server is blocked, and GraphiQL still works, since its
assets ship inside the Python package (greenlight.console). Skips, saying why, when
Chromium is missing or cannot start."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import httpx
import pytest

from tests.support import bootstrap_token, free_port, start_serve

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN = "admin@example.com"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TIMEOUT_MS = 15_000

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"Debian's chromium is not installed ({CHROMIUM} is missing); .ci/run installs it",
)


@dataclass
class Server:
    url: str
    token: str
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    cwd = tmp_path_factory.mktemp("graphiql")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    env.update(
        GREENLIGHT_DATABASE_URL=f"sqlite://{cwd / 'g.sqlite3'}",
        GREENLIGHT_ENV_FILE=str(cwd / "none.env"),
        GREENLIGHT_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    token = bootstrap_token(cwd, env, ADMIN)
    port = free_port()
    log = cwd / "serve.log"
    process = start_serve(cwd, env, port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                pytest.fail(f"greenlight serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"greenlight serve did not become ready:\n{log.read_text()}")
            time.sleep(0.1)
        yield Server(url, token, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def test_graphiql_runs_me_with_a_token_from_the_headers_editor_offline(server):
    from playwright.async_api import Error, async_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "graphiql.png"
    screenshot.unlink(missing_ok=True)
    async with async_playwright() as playwright:
        try:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        except Error as error:
            pytest.skip(f"Playwright could not launch {CHROMIUM}: {error}")
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(TIMEOUT_MS)
            failures: list[str] = []
            page.on("pageerror", lambda error: failures.append(f"page error: {error}"))
            page.on(
                "requestfailed",
                lambda req: failures.append(f"request failed: {req.url} {req.failure}"),
            )
            # Offline: nothing but the server answers; every asset comes from Greenlight.
            outside: list[str] = []

            async def block(route) -> None:
                outside.append(route.request.url)
                await route.abort()

            await page.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/]).*"), block)
            graphql_posts: list[dict] = []
            page.on(
                "request",
                lambda req: (
                    graphql_posts.append(req.headers)
                    if req.method == "POST" and urlsplit(req.url).path == "/graphql"
                    else None
                ),
            )
            await page.goto(f"{server.url}/graphql?" + urlencode({"q": "{ me { email } }"}, quote_via=quote))
            try:
                await page.wait_for_selector(".graphiql-container .graphiql-editors")
            except Error:
                await page.screenshot(path=str(screenshot))
                pytest.fail(f"GraphiQL did not render: {failures}")

            # The token goes into the headers editor, as a person would put it there.
            await page.locator(".graphiql-editor-tools button[data-name=headers]").click()
            editor = page.locator(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror")
            await editor.click()
            await page.keyboard.press("Control+A")
            await page.keyboard.insert_text(f'{{"Authorization": "Bearer {server.token}"}}')

            await page.locator("button.graphiql-execute-button").click()
            result = page.locator(".graphiql-response .result-window")
            try:
                await result.get_by_text(ADMIN).wait_for()
            except Error:
                await page.screenshot(path=str(screenshot))
                pytest.fail(
                    f"the result pane never showed {ADMIN} (see {screenshot}): "
                    f"{await result.inner_text()!r} {failures}"
                )
            await page.screenshot(path=str(screenshot))

            text = await result.inner_text()
            assert '"email"' in text and ADMIN in text, text
            assert "UNAUTHENTICATED" not in text
            # GraphiQL sent the header from its editor with the query.
            assert any(h.get("authorization") == f"Bearer {server.token}" for h in graphql_posts)
            assert outside == [], f"GraphiQL asked for something outside Greenlight: {outside}"
            assert failures == [], failures
        finally:
            await browser.close()
    assert screenshot.stat().st_size > 10_000
