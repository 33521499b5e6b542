"""What every object type shares: Node (the global id) and the Relay connections of the
paginated lists (Connection, Edge, PageInfo; `connection` makes one from a page).

The object types live by domain, each module importing only those before it: nodes,
identity, catalog, images, requests, deployments (audit, emails and chat need identity and
catalog only). A type of a later module is named lazily, `Annotated[X, strawberry.lazy(...)]`
with X imported under TYPE_CHECKING and, where one is made, in that resolver: so no two of
these modules import each other when loaded."""

from __future__ import annotations

from typing import Generic, TypeVar

import strawberry

from greenlight.schema import ids
from greenlight.workflow import reads


@strawberry.interface(
    description="An object with a global id (Relay's Node): node(id) and nodes(ids) fetch it again, "
    "as its own query would (R1)."
)
class Node:
    """Implemented by every type with an id. Each holds its row in a Private `model`
    (ApprovalPolicy holds its pipeline's, as `pipeline`, and overrides `id`) and is made with
    `from_model(row)`, which fills the declared fields, the row's plain columns; what computes,
    authorises or loads a relation (through the loaders) stays a method.

    A bare annotation above such a method (`user: User`) keeps that field in its place:
    Strawberry lists annotated fields before the others, and schema.graphql keeps its order.

    The id is a plain field too, filled as the object is made (`__post_init__`): answering it
    calls no resolver, once per object of every list."""

    id: strawberry.ID = strawberry.field(
        description='"<Type>:<number>", e.g. "Pipeline:3": unique across types and stable, so a '
        "client's normalised cache can key on it.",
        default=strawberry.ID(""),
    )

    def __post_init__(self) -> None:
        self.id = strawberry.ID(ids.encode(type(self).__name__, self.model.pk))


@strawberry.type(description="Where a page of a connection stands among all the items (Relay).")
class PageInfo:
    page: strawberry.Private[reads.Page]

    @strawberry.field(description="Whether more items follow: pass endCursor as `after` to fetch them.")
    def has_next_page(self) -> bool:
        return self.page.has_next

    @strawberry.field(
        description="Whether items come before this page (there are when `after` was given and "
        "newer items than it exist)."
    )
    async def has_previous_page(self) -> bool:
        return await self.page.has_previous()

    @strawberry.field(description="The cursor of the first edge; null on an empty page.")
    def start_cursor(self) -> str | None:
        return ids.encode_cursor(self.page.items[0].id) if self.page.items else None

    @strawberry.field(description="The cursor of the last edge, for `after`; null on an empty page.")
    def end_cursor(self) -> str | None:
        return ids.encode_cursor(self.page.items[-1].id) if self.page.items else None


T = TypeVar("T")


@strawberry.type(description="One item of a page, with the cursor that continues after it.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(description="Pass it as `after` to continue after this item.")
    node: T = strawberry.field(description="The item.")


@strawberry.type(
    description="One page of a list, newest first (Relay connection): up to `first` items after the cursor `after`."
)
class Connection(Generic[T]):
    """Named ImageConnection, ApprovalRequestConnection, ... by its node type."""

    edges: list[Edge[T]] = strawberry.field(description="The page's items, newest first.")
    page_info: PageInfo = strawberry.field(
        description="Where the page stands, and the cursor for the next one."
    )
    page: strawberry.Private[reads.Page]

    @strawberry.field(description="Counted only when asked for.")
    async def total_count(self) -> int:
        return await self.page.count()


def connection(page: reads.Page, node: type[T]) -> Connection[T]:
    edges = [Edge(cursor=ids.encode_cursor(m.id), node=node.from_model(m)) for m in page.items]
    return Connection(edges=edges, page_info=PageInfo(page=page), page=page)
