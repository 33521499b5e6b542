"""Global IDs: "<Type>:<number>", so an ID of the wrong kind is refused, not misread."""

from __future__ import annotations

import re
from collections.abc import Collection

from tortoise.models import Model

from greenlight.errors import BadUserInput

MAX_PK = 2**31 - 1
DIGITS = re.compile(r"[0-9]{1,10}")


def encode(kind: str, pk: int) -> str:
    return f"{kind}:{pk}"


def encode_model(obj: Model) -> str:
    return encode(type(obj).__name__, obj.pk)


def decode(kind: str, value: str, field: str) -> int:
    prefix, sep, number = str(value).partition(":")
    if not sep or prefix != kind or not DIGITS.fullmatch(number) or not 0 < int(number) <= MAX_PK:
        raise BadUserInput(f"{field}: {value!r} is not a {kind} id", field=field)
    return int(number)


def decode_node(value: str, kinds: Collection[str], field: str) -> tuple[str, int]:
    """(kind, number) of an id of any of `kinds` (node, nodes)."""
    kind = str(value).partition(":")[0]
    if kind not in kinds:
        raise BadUserInput(f"{field}: {value!r} is not the id of an object", field=field)
    return kind, decode(kind, value, field)


def decode_optional(kind: str, value: str | None, field: str) -> int | None:
    return None if value is None else decode(kind, value, field)


def encode_cursor(pk: int) -> str:
    return encode("Cursor", pk)


def decode_cursor(value: str | None) -> int | None:
    return None if value is None else decode("Cursor", value, "after")
