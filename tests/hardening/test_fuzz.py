"""Fuzzing the GraphQL API: hypothesis-graphql generates queries and mutations from
the exported schema (schema.graphql) and sends them to the ASGI app with the token of every
role of the world, and anonymously.

Whatever arrives, Greenlight refuses cleanly: no 5xx, no INTERNAL, no traceback, only the
contract's codes; anonymous callers get nothing but UNAUTHENTICATED (or a refusal of the
document itself); and the database stays sound (tests/integrity.py) after every example.

Arguments are not only random: IDs are drawn from the world's ids and the rows the database
holds (refreshed before each example), strings from the world's names, scope wildcards and
valid digests and emails, so that generated mutations really reach the workflow."""

from __future__ import annotations

import string
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import graphql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import mutations, nodes, queries

from greenlight.models import (
    ApiToken,
    Application,
    ApprovalRequest,
    AuditEvent,
    Deployment,
    EmailOutbox,
    Environment,
    Group,
    Image,
    Pipeline,
    Role,
    RoleBinding,
    User,
)
from tests.conftest import ROLES as WORLD_ROLES
from tests.integrity import problems

SCHEMA = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
ROLES = ("admin", "dev", "approver1", "viewer", "billing_dev", "nobody", None)  # None: anonymous
# Every code a client may see: the contract's, the refusals of the rules added since
# (freezes, stale images, checks, promotion, archiving, limited tokens), and the faults.
CODES = {
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "TOKEN_SCOPE",
    "APPLICATION_ARCHIVED",
    "ENVIRONMENT_ARCHIVED",
    "DEPLOY_FROZEN",
    "STALE_IMAGE",
    "CHECKS_NOT_PASSED",
    "PROMOTION_REQUIRED",
    "NOT_FOUND",
    "BAD_USER_INPUT",
    "SELF_APPROVAL",
    "APPROVER_CANNOT_DEPLOY",
    "NOT_APPROVED",
    "INVALID_STATE",
    "CONFLICT",
    "QUERY_TOO_COMPLEX",
    "UNAVAILABLE",
    "RATE_LIMITED",
    "OUTCOME_UNKNOWN",
}
# Codes only the workflow gives (after the arguments were understood).
WORKFLOW_CODES = CODES - {"UNAUTHENTICATED", "BAD_USER_INPUT", "QUERY_TOO_COMPLEX"}
KINDS = (
    "Application",
    "Environment",
    "Pipeline",
    "Image",
    "ApprovalRequest",
    "Deployment",
    "User",
    "ApiToken",
    "RoleBinding",
    "GroupRoleBinding",
    "Group",
    "OutboxEmail",
    "AuditEvent",
    "Cursor",
)
ROWS = (
    (Application, "Application"),
    (Environment, "Environment"),
    (Pipeline, "Pipeline"),
    (Image, "Image"),
    (ApprovalRequest, "ApprovalRequest"),
    (Deployment, "Deployment"),
    (User, "User"),
    (ApiToken, "ApiToken"),
    (RoleBinding, "RoleBinding"),
    (Group, "Group"),
    (EmailOutbox, "OutboxEmail"),
    (AuditEvent, "AuditEvent"),
)

# A generated ID argument is, most of the time, a placeholder that the test replaces with the
# id of a row that exists, of the kind the argument takes (see `with_real_ids`).
PLACEHOLDER = "\x00real-id:"
HEX = st.text("0123456789abcdef", min_size=64, max_size=64)
NAMES = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=12)
REAL_IDS = st.integers(0, 10**4).map(f"{PLACEHOLDER}{{}}".format)
ID_VALUES = st.one_of(
    st.builds("{}:{}".format, st.sampled_from(KINDS), st.integers(-2, 40)),
    st.text(max_size=24),
    st.sampled_from(["", ":", "Image:", "Image:0", "Image:99999999999999999999", "Image:1:2", "Image:-1"]),
)
STRING_VALUES = st.one_of(
    st.sampled_from(["shop", "billing", "staging", "prod", "*", "", " ", "Shop", "a" * 64]),
    NAMES,
    HEX.map("sha256:{}".format),
    NAMES.map("{}@example.com".format),
    st.builds("registry.example.com/acme/{}".format, NAMES),
    st.builds("Cursor:{}".format, st.integers(0, 60)),
    ID_VALUES,
    st.text(max_size=40),
)
DATETIMES = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(datetime.isoformat)
INTS = st.one_of(st.integers(-2, 10), st.integers(-(2**31), 2**31 - 1))
CUSTOM = {
    # Mostly the ids of rows that exist, so that mutations reach the workflow.
    "ID": st.one_of(
        *[REAL_IDS.map(nodes.String)] * 8,
        ID_VALUES.map(nodes.String),
        st.integers(-10, 10**6).map(nodes.Int),
    ),
    "String": STRING_VALUES.map(nodes.String),
    "Int": INTS.map(nodes.Int),
    "DateTime": st.one_of(DATETIMES, st.text(max_size=30)).map(nodes.String),
    "JSON": st.text(max_size=30).map(nodes.String),
}
GRAPHQL_SCHEMA = graphql.build_schema(SCHEMA)
MUTATION_FIELDS = tuple(GRAPHQL_SCHEMA.mutation_type.fields)


def _keep(document: graphql.DocumentNode) -> graphql.DocumentNode:
    return document


QUERY_FIELDS = tuple(GRAPHQL_SCHEMA.query_type.fields)
QUERIES = st.one_of(
    queries(SCHEMA, fields=QUERY_FIELDS, custom_scalars=CUSTOM, print_ast=_keep),
    # One field per document too: one bad argument refuses a whole query.
    *(queries(SCHEMA, fields=[f], custom_scalars=CUSTOM, print_ast=_keep) for f in QUERY_FIELDS),
)
MUTATIONS = st.one_of(
    mutations(SCHEMA, custom_scalars=CUSTOM, print_ast=_keep),
    # One mutation per document too: a failed non-null root field nulls the whole data.
    *(mutations(SCHEMA, fields=[f], custom_scalars=CUSTOM, print_ast=_keep) for f in MUTATION_FIELDS),
)
# Half queries, half mutations (one_of would flatten both into equal branches).
OPERATIONS = st.sampled_from([QUERIES, MUTATIONS]).flatmap(_keep)
EXAMPLES = 600
# The kind of id an argument or input field takes, by its name; `id` takes the kind its field
# returns (approveRequest(id) an ApprovalRequest, revokeRole(id) a RoleBinding, ...).
ARGUMENT_KINDS = {
    "pipelineId": "Pipeline",
    "imageId": "Image",
    "userId": "User",
    "actorId": "User",
    "approverIds": "User",
    "applicationId": "Application",
    "environmentId": "Environment",
    "deploymentId": "Deployment",
    "groupId": "Group",
}


async def real_ids(world) -> dict[str, list[str]]:
    """The ids of every row of every kind, the world's named ones first."""
    found: dict[str, list[str]] = {}
    for value in world.ids.values():
        found.setdefault(value.partition(":")[0], []).append(value)
    for model, kind in ROWS:
        rows = await model.all().order_by("id").values_list("id", flat=True)
        found[kind] = list(dict.fromkeys(found.get(kind, []) + [f"{kind}:{pk}" for pk in rows]))
    found["GroupRoleBinding"] = [
        f"GroupRoleBinding:{pk}"
        for pk in await RoleBinding.filter(group_id__isnull=False).values_list("id", flat=True)
    ]
    return found


def with_real_ids(document: graphql.DocumentNode, ids: dict[str, list[str]]) -> str:
    """The document printed, its id placeholders replaced by ids of the right kind."""

    def value(node: graphql.ValueNode, name: str, returns: str) -> graphql.ValueNode:
        if isinstance(node, graphql.StringValueNode) and node.value.startswith(PLACEHOLDER):
            kind = returns if name == "id" else ARGUMENT_KINDS.get(name, returns)
            n = int(node.value[len(PLACEHOLDER) :])
            choices = ids.get(kind) or [f"{kind}:{n + 1}"]
            return replace(node, value=choices[n % len(choices)])
        if isinstance(node, graphql.ListValueNode):
            return replace(node, values=tuple(value(v, name, returns) for v in node.values))
        if isinstance(node, graphql.ObjectValueNode):
            fields = tuple(replace(f, value=value(f.value, f.name.value, returns)) for f in node.fields)
            return replace(node, fields=fields)
        return node

    def selections(selection_set, parent: graphql.GraphQLObjectType):
        if selection_set is None:
            return None
        fields = []
        for field in selection_set.selections:
            returns = graphql.get_named_type(parent.fields[field.name.value].type)
            arguments = tuple(
                replace(a, value=value(a.value, a.name.value, returns.name)) for a in field.arguments
            )
            if isinstance(returns, graphql.GraphQLObjectType):
                field = replace(field, selection_set=selections(field.selection_set, returns))
            fields.append(replace(field, arguments=arguments))
        return replace(selection_set, selections=tuple(fields))

    definitions = tuple(
        replace(d, selection_set=selections(d.selection_set, GRAPHQL_SCHEMA.get_root_type(d.operation)))
        for d in document.definitions
    )
    return graphql.print_ast(replace(document, definitions=definitions))


WORLD_BINDINGS = [("admin", "SUPER_ADMIN", "*", "*")] + [
    (name, role, app, env) for name, bindings in WORLD_ROLES.items() for role, app, env in bindings
]
GRANT = "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }"


RENAME = {
    Application: "mutation($i: UpdateApplicationInput!) { updateApplication(input: $i) { id } }",
    Environment: "mutation($i: UpdateEnvironmentInput!) { updateEnvironment(input: $i) { id } }",
}


async def _restore_names(world, admin) -> None:
    """Fuzzed mutations may rename or archive the world's applications and environments:
    each gets its name back (through the API, so the role bindings follow it) and is
    restored; a name taken meanwhile by another of them is freed first."""
    for model, names in ((Application, ("shop", "billing")), (Environment, ("staging", "prod"))):
        rows = {name: await model.get(id=int(world.ids[name].split(":")[1])) for name in names}
        changed = {name: row for name, row in rows.items() if row.name != name or row.archived_at}
        for name, row in changed.items():
            if row.name != name:
                await admin.ok(RENAME[model], {"i": {"id": world.ids[name], "name": f"fuzz-{row.id}"}})
        for name in changed:
            await admin.ok(RENAME[model], {"i": {"id": world.ids[name], "name": name, "archived": False}})


async def restore_world(world) -> None:
    """Fuzzed mutations may deactivate the world's users, revoke their tokens or their roles;
    give them back so that later examples still act as every role (none of this is what the
    integrity check is about). Roles come back through grantRole, as a remaining super-admin
    (Greenlight keeps one)."""
    await User.filter(is_active=False).update(is_active=True)
    await ApiToken.filter(revoked_at__isnull=False).update(revoked_at=None)
    held = set(
        await RoleBinding.filter(user_id__isnull=False).values_list(
            "user_id", "role", "application", "environment"
        )
    )
    missing = [
        (name, role, app, env)
        for name, role, app, env in WORLD_BINDINGS
        if (int(world[name].user_id.split(":")[1]), Role[role], app, env) not in held
    ]
    gone = {name for name, role, *_ in missing if role == "SUPER_ADMIN"}
    admin = world["admin2" if "admin" in gone else "admin"]
    await _restore_names(world, admin)
    if missing:
        for name, role, app, env in missing:
            i = {"userId": world[name].user_id, "role": role, "application": app, "environment": env}
            await admin.ok(GRANT, {"i": i})


@pytest.fixture
async def seeded(world):
    """The world with something in every state: images, a partial and a full approval on
    shop/prod, an approval on billing/prod, a pending one there, a deployment on shop/staging."""
    for who in ("dev", "dev2"):
        await world.register_image(who)
    await world.register_image("billing_dev", "billing")
    partial = await world.register_image("dev")
    request = await world.request_approval(partial, "shop/prod", who="dev2")
    await world.approve(request, "approver3")
    await world.approved_image("shop/prod")
    await world.approved_image("billing/prod")
    pending = await world.register_image("admin", "billing")
    await world.request_approval(pending, "billing/prod", who="billing_dev")
    await world.deploy(await world.register_image("dev"), "shop/staging")
    outcomes: Counter = Counter()
    yield world, outcomes
    # The fuzzing is worth something only if mutations get past argument checking into the
    # workflow (succeeding, or refused by a rule); with real ids most of them do.
    assert outcomes["mutation reached the workflow"] >= EXAMPLES // 20, outcomes


def _check(role: str | None, operation: str, response) -> dict:
    where = f"as {role or 'anonymous'}:\n{operation}\n-> {response.status_code} {response.text[:2000]}"
    assert response.status_code < 500, where
    assert "Traceback" not in response.text and 'File "' not in response.text, where
    body = response.json()
    assert isinstance(body, dict), where
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code != "INTERNAL", where
        assert code in CODES, where
        if role is None:
            # No operation runs for an anonymous caller; only a broken document is refused
            # before authentication.
            assert code in ("UNAUTHENTICATED", "BAD_USER_INPUT", "QUERY_TOO_COMPLEX"), where
    if role is None:
        assert not body.get("data"), where
    return body


def _subclasses(cls: type) -> set[type]:
    return {cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))}


def test_the_fuzz_knows_every_refusal_a_client_may_see():
    """Every refusal of greenlight.errors is a code the fuzzed answers may carry, so a new
    rule's code fails here at once rather than in a random example later."""
    from greenlight import errors

    refusals = {cls.code for cls in _subclasses(errors.GreenlightError)} - {"INTERNAL"}
    assert refusals <= CODES, refusals - CODES


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=OPERATIONS, role=st.sampled_from(ROLES))
async def test_fuzzed_operations_are_refused_cleanly_and_keep_the_database_sound(
    seeded, document: graphql.DocumentNode, role: str | None
):
    """No leaks, never crash over R1 to R25: every generated document, as every
    role, gets a clean answer, and the database passes the integrity check afterwards."""
    world, outcomes = seeded
    operation = with_real_ids(document, await real_ids(world))
    headers = {"Authorization": f"Bearer {world[role].token}"} if role else {}
    response = await world.http.post("/graphql", json={"query": operation}, headers=headers)
    body = _check(role, operation, response)
    codes = {error["extensions"]["code"] for error in body.get("errors") or []}
    done = any(value is not None for value in (body.get("data") or {}).values())
    if operation.startswith("mutation") and role and (done or codes & WORKFLOW_CODES):
        outcomes["mutation reached the workflow"] += 1
    found = await problems()
    assert not found, f"as {role or 'anonymous'}:\n{operation}\n-> {response.text[:2000]}\n{found}"
    await restore_world(world)


PIPELINE_FOR = "query($a: String!, $e: String!) { pipelineFor(application: $a, environment: $e) { id } }"


@pytest.mark.parametrize("application, environment", [("shop", "p" * 64), ("s" * 64, "prod")])
async def test_pipeline_for_names_too_long_are_bad_input(world, application, environment):
    """Found by the fuzzing above (INTERNAL before reads.pipeline_for validated its names): a
    name longer than any name can be is BAD_USER_INPUT."""
    body = await world["admin"].execute(PIPELINE_FOR, {"a": application, "e": environment})
    codes = {e["extensions"]["code"] for e in body.get("errors") or []}
    assert codes == {"BAD_USER_INPUT"}, body
