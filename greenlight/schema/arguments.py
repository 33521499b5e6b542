"""Arguments that many fields take, described once (GraphiQL shows the descriptions)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from greenlight.workflow.reads import DEFAULT_PAGE, MAX_PAGE

First = Annotated[
    int | None,
    strawberry.argument(
        description=f"How many items, newest first: 0 to {MAX_PAGE} (default {DEFAULT_PAGE}); "
        "more is BAD_USER_INPUT."
    ),
]
After = Annotated[
    str | None,
    strawberry.argument(description="The previous page's pageInfo.endCursor; omitted: the first page."),
]


def described(description: str):
    """An argument's description, for `Annotated[type, described("...")]`."""
    return strawberry.argument(description=description)
