"""R2, R5: a scope is widened to every application or environment ("*") only when "*" is
written. Empty, blank or null scope parts are BAD_USER_INPUT, and nothing is granted."""

import pytest

from greenlight.models import RoleBinding

GRANT = "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id application environment } }"
GRANT_GROUP = (
    "mutation($i: GroupRoleBindingInput!) { grantGroupRole(input: $i) { id application environment } }"
)
CAN_I = (
    "query($a: String!, $e: String!) { canI(action: DEPLOY, application: $a, environment: $e) { allowed } }"
)
EXPLAIN = """query($u: ID!, $a: String!, $e: String!) {
  explainAccess(userId: $u, action: DEPLOY, application: $a, environment: $e) { allowed } }"""

NOT_A_SCOPE = [
    pytest.param({"application": ""}, id="empty-application"),
    pytest.param({"environment": ""}, id="empty-environment"),
    pytest.param({"application": "   "}, id="blank-application"),
    pytest.param({"environment": " \t"}, id="blank-environment"),
    pytest.param({"application": None}, id="null-application"),
    pytest.param({"environment": None}, id="null-environment"),
]


@pytest.mark.parametrize("scope", NOT_A_SCOPE)
async def test_r2_grant_role_with_an_empty_scope_is_refused_not_widened(world, unchanged, scope):
    field = next(iter(scope))
    async with unchanged():
        error = await world["admin"].fails(
            GRANT, {"i": {"userId": world["nobody"].user_id, "role": "IMAGE_APPROVER", **scope}}
        )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == field
    assert "'*'" in error["message"]
    assert not await RoleBinding.filter(application="*", role="image-approver").exists()


@pytest.mark.parametrize("scope", NOT_A_SCOPE)
async def test_r2_grant_group_role_with_an_empty_scope_is_refused_not_widened(world, unchanged, scope):
    data = await world["admin"].ok('mutation { createGroup(name: "sre") { id } }')
    group_id = data["createGroup"]["id"]
    async with unchanged():
        error = await world["admin"].fails(
            GRANT_GROUP, {"i": {"groupId": group_id, "role": "IMAGE_APPROVER", **scope}}
        )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == next(iter(scope))


async def test_r2_star_is_granted_when_written_or_left_out(world):
    """The contract's default ("*") still applies to a part left out."""
    admin = world["admin"]
    written = await admin.ok(
        GRANT,
        {
            "i": {
                "userId": world["nobody"].user_id,
                "role": "VIEWER",
                "application": "*",
                "environment": "prod",
            }
        },
    )
    assert (written["grantRole"]["application"], written["grantRole"]["environment"]) == ("*", "prod")
    left_out = await admin.ok(GRANT, {"i": {"userId": world["nobody"].user_id, "role": "IMAGE_APPROVER"}})
    assert (left_out["grantRole"]["application"], left_out["grantRole"]["environment"]) == ("*", "*")


@pytest.mark.parametrize(("application", "environment"), [("", "prod"), ("shop", ""), (" ", "prod")])
async def test_r1_can_i_and_explain_access_refuse_an_empty_scope(world, application, environment):
    variables = {"a": application, "e": environment}
    assert await world["dev"].code(CAN_I, variables) == "BAD_USER_INPUT"
    variables["u"] = world["dev"].user_id
    assert await world["admin"].code(EXPLAIN, variables) == "BAD_USER_INPUT"


async def test_r25_audit_filter_with_an_empty_scope_is_refused(world):
    query = "query($a: String) { auditEvents(filter: {application: $a}) { totalCount } }"
    assert await world["admin"].code(query, {"a": ""}) == "BAD_USER_INPUT"
