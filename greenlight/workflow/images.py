"""What an image is beyond repository, tag and digest: the commit and branch it was built
from, the build that made it, and free labels; and the filters the image lists take.

Limits (each refusal is BAD_USER_INPUT naming the field, and nothing is registered):
- commit: 7 to 40 hex digits (stored lowercase);
- branch: 1 to 255 characters, no whitespace or control characters;
- buildUrl: an absolute http:// or https:// URL with a host, at most 2048 characters;
- labels: at most MAX_LABELS; a key is 1 to 63 of letters, digits, '.', '_', '-' and '/',
  starting with a letter or digit, each key once; a value 0 to 255 characters, no control
  characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from tortoise.expressions import Q, Subquery

from greenlight.errors import BadUserInput
from greenlight.models import Image, ImageLabel
from greenlight.workflow import validation

COMMIT_RE = re.compile(r"[0-9a-fA-F]{7,40}")
BRANCH_RE = re.compile(r"[^\s\x00-\x1f\x7f]{1,255}")
LABEL_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
MAX_LABELS = 20
MAX_LABEL_VALUE = 255
MAX_URL = 2048


@dataclass(frozen=True)
class Metadata:
    """What registerImage records besides repository, tag and digest; all optional."""

    commit: str | None = None
    branch: str | None = None
    build_url: str | None = None
    labels: tuple[tuple[str, str], ...] = ()

    def described(self) -> dict:
        """For the audit log: only what was given."""
        found: dict = {}
        if self.commit is not None:
            found["commit"] = self.commit
        if self.branch is not None:
            found["branch"] = self.branch
        if self.build_url is not None:
            found["buildUrl"] = self.build_url
        if self.labels:
            found["labels"] = dict(self.labels)
        return found


def commit(field: str, value: str) -> str:
    if not COMMIT_RE.fullmatch(value):
        raise BadUserInput(f"{field}: {value!r} is not a commit (7 to 40 hex digits)", field=field)
    return value.lower()


def branch(field: str, value: str) -> str:
    if not BRANCH_RE.fullmatch(value) or validation.LONE_SURROGATE.search(value):
        raise BadUserInput(
            f"{field}: a branch is 1 to 255 characters without spaces or control characters",
            field=field,
        )
    return value


def http_url(field: str, value: str) -> str:
    """An absolute http or https URL: nothing a browser would run (javascript:, data:)."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:  # e.g. "http://[" (an unclosed IPv6 address)
        parts = host = None
    bad = len(value) > MAX_URL or validation.CONTROL.search(value) or validation.LONE_SURROGATE.search(value)
    if bad or parts is None or parts.scheme not in ("http", "https") or not host or " " in value:
        raise BadUserInput(
            f"{field}: must be an http:// or https:// URL of at most {MAX_URL} characters", field=field
        )
    return value


def label_key(field: str, value: str) -> str:
    if not LABEL_KEY_RE.fullmatch(value):
        raise BadUserInput(
            f"{field}: {value!r} is not a label key (1 to 63 letters, digits, '.', '_', '-' or '/', "
            "starting with a letter or digit)",
            field=field,
        )
    return value


def label_value(field: str, value: str) -> str:
    validation.no_control_characters(field, value)
    if len(value) > MAX_LABEL_VALUE:
        raise BadUserInput(f"{field}: at most {MAX_LABEL_VALUE} characters", field=field)
    return value


def metadata(
    commit_: str | None,
    branch_: str | None,
    build_url: str | None,
    labels: Sequence[tuple[str, str]] | None,
) -> Metadata:
    """Checks registerImage's optional fields, before anything is written."""
    labels = list(labels or ())
    if len(labels) > MAX_LABELS:
        raise BadUserInput(f"labels: at most {MAX_LABELS}, got {len(labels)}", field="labels")
    seen: set[str] = set()
    for key, value in labels:
        label_key("labels.key", key)
        label_value("labels.value", value)
        if key in seen:
            raise BadUserInput(f"labels: the key {key!r} is given twice", field="labels")
        seen.add(key)
    return Metadata(
        commit=None if commit_ is None else commit("commit", commit_),
        branch=None if branch_ is None else branch("branch", branch_),
        build_url=None if build_url is None else http_url("buildUrl", build_url),
        labels=tuple(labels),
    )


async def write_labels(image: Image, found: Metadata) -> None:
    """The labels of a newly registered image (the caller's transaction)."""
    if found.labels:
        await ImageLabel.bulk_create([ImageLabel(image_id=image.id, key=k, value=v) for k, v in found.labels])


@dataclass(frozen=True)
class ImageFilter:
    """Which images a list keeps; every part given must match. `commit` matches a stored
    commit starting with it (a short hash finds the full one); `label_key` alone keeps the
    images with that label, with `label_value` those where it has that value."""

    branch: str | None = None
    commit: str | None = None
    label_key: str | None = None
    label_value: str | None = None

    @classmethod
    def of(
        cls, branch_: str | None, commit_: str | None, key: str | None, value: str | None
    ) -> ImageFilter | None:
        """Checked like registerImage's fields; None when nothing is asked."""
        if value is not None and key is None:
            raise BadUserInput("filter.label: a value needs its key", field="filter.label")
        found = cls(
            branch=None if branch_ is None else branch("filter.branch", branch_),
            commit=None if commit_ is None else commit("filter.commit", commit_),
            label_key=None if key is None else label_key("filter.label.key", key),
            label_value=None if value is None else label_value("filter.label.value", value),
        )
        return None if found == cls() else found

    def q(self) -> Q:
        """The filter as a WHERE on images, for the database to apply."""
        parts = []
        if self.branch is not None:
            parts.append(Q(branch=self.branch))
        if self.commit is not None:
            parts.append(Q(commit__startswith=self.commit))
        if self.label_key is not None:
            labels = ImageLabel.filter(key=self.label_key)
            if self.label_value is not None:
                labels = labels.filter(value=self.label_value)
            parts.append(Q(id__in=Subquery(labels.values("image_id"))))
        return Q(*parts)
