"""Connections: images, approvalRequests and Pipeline.deployments (api.graphql).

Newest first, `first` defaults to 20 and is at most 100, `after` takes the `endCursor` of the
previous page, `totalCount` counts every item the caller may see, not the page.
"""

from __future__ import annotations

import pytest

from greenlight.models import ApprovalRequest, Deployment, Image

KINDS = ("images", "approvalRequests", "deployments")
COUNTS = {"images": 45, "approvalRequests": 25, "deployments": 25}
TIME_FIELD = {"images": "createdAt", "approvalRequests": "requestedAt", "deployments": "startedAt"}
MODEL = {"images": Image, "approvalRequests": ApprovalRequest, "deployments": Deployment}


def query(kind: str, *, with_first: bool = True, page_info: str = "hasNextPage endCursor") -> str:
    args = "first: $first, after: $after" if with_first else "after: $after"
    params = "$first: Int, $after: String" if with_first else "$after: String"
    fields = f"""totalCount pageInfo {{ {page_info} }}
                 edges {{ cursor node {{ id {TIME_FIELD[kind]} }} }}"""
    if kind == "images":
        return f"""query($a: ID!, {params}) {{
                     c: images(applicationId: $a, {args}) {{ {fields} }} }}"""
    if kind == "approvalRequests":
        return f"""query({params}) {{ c: approvalRequests({args}) {{ {fields} }} }}"""
    return f"""query($p: ID!, {params}) {{
                 pipeline(id: $p) {{ c: deployments({args}) {{ {fields} }} }} }}"""


class Pager:
    """Fetches pages of one connection as one user."""

    page_info = "hasNextPage endCursor"

    def __init__(self, world, kind: str, who: str = "dev", pipeline: str = "shop/staging") -> None:
        self.world, self.kind, self.who = world, kind, who
        self.variables: dict = {}
        if kind == "images":
            self.variables["a"] = world.ids["shop"]
        if kind == "deployments":
            self.variables["p"] = world.ids[pipeline]

    def _vars(self, first, after) -> dict:
        variables = dict(self.variables)
        if first is not ...:
            variables["first"] = first
        if after is not None:
            variables["after"] = after
        return variables

    @staticmethod
    def _connection(data: dict) -> dict:
        return data["pipeline"]["c"] if "pipeline" in data else data["c"]

    async def page(self, first=..., after: str | None = None, *, literal_default: bool = False) -> dict:
        q = query(self.kind, with_first=not literal_default, page_info=self.page_info)
        return self._connection(await self.world[self.who].ok(q, self._vars(first, after)))

    async def code(self, first=..., after: str | None = None) -> str:
        return await self.world[self.who].code(query(self.kind), self._vars(first, after))

    async def walk(self, first: int) -> list[dict]:
        pages, after = [], None
        while True:
            page = await self.page(first, after)
            pages.append(page)
            if not page["pageInfo"]["hasNextPage"]:
                return pages
            assert len(pages) < 100, "pagination does not end"
            after = page["pageInfo"]["endCursor"]


async def populate(world, kind: str) -> list[str]:
    """COUNTS[kind] items visible to dev, oldest first, plus some dev must not see or count."""
    created = []
    for _ in range(COUNTS[kind]):
        image = await world.register_image("dev")
        if kind == "images":
            created.append(image)
        elif kind == "approvalRequests":
            created.append(await world.request_approval(image, "shop/prod", who="dev"))
        else:
            created.append((await world.deploy(image, "shop/staging"))["id"])
    # billing items: invisible to dev (images and requests); no deployments on shop/staging
    for _ in range(3):
        image = await world.register_image("billing_dev", "billing")
        if kind == "approvalRequests":
            await world.request_approval(image, "billing/prod", who="billing_dev")
    return created


def ids_of(page: dict) -> list[str]:
    return [edge["node"]["id"] for edge in page["edges"]]


def check_pages(pages: list[dict], expected: list[str], first: int) -> None:
    """Every item once, newest first, pages full but the last, page info consistent."""
    walked = [i for page in pages for i in ids_of(page)]
    assert walked == expected
    assert len(walked) == len(set(walked))
    for n, page in enumerate(pages):
        last = n == len(pages) - 1
        assert page["totalCount"] == len(expected)
        assert len(page["edges"]) == (len(expected) - first * n if last else first)
        assert page["pageInfo"]["hasNextPage"] is (not last)
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        assert len({edge["cursor"] for edge in page["edges"]}) == len(page["edges"])


@pytest.mark.parametrize("kind", KINDS)
async def test_connection_pages_newest_first_visiting_every_item_once(world, kind):
    """api.graphql connections: newest first; first defaults to 20; walking endCursor/after
    visits every item exactly once; hasNextPage and totalCount exact; nothing after the end."""
    created = await populate(world, kind)
    newest_first = list(reversed(created))
    pager = Pager(world, kind)
    count = len(created)

    # default page size 20, whether `first` is left out of the query or of the variables
    for page in (await pager.page(literal_default=True), await pager.page()):
        assert ids_of(page) == newest_first[:20]
        assert page["totalCount"] == count
        assert page["pageInfo"]["hasNextPage"] is True
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
    # the stored order agrees: timestamps never increase down the list
    page = await pager.page(100)
    times = [edge["node"][TIME_FIELD[kind]] for edge in page["edges"]]
    assert times == sorted(times, reverse=True)
    assert ids_of(page) == newest_first
    assert page["pageInfo"] == {"hasNextPage": False, "endCursor": page["edges"][-1]["cursor"]}
    assert await MODEL[kind].all().count() >= count

    # walks: a page size that leaves a short last page, one that divides exactly, one of 1
    for first in (7, 5, 20, 1):
        check_pages(await pager.walk(first), newest_first, first)
    # after the oldest item: an empty last page
    last = await pager.page(20, page["edges"][-1]["cursor"])
    assert last["edges"] == []
    assert last["pageInfo"] == {"hasNextPage": False, "endCursor": None}
    assert last["totalCount"] == count


async def test_walk_stays_exact_while_items_are_added(world):
    """api.graphql connections: an image registered mid-walk is not visited (it is newer than the
    cursor) and no older image is skipped or repeated; totalCount counts it at once."""
    created = await populate(world, "images")
    pager = Pager(world, "images")
    first = await pager.page(10)
    newcomer = await world.register_image("dev")
    seen = ids_of(first)
    after = first["pageInfo"]["endCursor"]
    while True:
        page = await pager.page(10, after)
        assert page["totalCount"] == len(created) + 1
        seen += ids_of(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == list(reversed(created))
    assert newcomer not in seen
    assert ids_of(await pager.page(1)) == [newcomer]


async def test_total_count_counts_only_what_the_caller_sees(world):
    """R1 with connections: approvalRequests' totalCount and pages leave out other scopes'
    requests; an empty connection has no next page and no cursor."""
    created = await populate(world, "approvalRequests")
    for who, total in (("dev", len(created)), ("billing_dev", 3), ("admin", len(created) + 3), ("nobody", 0)):
        pager = Pager(world, "approvalRequests", who)
        pages = await pager.walk(10)
        assert all(page["totalCount"] == total for page in pages), who
        assert sum(len(page["edges"]) for page in pages) == total, who
    empty = await Pager(world, "approvalRequests", "nobody").page()
    assert empty == {"totalCount": 0, "pageInfo": {"hasNextPage": False, "endCursor": None}, "edges": []}
    deployments = await Pager(world, "deployments", "dev", pipeline="shop/prod").page()
    assert deployments == {
        "totalCount": 0,
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "edges": [],
    }
    # filtered: only the shop/prod requests, still exact
    data = await world["admin"].ok(
        "query($p: ID) { approvalRequests(filter: {pipelineId: $p}, first: 10) { totalCount } }",
        {"p": world.ids["shop/prod"]},
    )
    assert data["approvalRequests"]["totalCount"] == len(created)


@pytest.mark.parametrize("kind", KINDS)
async def test_connection_arguments_are_checked(world, kind, unchanged):
    """api.graphql connections: first above 100 or below 0, and a malformed cursor, are
    BAD_USER_INPUT; first=100 is allowed."""
    created = []
    for _ in range(3):
        image = await world.register_image("dev")
        if kind == "images":
            created.append(image)
        elif kind == "approvalRequests":
            created.append(await world.request_approval(image, "shop/prod"))
        else:
            created.append((await world.deploy(image, "shop/staging"))["id"])
    pager = Pager(world, kind)
    async with unchanged():
        for first in (101, 1000, -1, -20):
            assert await pager.code(first) == "BAD_USER_INPUT", first
        cursors = [
            "garbage",
            "",
            "Cursor:",
            "Cursor:x",
            "Cursor:-1",
            "Cursor:99999999999999999999",
            created[0],
        ]
        for cursor in cursors:
            assert await pager.code(20, cursor) == "BAD_USER_INPUT", cursor
    page = await pager.page(100)
    assert ids_of(page) == list(reversed(created))
    assert page["totalCount"] == 3


@pytest.mark.parametrize("kind", KINDS)
async def test_page_info_has_previous_page_and_start_cursor(world, kind):
    """Relay's PageInfo: startCursor is the first edge's cursor (null on an empty page);
    hasPreviousPage is false on the first page and true on every page read after a cursor
    with newer items before it, including the empty page after the oldest item."""
    created = await populate(world, kind)
    pager = Pager(world, kind)
    pager.page_info = "hasNextPage hasPreviousPage startCursor endCursor"
    pages = await pager.walk(10)
    check_pages(pages, list(reversed(created)), 10)
    for n, page in enumerate(pages):
        info = page["pageInfo"]
        assert info["startCursor"] == page["edges"][0]["cursor"]
        assert info["hasPreviousPage"] is (n > 0), n
    after_oldest = await pager.page(10, pages[-1]["pageInfo"]["endCursor"])
    assert after_oldest["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": None,
        "endCursor": None,
    }
    # a cursor newer than every item: nothing comes before the page
    newest = await pager.page(5, "Cursor:2147483647")
    assert ids_of(newest) == list(reversed(created))[:5]
    assert newest["pageInfo"]["hasPreviousPage"] is False
    # R1: the billing requests, newer than all of dev's, are not "before" dev's first page
    if kind == "approvalRequests":
        above_devs = f"Cursor:{int(created[-1].split(':')[1]) + 1}"
        page = await pager.page(5, above_devs)
        assert ids_of(page) == list(reversed(created))[:5]
        assert page["pageInfo"]["hasPreviousPage"] is False
        admin = Pager(world, kind, "admin")
        admin.page_info = pager.page_info
        assert (await admin.page(5, above_devs))["pageInfo"]["hasPreviousPage"] is True


async def test_page_info_of_group_members(world):
    """Relay's PageInfo on Group.members (read per group in one statement): startCursor and
    hasPreviousPage as on every connection."""
    admin = world["admin"]
    group = (await admin.ok('mutation { createGroup(name: "sre") { id } }'))["createGroup"]["id"]
    members = ["dev", "dev2", "approver1", "viewer"]
    for who in members:
        await admin.ok(
            "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }",
            {"g": group, "u": world[who].user_id},
        )
    q = """query($g: ID!, $after: String) { group(id: $g) { members(first: 3, after: $after) {
             edges { cursor node { id } }
             pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }"""
    first = (await admin.ok(q, {"g": group}))["group"]["members"]
    assert first["pageInfo"]["hasPreviousPage"] is False
    assert first["pageInfo"]["startCursor"] == first["edges"][0]["cursor"]
    assert first["pageInfo"]["hasNextPage"] is True
    second = (await admin.ok(q, {"g": group, "after": first["pageInfo"]["endCursor"]}))["group"]["members"]
    assert len(second["edges"]) == 1
    assert second["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": second["edges"][0]["cursor"],
        "endCursor": second["edges"][0]["cursor"],
    }
    listed = [e["node"]["id"] for e in first["edges"] + second["edges"]]
    assert sorted(listed) == sorted(world[w].user_id for w in members)
    top = (await admin.ok(q, {"g": group, "after": "Cursor:2147483647"}))["group"]["members"]
    assert top["pageInfo"]["hasPreviousPage"] is False
