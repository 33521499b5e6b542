"""Approval policy kinds: ANY, SPECIFIC_USERS and GROUP_QUORUMS with partial and
complete approval (R12), a person in two groups under countOncePerPerson true and false, the
request's snapshot of the policy (R7), the requirement lines and progress of a request, the
policy refusals (R2, BAD_USER_INPUT) and requests refused because they could never be met."""

from __future__ import annotations

import pytest

POLICY_FIELDS = """
  requiredApprovals ttlHours approversCanDeploy kind countOncePerPerson cancelStaleRequests
  approvers { id } groupQuorums { group { id name } minApprovals }
  exceptionUsers { id } exceptionGroups { id }
"""
UPDATE_POLICY = f"""mutation($p: ID!, $i: ApprovalPolicyInput!) {{
  updateApprovalPolicy(pipelineId: $p, input: $i) {{ id approvalPolicy {{ {POLICY_FIELDS} }} }}
}}"""
POLICY = f"query($p: ID!) {{ pipeline(id: $p) {{ approvalPolicy {{ {POLICY_FIELDS} }} }} }}"
REQUEST_VIEW = """query($id: ID!) { approvalRequest(id: $id) {
  id state policyKind requiredApprovals progress stale
  requirements { description user { id } group { id } required approved met }
} }"""
REQUEST = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id state } }"
APPROVE = "mutation($id: ID!) { approveRequest(id: $id) { id state } }"
DEPLOY = """mutation($i: DeployImageInput!) {
  deployImage(input: $i) { id status approvalRequest { id state } }
}"""
DEPLOYABLE = "query($p: ID!) { pipeline(id: $p) { deployableImages { id } } }"
CREATE_GROUP = "mutation($n: String!) { createGroup(name: $n) { id } }"
ADD_MEMBER = "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }"
REMOVE_MEMBER = "mutation($g: ID!, $u: ID!) { removeGroupMember(groupId: $g, userId: $u) { id } }"
GRANT = "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }"
REVOKE = "mutation($id: ID!) { revokeRole(id: $id) { id } }"
DEACTIVATE = "mutation($id: ID!) { deactivateUser(id: $id) { id isActive } }"
REQUESTS = "query($p: ID!) { approvalRequests(filter: {pipelineId: $p}, first: 100) { totalCount } }"


# --- helpers -----------------------------------------------------------------------------------


def pk(value) -> int:
    """The number of a global id ("User:5") or of a plain id (5, "5")."""
    return int(str(value).rpartition(":")[2])


async def set_policy(world, pipeline: str = "shop/prod", who: str = "admin", **fields) -> dict:
    """updateApprovalPolicy with shop/prod's own values unless given; returns approvalPolicy."""
    data = await world[who].ok(UPDATE_POLICY, {"p": world.ids[pipeline], "i": policy_input(**fields)})
    return data["updateApprovalPolicy"]["approvalPolicy"]


def policy_input(**fields) -> dict:
    values = {"requiredApprovals": 2, "ttlHours": 24}
    values.update(fields)
    return values


async def read_policy(world, pipeline: str = "shop/prod") -> dict:
    return (await world["admin"].ok(POLICY, {"p": world.ids[pipeline]}))["pipeline"]["approvalPolicy"]


def user_ids(world, *names: str) -> list[str]:
    return [world[n].user_id for n in names]


async def make_group(world, name: str, *members: str) -> str:
    group = (await world["admin"].ok(CREATE_GROUP, {"n": name}))["createGroup"]["id"]
    for member in members:
        await world["admin"].ok(ADD_MEMBER, {"g": group, "u": world[member].user_id})
    return group


async def grant(world, who: str, role: str, application: str = "shop", environment: str = "*") -> None:
    await world["admin"].ok(
        GRANT,
        {
            "i": {
                "userId": world[who].user_id,
                "role": role,
                "application": application,
                "environment": environment,
            }
        },
    )


async def view(world, request: str, who: str = "admin") -> dict:
    data = await world[who].ok(REQUEST_VIEW, {"id": request})
    found = data["approvalRequest"]
    # progress is the requirement lines joined, the total first
    assert found["requirements"][0]["description"] == "approvals"
    assert found["requirements"][0]["user"] is None and found["requirements"][0]["group"] is None
    assert found["progress"] == ", ".join(
        f"{line['description']}: {line['approved']} of {line['required']}" for line in found["requirements"]
    )
    return found


def lines(found: dict) -> dict[str, tuple[int, int, bool]]:
    """description -> (approved, required, met) of each requirement line."""
    return {r["description"]: (r["approved"], r["required"], r["met"]) for r in found["requirements"]}


async def new_request(world, builder: str = "dev", requester: str = "dev2", pipeline: str = "shop/prod"):
    image = await world.register_image(builder, pipeline.split("/")[0])
    return image, await world.request_approval(image, pipeline, who=requester)


async def approve(world, request: str, who: str) -> str:
    return (await world.approve(request, who))["state"]


async def deploy_code(world, image: str, who: str = "dev", pipeline: str = "shop/prod") -> str:
    return await world[who].code(DEPLOY, {"i": {"pipelineId": world.ids[pipeline], "imageId": image}})


async def deployable(world, pipeline: str = "shop/prod") -> list[str]:
    data = await world["dev"].ok(DEPLOYABLE, {"p": world.ids[pipeline]})
    return [i["id"] for i in data["pipeline"]["deployableImages"]]


async def refused(unchanged, client, query: str, variables: dict, code: str, case: object) -> dict:
    """One refused call: its code, and no table changed; returns the error."""
    async with unchanged():
        body = await client.execute(query, variables)
    assert body.get("errors"), f"{case!r}: expected {code}, got {body}"
    error = body["errors"][0]
    assert error["extensions"]["code"] == code, f"{case!r}: {error}"
    return error


EMAIL = "{}@example.com".format


# --- ANY ---------------------------------------------------------------------------------------


async def test_any_is_the_default_with_one_requirement_line(world, unchanged):
    """Policy kinds, R12: an existing pipeline's policy reads as ANY with every new
    field at its default; an ANY request has one line, the total, and is not deployable until
    the total is met."""
    assert await read_policy(world) == {
        "requiredApprovals": 2,
        "ttlHours": 24,
        "approversCanDeploy": False,
        "kind": "ANY",
        "countOncePerPerson": True,
        "cancelStaleRequests": False,
        "approvers": [],
        "groupQuorums": [],
        "exceptionUsers": [],
        "exceptionGroups": [],
    }
    image, request = await new_request(world)
    found = await view(world, request)
    assert found["policyKind"] == "ANY"
    assert found["stale"] is False
    assert found["requirements"] == [
        {"description": "approvals", "user": None, "group": None, "required": 2, "approved": 0, "met": False}
    ]
    assert found["progress"] == "approvals: 0 of 2"

    assert await approve(world, request, "approver1") == "PENDING"
    found = await view(world, request, "viewer")
    assert found["progress"] == "approvals: 1 of 2"
    assert found["requirements"][0]["met"] is False
    async with unchanged():
        assert await deploy_code(world, image) == "NOT_APPROVED"

    assert await approve(world, request, "approver2") == "APPROVED"
    found = await view(world, request)
    assert found["progress"] == "approvals: 2 of 2"
    assert found["requirements"][0]["met"] is True
    assert image in await deployable(world)


# --- SPECIFIC_USERS ----------------------------------------------------------------------------


async def test_specific_users_every_listed_user_must_approve(world, unchanged):
    """Policy kinds, R12: with SPECIFIC_USERS [approver1, prod_approver] and
    requiredApprovals 1, one listed user's approval meets the total but the request stays
    PENDING (not deployable) until the other listed user approves too."""
    policy = await set_policy(
        world,
        requiredApprovals=1,
        kind="SPECIFIC_USERS",
        approverIds=user_ids(world, "approver1", "prod_approver"),
    )
    assert policy["kind"] == "SPECIFIC_USERS"
    assert {a["id"] for a in policy["approvers"]} == set(user_ids(world, "approver1", "prod_approver"))
    assert policy["groupQuorums"] == []
    assert await read_policy(world) == policy

    image, request = await new_request(world)
    found = await view(world, request)
    assert found["policyKind"] == "SPECIFIC_USERS"
    assert found["requiredApprovals"] == 1
    assert lines(found) == {
        "approvals": (0, 1, False),
        EMAIL("approver1"): (0, 1, False),
        EMAIL("prod_approver"): (0, 1, False),
    }
    by_user = {r["user"]["id"]: r["description"] for r in found["requirements"][1:]}
    assert by_user == {
        world["approver1"].user_id: EMAIL("approver1"),
        world["prod_approver"].user_id: EMAIL("prod_approver"),
    }
    assert all(r["group"] is None for r in found["requirements"])

    assert await approve(world, request, "approver1") == "PENDING"
    found = await view(world, request)
    assert found["state"] == "PENDING"
    assert lines(found) == {
        "approvals": (1, 1, True),
        EMAIL("approver1"): (1, 1, True),
        EMAIL("prod_approver"): (0, 1, False),
    }
    async with unchanged():
        assert await deploy_code(world, image) == "NOT_APPROVED"
    assert image not in await deployable(world)

    assert await approve(world, request, "prod_approver") == "APPROVED"
    found = await view(world, request)
    assert all(r["met"] for r in found["requirements"])
    assert lines(found)[EMAIL("prod_approver")] == (1, 1, True)
    data = await world["dev"].ok(DEPLOY, {"i": {"pipelineId": world.ids["shop/prod"], "imageId": image}})
    assert data["deployImage"]["approvalRequest"] == {"id": request, "state": "CONSUMED"}


async def test_specific_users_others_count_to_the_total_only(world):
    """Policy kinds: approvals by eligible users who are not listed count toward the
    total only; the total reached without the listed user is still PENDING."""
    await set_policy(
        world, requiredApprovals=2, kind="SPECIFIC_USERS", approverIds=user_ids(world, "prod_approver")
    )
    _, request = await new_request(world)
    assert await approve(world, request, "approver1") == "PENDING"
    assert lines(await view(world, request)) == {
        "approvals": (1, 2, False),
        EMAIL("prod_approver"): (0, 1, False),
    }
    assert await approve(world, request, "approver2") == "PENDING"
    found = await view(world, request)
    assert found["state"] == "PENDING"
    assert lines(found) == {"approvals": (2, 2, True), EMAIL("prod_approver"): (0, 1, False)}
    assert found["progress"] == f"approvals: 2 of 2, {EMAIL('prod_approver')}: 0 of 1"

    assert await approve(world, request, "prod_approver") == "APPROVED"
    found = await view(world, request)
    assert all(r["met"] for r in found["requirements"])
    assert found["requirements"][0]["approved"] >= 2


async def test_specific_users_listed_and_total_both_needed(world):
    """Policy kinds: with one listed user and requiredApprovals 3, the listed user's
    approval is not enough; the request is APPROVED when the total reaches 3."""
    await set_policy(
        world, requiredApprovals=3, kind="SPECIFIC_USERS", approverIds=user_ids(world, "approver1")
    )
    _, request = await new_request(world)
    assert await approve(world, request, "approver1") == "PENDING"
    assert lines(await view(world, request)) == {
        "approvals": (1, 3, False),
        EMAIL("approver1"): (1, 1, True),
    }
    assert await approve(world, request, "approver2") == "PENDING"
    assert await approve(world, request, "admin") == "APPROVED"
    assert lines(await view(world, request)) == {
        "approvals": (3, 3, True),
        EMAIL("approver1"): (1, 1, True),
    }


# --- GROUP_QUORUMS -----------------------------------------------------------------------------


async def test_group_quorums_partial_and_complete(world, unchanged):
    """Policy kinds, R12: sre needs 2 of its members, security 1; approvals from
    outside the groups count to the total only; APPROVED once every quorum is met."""
    sre = await make_group(world, "sre", "approver1", "approver2")
    security = await make_group(world, "security", "approver3")
    policy = await set_policy(
        world,
        requiredApprovals=1,
        kind="GROUP_QUORUMS",
        groupQuorums=[{"groupId": sre, "minApprovals": 2}, {"groupId": security, "minApprovals": 1}],
    )
    assert policy["kind"] == "GROUP_QUORUMS"
    assert policy["approvers"] == []
    assert sorted(
        (q["group"]["name"], q["group"]["id"], q["minApprovals"]) for q in policy["groupQuorums"]
    ) == [
        ("security", security, 1),
        ("sre", sre, 2),
    ]

    image, request = await new_request(world)
    found = await view(world, request)
    assert found["policyKind"] == "GROUP_QUORUMS"
    assert lines(found) == {"approvals": (0, 1, False), "sre": (0, 2, False), "security": (0, 1, False)}
    assert {r["description"]: r["group"]["id"] for r in found["requirements"][1:]} == {
        "sre": sre,
        "security": security,
    }
    assert all(r["user"] is None for r in found["requirements"])

    assert await approve(world, request, "prod_approver") == "PENDING"  # in no group
    assert lines(await view(world, request)) == {
        "approvals": (1, 1, True),
        "sre": (0, 2, False),
        "security": (0, 1, False),
    }
    assert await approve(world, request, "approver1") == "PENDING"
    assert await approve(world, request, "approver3") == "PENDING"
    found = await view(world, request)
    assert lines(found)["sre"] == (1, 2, False)
    assert lines(found)["security"] == (1, 1, True)
    async with unchanged():
        assert await deploy_code(world, image) == "NOT_APPROVED"

    assert await approve(world, request, "approver2") == "APPROVED"
    found = await view(world, request)
    assert lines(found)["sre"] == (2, 2, True)
    assert all(r["met"] for r in found["requirements"])
    assert image in await deployable(world)


async def test_group_quorums_total_still_needed(world):
    """Policy kinds: every quorum met but the total (requiredApprovals 3) not yet
    reached: still PENDING."""
    sre = await make_group(world, "sre", "approver1")
    await set_policy(
        world, requiredApprovals=3, kind="GROUP_QUORUMS", groupQuorums=[{"groupId": sre, "minApprovals": 1}]
    )
    _, request = await new_request(world)
    assert await approve(world, request, "approver1") == "PENDING"
    assert lines(await view(world, request)) == {"approvals": (1, 3, False), "sre": (1, 1, True)}
    assert await approve(world, request, "approver2") == "PENDING"
    assert await approve(world, request, "approver3") == "APPROVED"


async def test_person_in_two_groups_counts_once_by_default(world):
    """Policy kinds, countOncePerPerson true, the default: approver1 is in sre and in
    security; their approval counts toward one group only, and the assignment that meets the
    most quorums is used whichever other member approves next."""
    sre = await make_group(world, "sre", "approver1", "approver2")
    security = await make_group(world, "security", "approver1", "approver3")
    policy = await set_policy(
        world,
        requiredApprovals=1,
        kind="GROUP_QUORUMS",
        groupQuorums=[{"groupId": sre, "minApprovals": 1}, {"groupId": security, "minApprovals": 1}],
    )
    assert policy["countOncePerPerson"] is True

    # approver1 then approver3 (security only): approver1 must count for sre
    _, first = await new_request(world)
    assert await approve(world, first, "approver1") == "PENDING"
    found = await view(world, first)
    assert found["requirements"][0]["approved"] == 1
    assert sorted([lines(found)["sre"][0], lines(found)["security"][0]]) == [0, 1]
    assert await approve(world, first, "approver3") == "APPROVED"
    found = await view(world, first)
    assert lines(found)["sre"] == (1, 1, True)
    assert lines(found)["security"] == (1, 1, True)

    # approver1 then approver2 (sre only): approver1 must count for security
    _, second = await new_request(world)
    assert await approve(world, second, "approver1") == "PENDING"
    assert await approve(world, second, "approver2") == "APPROVED"
    found = await view(world, second)
    assert lines(found)["sre"] == (1, 1, True)
    assert lines(found)["security"] == (1, 1, True)


async def test_person_in_two_groups_counts_for_each_when_count_once_is_false(world):
    """Policy kinds, countOncePerPerson false: approver1's one approval counts for
    both of their groups: alone it meets sre 1 and security 1."""
    sre = await make_group(world, "sre", "approver1", "approver2")
    security = await make_group(world, "security", "approver1", "approver3")
    policy = await set_policy(
        world,
        requiredApprovals=1,
        kind="GROUP_QUORUMS",
        countOncePerPerson=False,
        groupQuorums=[{"groupId": sre, "minApprovals": 1}, {"groupId": security, "minApprovals": 1}],
    )
    assert policy["countOncePerPerson"] is False
    _, request = await new_request(world)
    assert await approve(world, request, "approver1") == "APPROVED"
    assert lines(await view(world, request)) == {
        "approvals": (1, 1, True),
        "sre": (1, 1, True),
        "security": (1, 1, True),
    }


@pytest.mark.parametrize("count_once", [True, False])
async def test_two_groups_with_larger_quorums_under_both_settings(world, count_once):
    """Policy kinds: sre needs 2, security 1; approver1 is in both. After approver1
    and approver2 (sre) the request is APPROVED only when one person may count for both
    groups; with countOncePerPerson true approver3 (security) is still needed."""
    sre = await make_group(world, "sre", "approver1", "approver2")
    security = await make_group(world, "security", "approver1", "approver3")
    await set_policy(
        world,
        requiredApprovals=1,
        kind="GROUP_QUORUMS",
        countOncePerPerson=count_once,
        groupQuorums=[{"groupId": sre, "minApprovals": 2}, {"groupId": security, "minApprovals": 1}],
    )
    _, request = await new_request(world)
    assert await approve(world, request, "approver1") == "PENDING"
    found = await view(world, request)
    if count_once:
        assert lines(found)["sre"][0] + lines(found)["security"][0] == 1
    else:
        assert (lines(found)["sre"], lines(found)["security"]) == ((1, 2, False), (1, 1, True))

    state = await approve(world, request, "approver2")
    found = await view(world, request)
    if count_once:
        assert state == "PENDING"
        assert [r["met"] for r in found["requirements"][1:]].count(False) == 1
        assert await approve(world, request, "approver3") == "APPROVED"
        found = await view(world, request)
    else:
        assert state == "APPROVED"
    assert lines(found)["sre"] == (2, 2, True)
    assert lines(found)["security"] == (1, 1, True)


async def test_group_count_uses_membership_when_approving(world):
    """Policy kinds: a group's count is the approvals of people who were members when
    they approved: joining the group later does not count an earlier approval, leaving it later
    does not take one away."""
    sre = await make_group(world, "sre", "approver1", "approver3")
    await set_policy(
        world, requiredApprovals=1, kind="GROUP_QUORUMS", groupQuorums=[{"groupId": sre, "minApprovals": 2}]
    )
    _, request = await new_request(world)
    assert await approve(world, request, "approver2") == "PENDING"  # not a member yet
    await world["admin"].ok(ADD_MEMBER, {"g": sre, "u": world["approver2"].user_id})
    assert lines(await view(world, request))["sre"] == (0, 2, False)

    assert await approve(world, request, "approver1") == "PENDING"
    await world["admin"].ok(REMOVE_MEMBER, {"g": sre, "u": world["approver1"].user_id})
    assert lines(await view(world, request))["sre"] == (1, 2, False)

    assert await approve(world, request, "approver3") == "APPROVED"
    assert lines(await view(world, request))["sre"] == (2, 2, True)


# --- R7: the request's snapshot ----------------------------------------------------------------


async def test_r7_request_keeps_its_policy_kind_and_listed_users(world):
    """R7, policy kinds: a request made under SPECIFIC_USERS [prod_approver] keeps
    it after the pipeline changes to ANY with requiredApprovals 1: approver1's approval alone,
    which the new policy would accept, leaves it PENDING; a request made after the change
    follows the new policy."""
    await set_policy(
        world, requiredApprovals=1, kind="SPECIFIC_USERS", approverIds=user_ids(world, "prod_approver")
    )
    _, before = await new_request(world)
    policy = await set_policy(world, requiredApprovals=1, kind="ANY")
    assert policy["kind"] == "ANY"
    assert policy["approvers"] == []

    found = await view(world, before)
    assert found["policyKind"] == "SPECIFIC_USERS"
    assert lines(found) == {"approvals": (0, 1, False), EMAIL("prod_approver"): (0, 1, False)}
    assert await approve(world, before, "approver1") == "PENDING"
    assert await approve(world, before, "prod_approver") == "APPROVED"

    _, after = await new_request(world)
    found = await view(world, after)
    assert found["policyKind"] == "ANY"
    assert lines(found) == {"approvals": (0, 1, False)}
    assert await approve(world, after, "approver1") == "APPROVED"


async def test_r7_request_made_under_any_ignores_a_later_quorum(world):
    """R7, policy kinds: a request made under ANY (2) is APPROVED by approver1 and
    approver2 after the pipeline switched to GROUP_QUORUMS (security, whose only member has not
    approved)."""
    _, before = await new_request(world)
    security = await make_group(world, "security", "approver3")
    await set_policy(
        world,
        requiredApprovals=2,
        kind="GROUP_QUORUMS",
        groupQuorums=[{"groupId": security, "minApprovals": 1}],
    )
    found = await view(world, before)
    assert found["policyKind"] == "ANY"
    assert lines(found) == {"approvals": (0, 2, False)}
    assert await approve(world, before, "approver1") == "PENDING"
    assert await approve(world, before, "approver2") == "APPROVED"

    _, after = await new_request(world)
    assert await approve(world, after, "approver1") == "PENDING"
    assert await approve(world, after, "approver2") == "PENDING"
    assert lines(await view(world, after))["security"] == (0, 1, False)


async def test_r7_request_keeps_its_quorums_and_count_once_setting(world):
    """R7, policy kinds: quorums and countOncePerPerson are fixed when requested:
    after the pipeline switches to countOncePerPerson false and a larger quorum, the earlier
    request still counts approver1 once and keeps its quorum of 1."""
    sre = await make_group(world, "sre", "approver1", "approver2")
    security = await make_group(world, "security", "approver1", "approver3")
    quorums = [{"groupId": sre, "minApprovals": 1}, {"groupId": security, "minApprovals": 1}]
    await set_policy(world, requiredApprovals=1, kind="GROUP_QUORUMS", groupQuorums=quorums)
    _, before = await new_request(world)

    await set_policy(
        world,
        requiredApprovals=1,
        countOncePerPerson=False,
        groupQuorums=[{"groupId": sre, "minApprovals": 2}, {"groupId": security, "minApprovals": 1}],
    )
    assert await approve(world, before, "approver1") == "PENDING"
    found = await view(world, before)
    assert sorted(r["required"] for r in found["requirements"][1:]) == [1, 1]
    assert sorted([lines(found)["sre"][0], lines(found)["security"][0]]) == [0, 1]
    assert await approve(world, before, "approver3") == "APPROVED"

    # a request made now follows the new settings: approver1 counts for both, sre needs 2
    _, after = await new_request(world)
    assert await approve(world, after, "approver1") == "PENDING"
    assert lines(await view(world, after)) == {
        "approvals": (1, 1, True),
        "sre": (1, 2, False),
        "security": (1, 1, True),
    }
    assert await approve(world, after, "approver2") == "APPROVED"


async def test_r18_required_zero_still_cancels_live_requests_of_any_kind(world):
    """R18 with a named-approver policy: a SPECIFIC_USERS request is cancelled when the pipeline is set back
    to ANY with requiredApprovals 0."""
    await set_policy(
        world, requiredApprovals=1, kind="SPECIFIC_USERS", approverIds=user_ids(world, "prod_approver")
    )
    _, request = await new_request(world)
    await set_policy(world, requiredApprovals=0, kind="ANY")
    assert (await view(world, request))["state"] == "CANCELLED"


# --- the policy input --------------------------------------------------------------------------


async def test_omitted_fields_keep_their_values_and_kind_change_clears_lists(world):
    """Policy kinds: updateApprovalPolicy with only the old fields keeps the new ones;
    changing kind clears the other kind's list."""
    sre = await make_group(world, "sre", "approver1")
    await set_policy(
        world,
        requiredApprovals=2,
        kind="SPECIFIC_USERS",
        approverIds=user_ids(world, "approver1"),
        countOncePerPerson=False,
        cancelStaleRequests=True,
        exceptionUserIds=user_ids(world, "dev"),
    )
    policy = await set_policy(world, requiredApprovals=3, ttlHours=48)
    assert policy["requiredApprovals"] == 3 and policy["ttlHours"] == 48
    assert policy["kind"] == "SPECIFIC_USERS"
    assert policy["approvers"] == [{"id": world["approver1"].user_id}]
    assert policy["countOncePerPerson"] is False
    assert policy["cancelStaleRequests"] is True
    assert policy["exceptionUsers"] == [{"id": world["dev"].user_id}]

    policy = await set_policy(
        world, requiredApprovals=2, kind="GROUP_QUORUMS", groupQuorums=[{"groupId": sre, "minApprovals": 1}]
    )
    assert policy["kind"] == "GROUP_QUORUMS"
    assert policy["approvers"] == []
    assert [(q["group"]["id"], q["minApprovals"]) for q in policy["groupQuorums"]] == [(sre, 1)]
    assert policy["exceptionUsers"] == [{"id": world["dev"].user_id}]

    policy = await set_policy(
        world, requiredApprovals=2, kind="SPECIFIC_USERS", approverIds=user_ids(world, "approver2")
    )
    assert policy["groupQuorums"] == []
    assert policy["approvers"] == [{"id": world["approver2"].user_id}]

    policy = await set_policy(world, requiredApprovals=2, kind="ANY")
    assert (policy["kind"], policy["approvers"], policy["groupQuorums"]) == ("ANY", [], [])
    assert await read_policy(world) == policy


async def test_specific_users_may_list_super_admins_and_twenty_users(world):
    """Policy kinds: a super-admin is eligible without image-approver; up to 20 users
    may be listed."""
    policy = await set_policy(
        world, requiredApprovals=1, kind="SPECIFIC_USERS", approverIds=user_ids(world, "admin2")
    )
    assert policy["approvers"] == [{"id": world["admin2"].user_id}]
    many = []
    for n in range(14):
        data = await world["admin"].ok(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
            {"i": {"email": f"extra{n}@example.com", "name": f"extra{n}"}},
        )
        many.append(data["createUser"]["id"])
        await world["admin"].ok(
            GRANT, {"i": {"userId": many[-1], "role": "IMAGE_APPROVER", "application": "shop"}}
        )
    twenty = many + user_ids(world, "admin", "admin2", "approver1", "approver2", "approver3", "prod_approver")
    assert len(twenty) == 20
    policy = await set_policy(world, requiredApprovals=1, kind="SPECIFIC_USERS", approverIds=twenty)
    assert {a["id"] for a in policy["approvers"]} == set(twenty)


async def test_policy_refusals_are_bad_user_input_and_change_nothing(world, unchanged):
    """Policy kinds: lists that do not fit the kind, empty or oversized lists,
    ineligible listed users (extensions.ineligibleUserIds), bad quorums, and a non-ANY kind with
    requiredApprovals 0 are BAD_USER_INPUT; the policy and everything else stay as they were."""
    sre = await make_group(world, "sre", "approver1", "approver2")
    security = await make_group(world, "security", "approver3")
    eleven = [await make_group(world, f"team-{n}", "approver1") for n in range(11)]
    await world["admin"].ok(
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        {"i": {"email": "gone@example.com", "name": "gone"}},
    )
    users = await world["admin"].ok("{ users { id email } }")
    gone = next(u["id"] for u in users["users"] if u["email"] == "gone@example.com")
    await world["admin"].ok(GRANT, {"i": {"userId": gone, "role": "IMAGE_APPROVER", "application": "shop"}})
    await world["admin"].ok(DEACTIVATE, {"id": gone})
    _, request = await new_request(world)
    policy = await read_policy(world)

    q = lambda group, n: {"groupId": group, "minApprovals": n}  # noqa: E731
    cases = {
        "ANY with approverIds": {"kind": "ANY", "approverIds": user_ids(world, "approver1")},
        "ANY with groupQuorums": {"kind": "ANY", "groupQuorums": [q(sre, 1)]},
        "SPECIFIC_USERS with an empty list": {"kind": "SPECIFIC_USERS", "approverIds": []},
        "SPECIFIC_USERS with no list": {"kind": "SPECIFIC_USERS"},
        "SPECIFIC_USERS with 21 users": {
            "kind": "SPECIFIC_USERS",
            "approverIds": user_ids(world, "admin", "admin2", "approver1", "approver2", "approver3")
            + [f"User:{900000 + n}" for n in range(16)],
        },
        "SPECIFIC_USERS with requiredApprovals 0": {
            "kind": "SPECIFIC_USERS",
            "approverIds": user_ids(world, "approver1"),
            "requiredApprovals": 0,
        },
        "GROUP_QUORUMS with an empty list": {"kind": "GROUP_QUORUMS", "groupQuorums": []},
        "GROUP_QUORUMS with no list": {"kind": "GROUP_QUORUMS"},
        "GROUP_QUORUMS with 11 groups": {"kind": "GROUP_QUORUMS", "groupQuorums": [q(g, 1) for g in eleven]},
        "GROUP_QUORUMS with a group twice": {"kind": "GROUP_QUORUMS", "groupQuorums": [q(sre, 1), q(sre, 2)]},
        "GROUP_QUORUMS with an unknown group": {
            "kind": "GROUP_QUORUMS",
            "groupQuorums": [q(sre, 1), q("Group:999999", 1)],
        },
        "GROUP_QUORUMS with minApprovals 0": {"kind": "GROUP_QUORUMS", "groupQuorums": [q(sre, 0)]},
        "GROUP_QUORUMS with minApprovals 7": {"kind": "GROUP_QUORUMS", "groupQuorums": [q(sre, 7)]},
        "GROUP_QUORUMS with minApprovals -1": {
            "kind": "GROUP_QUORUMS",
            "groupQuorums": [q(security, 1), q(sre, -1)],
        },
        "GROUP_QUORUMS with requiredApprovals 0": {
            "kind": "GROUP_QUORUMS",
            "groupQuorums": [q(sre, 1)],
            "requiredApprovals": 0,
        },
    }
    for case, fields in cases.items():
        variables = {"p": world.ids["shop/prod"], "i": policy_input(**fields)}
        await refused(unchanged, world["admin"], UPDATE_POLICY, variables, "BAD_USER_INPUT", case)
        assert await read_policy(world) == policy, case

    # ineligible listed users are named in extensions.ineligibleUserIds
    ineligible = {
        "build-and-deploy only": world["dev"].user_id,
        "viewer": world["viewer"].user_id,
        "another application's approver": world["billing_approver"].user_id,
        "no role": world["nobody"].user_id,
        "deactivated": gone,
        "unknown": "User:999999",
    }
    wrong = []
    for case, user in ineligible.items():
        variables = {
            "p": world.ids["shop/prod"],
            "i": policy_input(kind="SPECIFIC_USERS", approverIds=[world["approver1"].user_id, user]),
        }
        error = await refused(unchanged, world["admin"], UPDATE_POLICY, variables, "BAD_USER_INPUT", case)
        named = error["extensions"].get("ineligibleUserIds")
        if named is None or [pk(i) for i in named] != [pk(user)]:
            wrong.append((case, error["extensions"]))
        assert await read_policy(world) == policy, case
    assert wrong == [], "extensions.ineligibleUserIds should name the ineligible user"
    assert (await view(world, request))["policyKind"] == "ANY"


async def test_r2_only_super_admins_set_policy_kinds(world, unchanged):
    """R2, policy kinds: others who see the pipeline get FORBIDDEN; the policy stays."""
    policy = await read_policy(world)
    variables = {
        "p": world.ids["shop/prod"],
        "i": policy_input(kind="SPECIFIC_USERS", approverIds=user_ids(world, "approver1")),
    }
    for who in ("dev", "approver1", "prod_approver", "viewer"):
        await refused(unchanged, world[who], UPDATE_POLICY, variables, "FORBIDDEN", who)
    assert await read_policy(world) == policy


# --- requests that could never be met ----------------------------------------------------------


async def _request_refused(world, unchanged, image: str, who: str, case: str) -> None:
    variables = {"i": {"pipelineId": world.ids["shop/prod"], "imageId": image, "approverIds": []}}
    await refused(unchanged, world[who], REQUEST, variables, "BAD_USER_INPUT", case)


async def test_request_refused_when_a_listed_user_built_the_image_or_requests_it(world, unchanged):
    """Policy kinds, R10: a listed user who built the image, or who is the requester,
    can never approve: requestApproval is BAD_USER_INPUT and creates nothing."""
    await grant(world, "approver1", "BUILD_AND_DEPLOY")
    await set_policy(
        world,
        requiredApprovals=1,
        kind="SPECIFIC_USERS",
        approverIds=user_ids(world, "approver1", "prod_approver"),
    )
    built_by_listed = await world.register_image("approver1")
    await _request_refused(world, unchanged, built_by_listed, "dev2", "listed user built the image")

    image = await world.register_image("dev")
    await _request_refused(world, unchanged, image, "approver1", "listed user is the requester")

    # the same image requested by someone else is fine
    request = await world.request_approval(image, who="dev2")
    assert (await view(world, request))["state"] == "PENDING"


async def test_request_refused_when_a_listed_user_is_no_longer_eligible(world, unchanged):
    """Policy kinds: a listed user who lost image-approver, or was deactivated,
    after the policy was saved makes requestApproval BAD_USER_INPUT."""
    await set_policy(
        world,
        requiredApprovals=1,
        kind="SPECIFIC_USERS",
        approverIds=user_ids(world, "approver1", "approver3"),
    )
    image = await world.register_image("dev")
    users = (await world["admin"].ok("{ users { email roleBindings { id } } }"))["users"]
    (binding,) = next(u["roleBindings"] for u in users if u["email"] == EMAIL("approver3"))
    await world["admin"].ok(REVOKE, {"id": binding["id"]})
    await _request_refused(world, unchanged, image, "dev2", "listed user lost the role")

    await grant(world, "approver3", "IMAGE_APPROVER")
    request = await world.request_approval(image, who="dev2")  # eligible again: fine
    await world["dev2"].ok("mutation($id: ID!) { cancelApprovalRequest(id: $id) { id } }", {"id": request})

    await world["admin"].ok(DEACTIVATE, {"id": world["approver1"].user_id})
    await _request_refused(world, unchanged, image, "dev2", "listed user deactivated")


async def test_request_refused_when_a_group_has_too_few_eligible_members(world, unchanged):
    """Policy kinds, R9: a group whose eligible members (not the builder, not the
    requester, holding image-approver or super-admin) are fewer than its quorum can never meet
    it: BAD_USER_INPUT, nothing created."""
    sre = await make_group(world, "sre", "approver1", "approver2")
    mixed = await make_group(world, "mixed", "approver3", "viewer")
    await grant(world, "approver1", "BUILD_AND_DEPLOY")
    await set_policy(
        world, requiredApprovals=1, kind="GROUP_QUORUMS", groupQuorums=[{"groupId": sre, "minApprovals": 2}]
    )
    built_by_member = await world.register_image("approver1")
    await _request_refused(world, unchanged, built_by_member, "dev2", "member built the image")
    image = await world.register_image("dev")
    await _request_refused(world, unchanged, image, "approver1", "member is the requester")
    request = await world.request_approval(image, who="dev2")
    assert (await view(world, request))["state"] == "PENDING"

    # a member with no approver role does not count as eligible
    await set_policy(
        world,
        requiredApprovals=1,
        kind="GROUP_QUORUMS",
        groupQuorums=[{"groupId": mixed, "minApprovals": 2}],
    )
    other = await world.register_image("dev")
    await _request_refused(world, unchanged, other, "dev2", "viewer member is not eligible")
    await set_policy(
        world,
        requiredApprovals=1,
        kind="GROUP_QUORUMS",
        groupQuorums=[{"groupId": mixed, "minApprovals": 1}],
    )
    request = await world.request_approval(other, who="dev2")
    assert lines(await view(world, request)) == {"approvals": (0, 1, False), "mixed": (0, 1, False)}
    total = (await world["admin"].ok(REQUESTS, {"p": world.ids["shop/prod"]}))["approvalRequests"]
    assert total["totalCount"] == 2
