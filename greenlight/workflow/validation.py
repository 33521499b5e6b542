"""Input checks shared by the workflow functions; each failure is BAD_USER_INPUT."""

from __future__ import annotations

import re

from greenlight.errors import BadUserInput
from greenlight.scopes import WILDCARD

NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
EMAIL_RE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")
# OCI distribution spec: an optional registry host[:port], then lowercase path components.
REPOSITORY_RE = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")

MAX_REQUIRED_APPROVALS = 6
MAX_TTL_HOURS = 8760
MAX_TOKEN_TTL_HOURS = 87600
MAX_TEXT = 2000


def name(field: str, value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise BadUserInput(
            f"{field}: {value!r} is not a valid name (lowercase letters, digits and '-', "
            "starting with a letter or digit, at most 63 characters)",
            field=field,
        )
    return value


def scope_part(field: str, value: str | None) -> str:
    """One part of a scope: a name, or "*" (every one) only when "*" is written. Empty,
    blank or null is BAD_USER_INPUT, never read as "*", so a slip cannot widen a grant."""
    if value == WILDCARD:
        return value
    if value is None or not value.strip():
        shown = "null" if value is None else repr(value)
        raise BadUserInput(
            f"{field}: {shown} names nothing; give a name, or '*' for every {field}", field=field
        )
    return name(field, value)


def digest(value: str) -> str:
    if not DIGEST_RE.fullmatch(value):
        raise BadUserInput(
            f"digest: {value!r} is not 'sha256:' followed by 64 lowercase hex digits",
            field="digest",
        )
    return value


def repository(value: str) -> str:
    if len(value) > 255 or not REPOSITORY_RE.fullmatch(value):
        raise BadUserInput(f"repository: {value!r} is not a valid image repository", field="repository")
    return value


def tag(value: str) -> str:
    if not TAG_RE.fullmatch(value):
        raise BadUserInput(f"tag: {value!r} is not a valid image tag", field="tag")
    return value


def email(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 320 or not EMAIL_RE.fullmatch(value):
        raise BadUserInput(f"email: {value!r} is not an email address", field="email")
    return value


CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Half of a UTF-16 pair on its own is not text: no database can store it.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def no_control_characters(field: str, value: str) -> str:
    if CONTROL.search(value):
        raise BadUserInput(f"{field}: must not contain control characters", field=field)
    if LONE_SURROGATE.search(value):
        raise BadUserInput(f"{field}: must not contain lone surrogates (such as \\ud800)", field=field)
    return value


def text(field: str, value: str | None, *, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    if value is not None:
        value = no_control_characters(field, value).strip()
    if not value:
        if required:
            raise BadUserInput(f"{field}: must not be empty", field=field)
        return None
    if len(value) > limit:
        raise BadUserInput(f"{field}: at most {limit} characters", field=field)
    return value


def in_range(field: str, value: int | None, low: int, high: int, *, nullable: bool = False) -> int | None:
    if value is None:
        if nullable:
            return None
        raise BadUserInput(f"{field}: is required", field=field)
    if not low <= value <= high:
        raise BadUserInput(f"{field}: must be between {low} and {high}, got {value}", field=field)
    return value


def approval_policy(required_approvals: int, ttl_hours: int | None) -> None:
    in_range("requiredApprovals", required_approvals, 0, MAX_REQUIRED_APPROVALS)
    in_range("ttlHours", ttl_hours, 1, MAX_TTL_HOURS, nullable=True)
