"""A small GraphQL client for `greenlight ci`: one POST per operation, the API token in the
Authorization header, and every failure turned into a `Failure` carrying the contract's
code and the exit status a pipeline branches on."""

from __future__ import annotations

from typing import Any

import httpx

from greenlight import build

# Exit statuses (README: "Greenlight in a CI pipeline"). They are part of the CLI's
# contract: pipelines branch on them, so a number never changes meaning.
OK = 0
ERROR = 1
BAD_ARGUMENTS = 2
REJECTED = 3
EXPIRED = 4
CANCELLED = 5
TIMED_OUT = 6
REFUSED = 7
UNAUTHENTICATED = 8
DEPLOYMENT_FAILED = 9

# Codes that say nothing about the request itself: the server or the way to it failed, so
# retrying later may work. Every other code is the server refusing what was asked.
TRANSIENT_CODES = {
    "INTERNAL",
    "UNAVAILABLE",
    "OUTCOME_UNKNOWN",
    "OPERATION_TIMEOUT",
    "RATE_LIMITED",
    "QUERY_TOO_COMPLEX",
}


# Failures after the request may have reached the server: a mutation may have been made.
# Anything else (no connection, a header refused before sending) left the server untouched.
MAY_HAVE_ARRIVED = (
    httpx.ReadTimeout,
    httpx.ReadError,
    httpx.WriteTimeout,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


class Failure(Exception):
    """What went wrong, as the CLI reports it: a contract code (or NETWORK, HTTP_<status>,
    BAD_ARGUMENTS for what never reached the server), words, and the exit status."""

    def __init__(self, code: str, message: str, exit_status: int, extensions: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_status = exit_status
        self.extensions = extensions or {}


def exit_status_for(code: str) -> int:
    if code == "UNAUTHENTICATED":
        return UNAUTHENTICATED
    if code == "BAD_USER_INPUT":
        return BAD_ARGUMENTS
    if code in TRANSIENT_CODES:
        return ERROR
    return REFUSED


def endpoint(url: str) -> str:
    """The GraphQL endpoint of a server: GREENLIGHT_URL may be the server's address
    (https://greenlight.example.com) or the endpoint itself (.../graphql)."""
    url = url.rstrip("/")
    return url if url.endswith("/graphql") else url + "/graphql"


class Client:
    """Speaks to one server with one token. The token is only ever put in the header: it is
    never part of a message, so nothing the CLI prints or logs can carry it."""

    def __init__(self, url: str, token: str, timeout: float = 30.0, transport=None):
        self.url = endpoint(url)
        self._token = token
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"greenlight-ci/{build.version()}",
            },
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The data of an operation that succeeded; otherwise a Failure for its first error."""
        try:
            response = self._http.post(self.url, json={"query": query, "variables": variables or {}})
        except httpx.HTTPError as error:
            if isinstance(error, MAY_HAVE_ARRIVED) and query.lstrip().startswith("mutation"):
                # The request may have reached the server and been made: say so, as the
                # server does when its commit is lost, so a job reads back before retrying.
                raise Failure(
                    "OUTCOME_UNKNOWN",
                    f"no answer from {self.url} ({type(error).__name__}): the change may or may not "
                    "have been made; read it back (greenlight ci status) before retrying",
                    ERROR,
                ) from None
            # httpx's messages name the URL; one about a header could quote it: scrubbed
            words = str(error).replace(self._token, "<token>")
            raise Failure(
                "NETWORK", f"cannot reach {self.url}: {type(error).__name__}: {words}", ERROR
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or ("data" not in body and "errors" not in body):
            code = "UNAUTHENTICATED" if response.status_code == 401 else f"HTTP_{response.status_code}"
            raise Failure(
                code,
                f"{self.url} answered HTTP {response.status_code}, not a GraphQL response",
                exit_status_for(code) if code == "UNAUTHENTICATED" else ERROR,
            )
        errors = body.get("errors") or []
        if errors:
            first = errors[0]
            extensions = first.get("extensions") or {}
            code = extensions.get("code") or "INTERNAL"
            raise Failure(code, first.get("message") or code, exit_status_for(code), extensions)
        return body["data"]
