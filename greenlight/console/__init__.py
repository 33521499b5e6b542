"""The web console at `/` and GraphiQL at GET /graphql, every asset served from Greenlight.

The console is a client of the public GraphQL API like any other (its source is in
console/ at the repository's root; `make console` rebuilds static/app/). GraphiQL is
strawberry's own page with its unpkg.com scripts pointed at static/vendor/, the same files
taken from the npm packages pinned in console/package-lock.json: nothing is loaded from
outside, and the page's integrity hashes still hold.
"""

from __future__ import annotations

import functools
import html
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from strawberry.http.ides import get_graphql_ide_html

from greenlight.config import Settings

STATIC = Path(__file__).parent / "static"
PREFIX = "/console"
CDN = re.compile(r"https://unpkg\.com/")

PAGE = f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />{{sso}}
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
INDEX = PAGE.format(sso="")


def index_html(settings: Settings | None) -> str:
    """The console's page. With single sign-on configured for it, the identity provider's
    issuer, the console's client id and its scopes are public facts of the page (meta tags),
    not of a private API: the console discovers the rest from the issuer."""
    if not (settings and settings.oidc_issuer and settings.oidc_client_id):
        return INDEX
    tags = {
        "greenlight-oidc-issuer": settings.oidc_issuer,
        "greenlight-oidc-client-id": settings.oidc_client_id,
        "greenlight-oidc-scopes": settings.oidc_scopes,
    }
    sso = "".join(
        f'\n    <meta name="{name}" content="{html.escape(value, quote=True)}" />'
        for name, value in tags.items()
    )
    return PAGE.format(sso=sso)


# The shell is tiny and names the bundle: never cached, so a new bundle is picked up at once.
NO_CACHE = {"Cache-Control": "no-cache"}


@functools.cache
def graphiql_page() -> str:
    """Strawberry's GraphiQL page, its assets served by Greenlight itself."""
    return CDN.sub(f"{PREFIX}/vendor/", get_graphql_ide_html("graphiql"))


def routes(settings: Settings | None = None) -> list:
    page = index_html(settings)

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page, headers=NO_CACHE)

    return [
        Route("/", index, methods=["GET"]),
        Mount(PREFIX, StaticFiles(directory=STATIC), name="console"),
    ]
