"""Relay's Node: node(id) and nodes(ids) fetch any object by its id, and see exactly what
the single-object queries and lists see (R1)."""

from __future__ import annotations

import uuid

from graphql import GraphQLObjectType

from greenlight.api import build_schema
from greenlight.clock import now
from greenlight.models import ChatDelivery, EmailOutbox, User
from greenlight.resolvers.queries import NODES

from ..policies.test_access import PIPELINES, VISIBLE, populate

NODE_Q = "query($id: ID!) { node(id: $id) { __typename id } }"
NODES_Q = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }"
SINGLE_Q = """query($p: ID!, $r: ID!, $d: ID!) {
  pipeline(id: $p) { id } approvalRequest(id: $r) { id } deployment(id: $d) { id }
}"""


async def node(client, node_id: str) -> tuple[dict | None, list[str]]:
    """What node(id) answers: the object (or None), and the error codes."""
    body = await client.execute(NODE_Q, {"id": node_id})
    return (body.get("data") or {}).get("node"), [e["extensions"]["code"] for e in body.get("errors", [])]


async def nodes(client, node_ids: list[str]) -> tuple[list, dict[int, str]]:
    """What nodes(ids) answers: the list, and the error code at each failed index."""
    body = await client.execute(NODES_Q, {"ids": node_ids})
    errors = {e["path"][1]: e["extensions"]["code"] for e in body.get("errors", [])}
    for error in body.get("errors", []):
        assert error["path"][0] == "nodes", error
    return body["data"]["nodes"], errors


async def single(client, query: str, variables: dict) -> dict:
    """The single-object queries' answers: each field's object, or None with NOT_FOUND."""
    body = await client.execute(query, variables)
    for error in body.get("errors", []):
        assert error["extensions"]["code"] == "NOT_FOUND", error
    return body["data"] or {}


async def test_r1_node_sees_per_role_exactly_what_the_single_object_queries_see(world):
    """R1: for every user of the world, node(id) and nodes(ids) give each pipeline, approval
    policy, request, deployment, image, application and environment exactly when the type's
    own query or list does; the rest is null with NOT_FOUND, never FORBIDDEN."""
    objects = await populate(world)
    problems = []
    for who, pipelines in VISIBLE.items():
        client = world[who]
        expected: dict[str, bool] = {}
        for name in PIPELINES:
            variables = {
                "p": world.ids[name],
                "r": objects["requests"][name],
                "d": objects["deployments"][name],
            }
            seen = await single(client, SINGLE_Q, variables)
            assert bool(seen.get("pipeline")) is (name in pipelines), (who, name)
            expected[variables["p"]] = bool(seen.get("pipeline"))
            expected[variables["p"].replace("Pipeline", "ApprovalPolicy")] = bool(seen.get("pipeline"))
            expected[variables["r"]] = bool(seen.get("approvalRequest"))
            expected[variables["d"]] = bool(seen.get("deployment"))
        lists = await client.ok("{ applications { id } environments { id } }")
        visible_lists = {a["id"] for a in lists["applications"]} | {e["id"] for e in lists["environments"]}
        for name in ("shop", "billing", "staging", "prod"):
            expected[world.ids[name]] = world.ids[name] in visible_lists
        for app, images in objects["images"].items():
            body = await client.execute(
                "query($a: ID!) { images(applicationId: $a) { edges { node { id } } } }",
                {"a": world.ids[app]},
            )
            listed = {e["node"]["id"] for e in (body["data"] or {}).get("images", {}).get("edges", [])}
            for image in images:
                expected[image] = image in listed
        for node_id, visible in expected.items():
            found, codes = await node(client, node_id)
            wanted = (
                ({"__typename": node_id.split(":")[0], "id": node_id}, [])
                if visible
                else (None, ["NOT_FOUND"])
            )
            if (found, codes) != wanted:
                problems.append(f"{who} node({node_id}): {found} {codes}, expected {wanted}")
        listed, errors = await nodes(client, list(expected))
        for i, (node_id, visible) in enumerate(expected.items()):
            got = (listed[i]["id"] if listed[i] else None, errors.get(i))
            if got != ((node_id, None) if visible else (None, "NOT_FOUND")):
                problems.append(f"{who} nodes[{i}] ({node_id}): {got}")
    assert not problems, "\n".join(problems)


async def test_r1_node_of_a_missing_object_is_null_with_not_found(world):
    """R1: an id that names nothing answers exactly as an invisible one: null, NOT_FOUND."""
    for kind in NODES:
        found, codes = await node(world["admin"], f"{kind}:2147483647")
        assert (found, codes) == (None, ["NOT_FOUND"]), kind


async def test_node_malformed_id_is_bad_user_input(world, unchanged):
    """api.graphql BAD_USER_INPUT: an id that is no object's (unknown type, a cursor, no
    number) is refused, each in nodes(ids) at its own index while the others answer."""
    bad = [
        "nonsense",
        "",
        "Pipeline:",
        "Pipeline:x",
        "Pipeline:-1",
        "Pipeline:0",
        "Cursor:1",
        "Node:1",
        "Spaceship:1",
        "pipeline:1",
        "Pipeline:99999999999",
    ]
    async with unchanged():
        for node_id in bad:
            assert await node(world["admin"], node_id) == (None, ["BAD_USER_INPUT"]), node_id
        listed, errors = await nodes(world["admin"], [world.ids["shop/prod"], *bad, world.ids["shop"]])
    assert listed[0] == {"__typename": "Pipeline", "id": world.ids["shop/prod"]}
    assert listed[-1] == {"__typename": "Application", "id": world.ids["shop"]}
    assert listed[1:-1] == [None] * len(bad)
    assert errors == {i: "BAD_USER_INPUT" for i in range(1, len(bad) + 1)}


async def test_nodes_takes_at_most_100_ids(world):
    """nodes(ids): 100 ids answer, more is BAD_USER_INPUT (the page-size limit)."""
    listed, errors = await nodes(world["dev"], [world.ids["shop/prod"]] * 100)
    assert len(listed) == 100 and not errors
    assert await world["dev"].code(NODES_Q, {"ids": [world.ids["shop/prod"]] * 101}) == "BAD_USER_INPUT"
    listed, errors = await nodes(world["dev"], [])
    assert listed == [] and not errors


async def one_of_each(world) -> dict[str, str]:
    """An id of every kind of object, made by the admin (or for the dev)."""
    admin = world["admin"]
    image = await world.register_image("dev")
    request = await world.request_approval(image, "shop/prod")
    deployment = (await world.deploy(await world.register_image("dev"), "shop/staging"))["id"]
    group = (await admin.ok('mutation { createGroup(name: "sre") { id } }'))["createGroup"]["id"]
    group_binding = await admin.ok(
        """mutation($g: ID!) { grantGroupRole(input: {groupId: $g, role: VIEWER, application: "shop"}) { id } }""",
        {"g": group},
    )
    freeze = await admin.ok(
        """mutation($e: ID!) { createDeployFreeze(input: {name: "xmas", environmentId: $e,
             startsAt: "2030-12-24T00:00:00Z", endsAt: "2030-12-27T00:00:00Z"}) { id } }""",
        {"e": world.ids["prod"]},
    )
    me = await world["dev"].ok("{ me { id roleBindings { id } } }")
    token = await admin.ok(
        'mutation($u: ID!) { issueApiToken(input: {userId: $u, name: "ci"}) { apiToken { id } } }',
        {"u": world["dev"].user_id},
    )
    check = await world["dev"].ok(
        """mutation($i: ID!) { reportImageCheck(input: {imageId: $i, name: "tests", status: PASSED}) { id } }""",
        {"i": image},
    )
    audit = await admin.ok("{ auditEvents(first: 1) { edges { node { id } } } }")
    chat = await admin.ok(
        """mutation($p: ID!) { createChatChannel(input: {kind: SLACK, pipelineId: $p,
             url: "https://hooks.slack.com/services/T0/B0/x"}) { id } }""",
        {"p": world.ids["shop/prod"]},
    )
    dev = await User.get(email="dev@example.com")
    delivery = await ChatDelivery.create(
        channel_id=int(chat["createChatChannel"]["id"].split(":")[1]),
        audit_event_id=int(audit["auditEvents"]["edges"][0]["node"]["id"].split(":")[1]),
        event="REQUESTED",
        delivery_id=f"msg_{uuid.uuid4().hex}",
        payload={"text": "t"},
        next_attempt_at=now(),
    )
    email = await EmailOutbox.create(
        message_id=f"<{uuid.uuid4()}@test>",
        kind="approval_requested",
        recipient=dev,
        to_address=dev.email,
        subject="s",
        text_body="t",
        html_body="h",
        next_attempt_at=now(),
    )
    return {
        "ApiToken": token["issueApiToken"]["apiToken"]["id"],
        "Application": world.ids["shop"],
        "ApprovalPolicy": world.ids["shop/prod"].replace("Pipeline", "ApprovalPolicy"),
        "ApprovalRequest": request,
        "AuditEvent": audit["auditEvents"]["edges"][0]["node"]["id"],
        "ChatChannel": chat["createChatChannel"]["id"],
        "ChatDelivery": f"ChatDelivery:{delivery.id}",
        "DeployFreeze": freeze["createDeployFreeze"]["id"],
        "Deployment": deployment,
        "Environment": world.ids["prod"],
        "Group": group,
        "GroupRoleBinding": group_binding["grantGroupRole"]["id"],
        "Image": image,
        "ImageCheck": check["reportImageCheck"]["id"],
        "OutboxEmail": f"OutboxEmail:{email.id}",
        "Pipeline": world.ids["shop/prod"],
        "RoleBinding": me["me"]["roleBindings"][0]["id"],
        "User": me["me"]["id"],
    }


async def test_every_object_with_an_id_is_a_node_that_node_fetches_again(world):
    """Relay: each object type with an id implements Node, and node(id) of its id gives the
    same object back (a super-admin sees every kind)."""
    graphql_schema = build_schema()._schema
    with_id = {
        name
        for name, t in graphql_schema.type_map.items()
        if isinstance(t, GraphQLObjectType) and "id" in t.fields and not name.startswith("__")
    }
    implementing = {
        name
        for name, t in graphql_schema.type_map.items()
        if isinstance(t, GraphQLObjectType) and any(i.name == "Node" for i in t.interfaces)
    }
    assert with_id == implementing == set(NODES)
    made = await one_of_each(world)
    assert set(made) == set(NODES)
    for kind, node_id in made.items():
        assert await node(world["admin"], node_id) == ({"__typename": kind, "id": node_id}, []), kind
    listed, errors = await nodes(world["admin"], list(made.values()))
    assert [n["id"] for n in listed] == list(made.values()) and not errors


async def test_r1_node_of_users_tokens_and_bindings_only_their_own_unless_super_admin(world):
    """R1, R2: a user fetches their own user, token and role binding by id; another user's are
    NOT_FOUND (as revokeApiToken treats them); super-admins fetch anyone's. Kinds only
    super-admins read (groups, their bindings, the audit log, emails) are FORBIDDEN to
    anyone else whatever the id, as group(id), auditEvents and notificationOutbox are."""
    made = await one_of_each(world)
    own = {k: made[k] for k in ("User", "RoleBinding", "ApiToken")}
    admin_only = {k: made[k] for k in ("Group", "GroupRoleBinding", "AuditEvent", "OutboxEmail")}
    for kind, node_id in own.items():
        assert await node(world["dev"], node_id) == ({"__typename": kind, "id": node_id}, []), kind
        assert await node(world["admin2"], node_id) == ({"__typename": kind, "id": node_id}, []), kind
        for other in ("dev2", "viewer", "nobody"):
            assert await node(world[other], node_id) == (None, ["NOT_FOUND"]), (kind, other)
    for kind, node_id in admin_only.items():
        assert await node(world["admin2"], node_id) == ({"__typename": kind, "id": node_id}, []), kind
        for other in ("dev", "viewer", "nobody"):
            assert await node(world[other], node_id) == (None, ["FORBIDDEN"]), (kind, other)
            missing = f"{kind}:2147483647"
            assert await node(world[other], missing) == (None, ["FORBIDDEN"]), (kind, other)
    # a freeze on prod: seen by whoever sees prod (R1), not by billing-less nobody
    freeze = made["DeployFreeze"]
    for who in ("dev", "prod_approver", "billing_dev"):
        assert (await node(world[who], freeze))[0] == {"__typename": "DeployFreeze", "id": freeze}, who
    assert await node(world["nobody"], freeze) == (None, ["NOT_FOUND"])


async def test_approval_policy_id_follows_its_pipeline(world):
    """Apollo's cache: approvalPolicy has an id, one per pipeline, and node(id) reads it."""
    data = await world["dev"].ok(
        "query($p: ID!) { pipeline(id: $p) { approvalPolicy { id requiredApprovals } } }",
        {"p": world.ids["shop/prod"]},
    )
    policy_id = world.ids["shop/prod"].replace("Pipeline", "ApprovalPolicy")
    assert data["pipeline"]["approvalPolicy"] == {"id": policy_id, "requiredApprovals": 2}
    data = await world["dev"].ok(
        "query($id: ID!) { node(id: $id) { ... on ApprovalPolicy { id requiredApprovals ttlHours } } }",
        {"id": policy_id},
    )
    assert data["node"] == {"id": policy_id, "requiredApprovals": 2, "ttlHours": 24}
    assert await node(world["billing_dev"], policy_id) == (None, ["NOT_FOUND"])
