"""Which build of Greenlight this is: the package version and the git commit it came from.

The commit is, in order: the BUILD_COMMIT file beside this module (the Dockerfile writes it
from its GREENLIGHT_COMMIT build argument, since an image has no .git), `git rev-parse HEAD`
when running from a checkout, else "unknown".
"""

from __future__ import annotations

import functools
import re
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
COMMIT_FILE = PACKAGE_DIR / "BUILD_COMMIT"
UNKNOWN = "unknown"
_COMMIT = re.compile(r"[0-9a-f]{7,64}")


def version() -> str:
    """The installed package's version (pyproject.toml's, as pip recorded it)."""
    try:
        return metadata.version("greenlight")
    except metadata.PackageNotFoundError:
        return UNKNOWN


@functools.cache
def commit() -> str:
    """The git commit this code was built from, or "unknown"."""
    try:
        baked = COMMIT_FILE.read_text(encoding="utf-8").strip().lower()
    except OSError:
        baked = ""
    if _COMMIT.fullmatch(baked):
        return baked
    checkout = PACKAGE_DIR.parent
    if not (checkout / ".git").exists():
        return UNKNOWN
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    found = result.stdout.strip()
    return found if result.returncode == 0 and _COMMIT.fullmatch(found) else UNKNOWN


def describe() -> str:
    """What `greenlight --version` prints: "greenlight 0.1.0 (commit 1a2b3c...)"."""
    return f"greenlight {version()} (commit {commit()})"
