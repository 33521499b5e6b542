"""`greenlight ci` is a client of the public GraphQL API: it imports nothing of the server
(no workflow, models, schema...), only itself and the build's version for its User-Agent."""

from __future__ import annotations

from tests.test_imports import imports

ALLOWED = {"greenlight.build"}


def test_the_ci_commands_import_nothing_of_the_server():
    used = {b for a, b in imports() if a.startswith("greenlight.ci") and not b.startswith("greenlight.ci")}
    assert used <= ALLOWED, f"greenlight.ci imports {sorted(used - ALLOWED)}"
