"""A list reads the relations its query selects once, before the page is answered
(greenlight.schema.loaders): whatever way the query names them (fragments, aliases,
skipped fields), the answer is the one each field would give on its own, and R1 holds."""

from __future__ import annotations

from greenlight.models import ApprovalState
from tests.schema.test_statement_counts import _image, _request, statements

PLAIN = """query {
  approvalRequests(filter: {states: [PENDING]}, first: 50) {
    edges { node {
      id state
      image { id tag builtBy { email } }
      pipeline { id application { name } environment { name } }
      requestedBy { email }
      approvals { user { email } }
    } }
  }
}"""

FRAGMENTS = """query {
  approvalRequests(filter: {states: [PENDING]}, first: 50) {
    edges { node { ...Request } }
  }
}
fragment Request on ApprovalRequest {
  id state
  ... on ApprovalRequest { image { id tag builtBy { email } } }
  pipeline { ...Where }
  who: requestedBy { email }
  approvals { user { email } }
}
fragment Where on Pipeline { id application { name } environment { name } }"""

SKIPPED = """query($skip: Boolean!) {
  approvalRequests(filter: {states: [PENDING]}, first: 50) {
    edges { node { id image @skip(if: $skip) { tag } requestedBy { email } } }
  }
}"""


async def seed(world, n: int) -> None:
    for _ in range(n):
        await _request(world, await _image(world), ApprovalState.PENDING)


def nodes(data: dict) -> list[dict]:
    return [edge["node"] for edge in data["approvalRequests"]["edges"]]


async def test_a_list_answers_the_same_through_fragments_and_aliases(world):
    await seed(world, 3)
    client = world["approver1"]
    plain = nodes(await client.ok(PLAIN))
    named = nodes(await client.ok(FRAGMENTS))
    assert len(plain) >= 3
    for node in named:
        node["requestedBy"] = node.pop("who")
    assert named == plain
    assert all(n["pipeline"]["application"]["name"] == "shop" for n in plain)
    assert all(n["approvals"] and n["approvals"][0]["user"]["email"] for n in plain)


async def test_a_skipped_relation_is_left_out_and_the_rest_answered(world):
    await seed(world, 2)
    client = world["approver1"]
    skipped = nodes(await client.ok(SKIPPED, {"skip": True}))
    shown = nodes(await client.ok(SKIPPED, {"skip": False}))
    assert all("image" not in n for n in skipped)
    assert [n["id"] for n in skipped] == [n["id"] for n in shown]
    assert all(n["image"]["tag"] and n["requestedBy"]["email"] for n in shown)


async def test_r1_the_prefetched_list_shows_only_what_the_user_may_see(world):
    """billing_dev sees no shop pipeline: the same query lists none of the shop requests."""
    await seed(world, 2)
    assert nodes(await world["billing_dev"].ok(PLAIN)) == []


async def test_select_image_reads_builders_and_states_once_for_the_list(world):
    """Select Image with builtBy and approvalState: the same statements for 1 image and 20."""
    pipeline = world.ids["shop/prod"]
    query = """query($p: ID!) { pipeline(id: $p) { deployableImages {
      id builtBy { email } approvalState(pipelineId: $p) } } }"""
    client = world["approver1"]

    async def approved(n: int) -> None:
        for _ in range(n):
            await _request(world, await _image(world), ApprovalState.APPROVED)

    await approved(1)
    one = await statements(client, query, {"p": pipeline})
    await approved(19)
    twenty = await statements(client, query, {"p": pipeline})
    data = await client.ok(query, {"p": pipeline})
    images = data["pipeline"]["deployableImages"]
    assert len(images) >= 20
    assert {i["approvalState"] for i in images} == {"APPROVED"}
    assert all(i["builtBy"]["email"] == "dev@example.com" for i in images)
    assert twenty <= one + 1, (one, twenty)
