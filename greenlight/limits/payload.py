"""What a request body or a socket message must be to be read at all: JSON (RFC 8259) in
UTF-8, not nested deeper than Python can read, with no lone surrogate ("\\ud800") in any
string, since no database stores one. Anything else is refused as unusable JSON (HTTP 400
on POST /graphql, the socket closed on a WebSocket) before any of it runs."""

from __future__ import annotations

import json
import re

# A JSON escape of a UTF-16 surrogate; only then can a decoded string hold a lone one.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
SURROGATE = re.compile("[\ud800-\udfff]")


class UnusableJSON(json.JSONDecodeError):
    """A JSONDecodeError, so every reader of JSON bodies and messages refuses it as such."""

    def __init__(self, message: str, document: str = "") -> None:
        super().__init__(message, document, 0)
        self.message = message


def decode(data: str | bytes) -> object:
    """The JSON value of `data`, or UnusableJSON saying what is wrong with it."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise UnusableJSON("the body is not UTF-8 text") from None
    else:
        text = data
    try:
        value = json.loads(text)
    except RecursionError:
        raise UnusableJSON("the JSON is nested too deeply") from None
    if SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise UnusableJSON("a string holds a lone UTF-16 surrogate (such as \\ud800), which is not text")
    return value


def _has_lone_surrogate(value: object) -> bool:
    """Whether any string (key or value) in the decoded JSON holds a lone surrogate (a
    properly paired escape has been decoded to one character already)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def request_shape_error(body: bytes) -> str | None:
    """Why a POST body cannot be a GraphQL request, judged from its first character: the
    request is a JSON object (an array is a batch, which the view refuses itself)."""
    start = body.lstrip()[:1]
    if start in (b"{", b"["):
        return None
    return (
        "the body must be a JSON object with a string `query` (and optionally `variables`, `operationName`)"
    )
