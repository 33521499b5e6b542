"""The web console at `/` and GraphiQL at GET /graphql, every asset served from Greenlight.

The console is a client of the public GraphQL API like any other (its source is in
console/ at the repository's root; `make console` rebuilds static/app/). GraphiQL is
strawberry's own page with its unpkg.com scripts pointed at static/vendor/, the same files
taken from the npm packages pinned in console/package-lock.json: nothing is loaded from
outside, and the page's integrity hashes still hold.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from strawberry.http.ides import get_graphql_ide_html

STATIC = Path(__file__).parent / "static"
PREFIX = "/console"
CDN = re.compile(r"https://unpkg\.com/")

INDEX = f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Greenlight</title>
    <link rel="icon" href="data:," />
    <link rel="stylesheet" href="{PREFIX}/app/console.css" />
    <script type="module" src="{PREFIX}/app/console.js"></script>
  </head>
  <body>
    <div id="console"><noscript>The Greenlight console needs JavaScript; GraphiQL is at /graphql.</noscript></div>
  </body>
</html>
"""

# The shell is tiny and names the bundle: never cached, so a new bundle is picked up at once.
NO_CACHE = {"Cache-Control": "no-cache"}


async def index(request: Request) -> HTMLResponse:
    return HTMLResponse(INDEX, headers=NO_CACHE)


@functools.cache
def graphiql_page() -> str:
    """Strawberry's GraphiQL page, its assets served by Greenlight itself."""
    return CDN.sub(f"{PREFIX}/vendor/", get_graphql_ide_html("graphiql"))


def routes() -> list:
    return [
        Route("/", index, methods=["GET"]),
        Mount(PREFIX, StaticFiles(directory=STATIC), name="console"),
    ]
