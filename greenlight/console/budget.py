"""The console's budgets, reported (never asserted by a timed test): `make console-budget`.

- The shipped bundle (what a browser downloads for the first screen: the page, console.js,
  console.css), gzip-compressed: budget 300 KB. The chunks loaded on demand (Administration,
  the single sign-on flow) are reported beside it.
- The first screen interactive on loopback: a `greenlight serve` on a fresh SQLite database,
  Debian's Chromium (through Playwright, a dev dependency) opens `/`, and the time runs from
  the start of the navigation (the page's own clock) until the sign-in form is on screen
  (the console's `greenlight:sign-in-ready` mark; the server has answered one request before); then until the Applications screen shows after signing in
  with the bootstrap token. Budget 1 s each.

Exit code 1 when a budget is exceeded, so CI may run it; `--json` prints the numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx

from greenlight.console import INDEX, STATIC

BUNDLE_BUDGET_BYTES = 300 * 1024
INTERACTIVE_BUDGET_SECONDS = 1.0
CHROMIUM = "/usr/bin/chromium"


def bundle_bytes() -> dict[str, int]:
    parts = {
        "index.html": INDEX.encode(),
        "console.js": (STATIC / "app" / "console.js").read_bytes(),
        "console.css": (STATIC / "app" / "console.css").read_bytes(),
    }
    sizes = {name: len(gzip.compress(data, compresslevel=9, mtime=0)) for name, data in parts.items()}
    sizes["total"] = sum(sizes.values())
    # Loaded on demand, never for the first screen: Administration, the single sign-on flow.
    later = [path for path in sorted((STATIC / "app").glob("*.js")) if path.name != "console.js"]
    sizes["on_demand"] = sum(len(gzip.compress(p.read_bytes(), compresslevel=9, mtime=0)) for p in later)
    return sizes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _measure(url: str, token: str) -> dict[str, float]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page()
            await page.goto(url + "/")
            field = page.get_by_label("API token")
            await field.fill(token)  # waits until the field is there and takes input
            # The page's own clock, from the start of its navigation to the console's mark when
            # the form is on screen: what a person waits for, without Playwright's round trips.
            sign_in_form = (
                await page.evaluate("performance.getEntriesByName('greenlight:sign-in-ready')[0].startTime")
                / 1000
            )
            start = time.perf_counter()
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("heading", name="Applications").wait_for()
            applications = time.perf_counter() - start
            return {"sign_in_form_seconds": sign_in_form, "applications_seconds": applications}
        finally:
            await browser.close()


def interactive_seconds() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as cwd:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
        env.update(
            GREENLIGHT_DATABASE_URL=f"sqlite://{cwd}/budget.sqlite3", GREENLIGHT_ENV_FILE=f"{cwd}/none.env"
        )
        done = subprocess.run(
            [sys.executable, "-m", "greenlight", "bootstrap", "budget@example.com"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        token = done.stdout.strip().splitlines()[-1].strip()
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "greenlight", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("greenlight serve did not become ready")
                time.sleep(0.1)
            # A server's very first answer pays one-time costs (imports, first connections)
            # that no person opening the console later waits for.
            httpx.get(f"{url}/", timeout=10)
            return asyncio.run(_measure(url, token))
        finally:
            server.terminate()
            server.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m greenlight.console.budget", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--no-browser", action="store_true", help="report the bundle's size only")
    args = parser.parse_args(argv)
    report: dict[str, object] = {"bundle_gzip_bytes": bundle_bytes()}
    if not args.no_browser:
        report.update(interactive_seconds())
    over = report["bundle_gzip_bytes"]["total"] > BUNDLE_BUDGET_BYTES  # type: ignore[index]
    over |= any(
        value > INTERACTIVE_BUDGET_SECONDS for key, value in report.items() if key.endswith("_seconds")
    )  # type: ignore[operator]
    if args.json:
        print(json.dumps(report))
    else:
        sizes = report["bundle_gzip_bytes"]
        print(f"bundle, gzip: {sizes['total'] / 1024:.1f} KB (budget {BUNDLE_BUDGET_BYTES // 1024} KB)")  # type: ignore[index]
        print(f"loaded on demand (Administration, single sign-on), gzip: {sizes['on_demand'] / 1024:.1f} KB")  # type: ignore[index]
        for key, value in report.items():
            if key.endswith("_seconds"):
                print(f"{key.removesuffix('_seconds').replace('_', ' ')}: {value:.3f} s (budget 1 s)")
        print("within budget" if not over else "OVER BUDGET")
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
