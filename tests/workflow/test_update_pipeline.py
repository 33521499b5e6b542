"""updatePipeline changes one setting without restating the rest (R2, R7, R18): every field
left out keeps its value; updateApprovalPolicy stays the contract's whole policy, whose
defaults apply to what is left out, and the README says so."""

import re
from pathlib import Path

import pytest

from greenlight.models import AuditEvent

README = Path(__file__).resolve().parents[2] / "README.md"

UPDATE = """mutation($id: ID!, $i: PipelineUpdateInput!) { updatePipeline(id: $id, input: $i) {
  id strategy triggerType
  approvalPolicy { requiredApprovals ttlHours approversCanDeploy kind approvers { id } cancelStaleRequests } } }"""
POLICY = """mutation($p: ID!, $i: ApprovalPolicyInput!) { updateApprovalPolicy(pipelineId: $p, input: $i) {
  approvalPolicy { requiredApprovals ttlHours approversCanDeploy } } }"""
READ = """query($p: ID!) { pipeline(id: $p) { strategy triggerType
  approvalPolicy { requiredApprovals ttlHours approversCanDeploy kind approvers { id } cancelStaleRequests } } }"""
REQUEST = "query($id: ID!) { approvalRequest(id: $id) { state requiredApprovals expiresAt } }"


async def read(world, pipeline: str = "shop/prod") -> dict:
    return (await world["admin"].ok(READ, {"p": world.ids[pipeline]}))["pipeline"]


async def update(world, fields: dict, pipeline: str = "shop/prod", who: str = "admin") -> dict:
    return (await world[who].ok(UPDATE, {"id": world.ids[pipeline], "i": fields}))["updatePipeline"]


async def test_r2_update_pipeline_changes_only_the_setting_given(world):
    await world["admin"].ok(
        POLICY,
        {
            "p": world.ids["shop/prod"],
            "i": {"requiredApprovals": 2, "ttlHours": 48, "approversCanDeploy": True},
        },
    )
    await update(world, {"strategy": "CANARY", "cancelStaleRequests": True})
    before = await read(world)
    changed = await update(world, {"requiredApprovals": 1})
    assert changed["approvalPolicy"] == {**before["approvalPolicy"], "requiredApprovals": 1}
    assert (changed["strategy"], changed["triggerType"]) == ("CANARY", "MANUAL")
    assert changed["approvalPolicy"]["ttlHours"] == 48
    assert changed["approvalPolicy"]["approversCanDeploy"] is True
    for fields, key, value in (
        ({"ttlHours": 72}, "ttlHours", 72),
        ({"approversCanDeploy": False}, "approversCanDeploy", False),
        ({"cancelStaleRequests": False}, "cancelStaleRequests", False),
    ):
        previous = await read(world)
        after = await update(world, fields)
        assert after["approvalPolicy"] == {**previous["approvalPolicy"], key: value}, fields
        assert after["strategy"] == previous["strategy"]
    after = await update(world, {"triggerType": "AUTOMATIC"})
    assert after["triggerType"] == "AUTOMATIC" and after["strategy"] == "CANARY"
    assert after["approvalPolicy"]["requiredApprovals"] == 1


async def test_r2_update_pipeline_with_nothing_given_changes_nothing(world):
    before = await read(world)
    assert {k: v for k, v in (await update(world, {})).items() if k != "id"} == before


async def test_update_pipeline_clears_ttl_hours_only_when_asked(world):
    assert (await update(world, {"ttlHours": None}))["approvalPolicy"]["ttlHours"] == 24  # null keeps
    assert (await update(world, {"clearTtlHours": True}))["approvalPolicy"]["ttlHours"] is None
    assert (await update(world, {"ttlHours": 5}))["approvalPolicy"]["ttlHours"] == 5


async def test_update_pipeline_approver_settings_one_at_a_time(world):
    one = await update(world, {"kind": "SPECIFIC_USERS", "approverIds": [world["approver1"].user_id]})
    assert one["approvalPolicy"]["kind"] == "SPECIFIC_USERS"
    assert one["approvalPolicy"]["requiredApprovals"] == 2  # kept
    other = await update(world, {"approverIds": [world["approver2"].user_id]})
    assert other["approvalPolicy"]["kind"] == "SPECIFIC_USERS"  # kept
    assert other["approvalPolicy"]["approvers"] == [{"id": world["approver2"].user_id}]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"requiredApprovals": 7}, "requiredApprovals"),
        ({"requiredApprovals": -1}, "requiredApprovals"),
        ({"ttlHours": 0}, "ttlHours"),
        ({"ttlHours": 8761}, "ttlHours"),
        ({"ttlHours": 5, "clearTtlHours": True}, "ttlHours"),
        ({"kind": "SPECIFIC_USERS"}, "approverIds"),
        ({"kind": "GROUP_QUORUMS"}, "groupQuorums"),
        ({"approverIds": ["User:999999"], "kind": "SPECIFIC_USERS"}, "approverIds"),
    ],
)
async def test_update_pipeline_validates_as_update_approval_policy(world, unchanged, fields, field):
    async with unchanged():
        error = await world["admin"].fails(UPDATE, {"id": world.ids["shop/prod"], "i": fields})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"].get("field") == field


@pytest.mark.parametrize("who", ["dev", "approver1", "viewer", "nobody"])
async def test_r2_update_pipeline_is_for_super_admins_only(world, unchanged, who):
    async with unchanged():
        code = await world[who].code(UPDATE, {"id": world.ids["shop/prod"], "i": {"requiredApprovals": 0}})
    assert code in ("FORBIDDEN", "NOT_FOUND")
    if who == "dev":
        assert code == "FORBIDDEN"  # dev sees shop/prod


async def test_update_pipeline_missing_pipeline_is_not_found(world, unchanged):
    async with unchanged():
        assert await world["admin"].code(UPDATE, {"id": "Pipeline:999999", "i": {}}) == "NOT_FOUND"


async def test_r18_update_pipeline_required_approvals_zero_cancels_live_requests(world):
    image = await world.register_image()
    request = await world.request_approval(image, who="dev2")
    await update(world, {"requiredApprovals": 0})
    found = (await world["admin"].ok(REQUEST, {"id": request}))["approvalRequest"]
    assert found["state"] == "CANCELLED"
    assert await AuditEvent.filter(action="request_cancelled").count() == 1


async def test_r7_update_pipeline_leaves_live_requests_their_snapshot(world):
    image = await world.register_image()
    request = await world.request_approval(image, who="dev2")
    before = (await world["admin"].ok(REQUEST, {"id": request}))["approvalRequest"]
    await update(world, {"requiredApprovals": 3, "clearTtlHours": True})
    after = (await world["admin"].ok(REQUEST, {"id": request}))["approvalRequest"]
    assert after == before and after["requiredApprovals"] == 2 and after["expiresAt"] is not None


async def test_r25_update_pipeline_is_audited_with_before_and_after(world):
    await update(world, {"strategy": "BLUE_GREEN", "ttlHours": 12})
    event = await AuditEvent.filter(action="update_pipeline").first()
    assert event is not None and event.actor_id == int(world["admin"].user_id.rpartition(":")[2])
    assert (event.before["strategy"], event.before["ttlHours"]) == ("ROLLING", 24)
    assert (event.after["strategy"], event.after["ttlHours"]) == ("BLUE_GREEN", 12)
    assert event.after["requiredApprovals"] == event.before["requiredApprovals"] == 2


async def test_update_approval_policy_is_the_whole_policy_as_the_contract_says(world):
    """Left out of updateApprovalPolicy, ttlHours is null and approversCanDeploy false."""
    await update(world, {"approversCanDeploy": True})
    data = await world["admin"].ok(POLICY, {"p": world.ids["shop/prod"], "i": {"requiredApprovals": 1}})
    assert data["updateApprovalPolicy"]["approvalPolicy"] == {
        "requiredApprovals": 1,
        "ttlHours": None,
        "approversCanDeploy": False,
    }


def test_the_readmes_update_approval_policy_examples_state_the_whole_policy():
    """An example to run that leaves ttlHours or approversCanDeploy out would reset them
    unseen (the prose may show such a call, saying what it does)."""
    blocks = "\n".join(re.findall(r"```graphql\n(.*?)```", README.read_text(), re.S))
    examples = re.findall(r"updateApprovalPolicy\([^)]*input:\s*\{([^}]*)\}", blocks)
    assert examples
    for fields in examples:
        assert "ttlHours" in fields and "approversCanDeploy" in fields, fields
    assert "updatePipeline(" in README.read_text()
