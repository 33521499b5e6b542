"""GraphQL over HTTP's response media type: a client whose Accept asks for
`application/graphql-response+json` gets it, and with it a request that fails before
execution (the document does not parse or validate, no credentials) is answered with a
4xx status and no `data`, as the spec says. Clients asking for `application/json` keep
getting 200 with the errors in the body."""

from __future__ import annotations

import json

from starlette.responses import Response

GRAPHQL_RESPONSE = "application/graphql-response+json; charset=utf-8"
_MEDIA = "application/graphql-response+json"
_JSON = "application/json"


def _accepted(accept: str) -> dict[str, float]:
    """Media type -> quality of an Accept header."""
    found: dict[str, float] = {}
    for part in accept.split(","):
        media_type, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_type:
            found[media_type.lower()] = max(quality, found.get(media_type.lower(), 0.0))
    return found


def wants_graphql_response(accept: str | None) -> bool:
    """The new media type when the client accepts it at least as well as plain JSON."""
    if not accept:
        return False
    accepted = _accepted(accept)
    quality = accepted.get(_MEDIA, 0.0)
    return quality > 0 and quality >= accepted.get(_JSON, 0.0)


def request_error(result) -> str | None:
    """The contract code of a request that failed before execution (no data, no error
    on a field), else None."""
    if result.data is not None or not result.errors:
        return None
    if any(error.path for error in result.errors):
        return None
    return (result.errors[0].extensions or {}).get("code") or "BAD_USER_INPUT"


def status_of(code: str) -> int:
    return {"UNAUTHENTICATED": 401, "RATE_LIMITED": 429, "UNAVAILABLE": 503}.get(code, 400)


def error_response(status: int, message: str) -> Response:
    """A request refused before GraphQL read it (malformed JSON, wrong method ...), in the
    GraphQL response format."""
    code = "BAD_USER_INPUT" if 400 <= status < 500 else "INTERNAL"
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return Response(json.dumps(body), status_code=status, headers={"content-type": GRAPHQL_RESPONSE})
