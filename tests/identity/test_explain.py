"""Why can't I?: canI / explainAccess answer exactly what the enforcer decides, and
say why; `greenlight policy check` prints the same; `greenlight policy validate` checks the
policy files, naming the file and the line of each error (R5)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from greenlight import db
from greenlight.app import create_app
from greenlight.config import Settings
from greenlight.models import Role
from greenlight.policies import Action, Authorizer, Scope
from greenlight.policies.authorizer import MODEL_PATH, POLICY_PATH
from greenlight.policies.validate import check

from ..conftest import ROLES as WORLD_ROLES
from ..conftest import Client

# What each role may do, from the rules (R1 to R4, R14, R15; image checks) and the deploy-agent of rollouts;
# written out here so that both the enforcer and canI are checked against an independent table.
ALLOWS = {
    "SUPER_ADMIN": {
        "VIEW",
        "REGISTER_IMAGE",
        "REPORT_IMAGE_CHECK",
        "REQUEST_APPROVAL",
        "DEPLOY",
        "APPROVE",
        "CLOSE_ANY_REQUEST",
        "ADMINISTER",
    },
    # whoever may register an application's images may report checks on them
    "BUILD_AND_DEPLOY": {"VIEW", "REGISTER_IMAGE", "REPORT_IMAGE_CHECK", "REQUEST_APPROVAL", "DEPLOY"},
    "IMAGE_APPROVER": {"VIEW", "APPROVE"},
    "VIEWER": {"VIEW"},
    "DEPLOY_AGENT": {"VIEW", "REPORT_DEPLOYMENT_STATUS"},
}
ACTIONS = [a.name for a in Action]
NEEDED = {action: {role for role, allowed in ALLOWS.items() if action in allowed} for action in ACTIONS}
SCOPES = [(app, env) for app in ("shop", "billing") for env in ("staging", "prod")]
BINDING_SCOPES = [("shop", "prod"), ("shop", "*"), ("*", "prod"), ("*", "*")]
DECISION = "allowed reason grants { role application environment group } rolesNeeded"


@dataclass(frozen=True)
class Binding:
    role: str  # GraphQL name, e.g. IMAGE_APPROVER
    application: str
    environment: str
    group: str | None = None

    def covers(self, app: str, env: str) -> bool:
        return self.application in ("*", app) and self.environment in ("*", env)


@dataclass
class Subject:
    name: str
    bindings: list[Binding] = field(default_factory=list)
    client: Client | None = None
    user_id: str | None = None


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


def part(value: str) -> str:
    return "all" if value == "*" else value


def subjects() -> list[Subject]:
    """Every role on every kind of scope, directly and through a group; super-admin both ways;
    no role; a group holding two roles on two scopes; a role held both directly and through a group."""
    out = []
    for role, (app, env), via in itertools.product(
        ["BUILD_AND_DEPLOY", "IMAGE_APPROVER", "VIEWER", "DEPLOY_AGENT"], BINDING_SCOPES, ["direct", "group"]
    ):
        name = f"{role.lower().replace('_', '-')}-{part(app)}-{part(env)}-{via}"
        group = f"g-{name}" if via == "group" else None
        out.append(Subject(name, [Binding(role, app, env, group)]))
    out.append(Subject("super-direct", [Binding("SUPER_ADMIN", "*", "*")]))
    out.append(Subject("super-group", [Binding("SUPER_ADMIN", "*", "*", "g-super")]))
    out.append(Subject("no-role"))
    out.append(
        Subject(
            "mixed",
            [
                Binding("VIEWER", "billing", "staging"),
                Binding("IMAGE_APPROVER", "*", "prod", "g-mixed"),
                Binding("BUILD_AND_DEPLOY", "shop", "staging", "g-mixed"),
            ],
        )
    )
    out.append(
        Subject(
            "both-ways",
            [Binding("IMAGE_APPROVER", "shop", "prod"), Binding("IMAGE_APPROVER", "shop", "*", "g-both")],
        )
    )
    return out


async def build(world) -> list[Subject]:
    """The subjects above as users of the world (plus the world's own users)."""
    admin = world["admin"]
    groups: dict[str, str] = {}
    granted: set[tuple] = set()
    joined: set[tuple] = set()
    everyone = subjects()
    for subject in everyone:
        data = await admin.ok(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
            {"i": {"email": f"{subject.name}@example.com", "name": subject.name}},
        )
        subject.user_id = data["createUser"]["id"]
        data = await admin.ok(
            "mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }",
            {"i": {"userId": subject.user_id, "name": "explain"}},
        )
        subject.client = Client(world.http, data["issueApiToken"]["token"], subject.user_id)
        for b in subject.bindings:
            scope = {"role": b.role, "application": b.application, "environment": b.environment}
            if b.group is None:
                await admin.ok(
                    "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }",
                    {"i": {"userId": subject.user_id, **scope}},
                )
                continue
            if b.group not in groups:
                data = await admin.ok(
                    "mutation($n: String!) { createGroup(name: $n) { id } }", {"n": b.group}
                )
                groups[b.group] = data["createGroup"]["id"]
            if (b.group, b.role, b.application, b.environment) not in granted:
                await admin.ok(
                    "mutation($i: GroupRoleBindingInput!) { grantGroupRole(input: $i) { id } }",
                    {"i": {"groupId": groups[b.group], **scope}},
                )
                granted.add((b.group, b.role, b.application, b.environment))
            if (b.group, subject.name) not in joined:
                await admin.ok(
                    "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }",
                    {"g": groups[b.group], "u": subject.user_id},
                )
                joined.add((b.group, subject.name))
    for name, client in world.clients.items():
        roles = [("SUPER_ADMIN", "*", "*")] if name == "admin" else WORLD_ROLES[name]
        everyone.append(Subject(name, [Binding(*r) for r in roles], client, client.user_id))
    return everyone


def canI_query(app: str, env: str, user_arg: bool) -> str:
    """Every action on one scope, in one query (8 aliases, within the alias limit)."""
    fields = []
    for action in ACTIONS:
        if user_arg:
            call = f'explainAccess(userId: $u, action: {action}, application: "{app}", environment: "{env}")'
        else:
            call = f'canI(action: {action}, application: "{app}", environment: "{env}")'
        fields.append(f"{action}: {call} {{ {DECISION} }}")
    header = "query($u: ID!)" if user_arg else "query"
    return f"{header} {{ {' '.join(fields)} }}"


def names_role(reason: str, role: str) -> bool:
    return role in reason or Role[role].value in reason


def check_decision(subject: Subject, app: str, env: str, action: str, decision: dict, may: bool) -> list[str]:
    """What is wrong with one answer, compared with the independent table and the enforcer."""
    where = f"{subject.name} {action} {app}/{env}"
    granting = {
        (b.role, b.application, b.environment, b.group)
        for b in subject.bindings
        if action in ALLOWS[b.role] and b.covers(app, env)
    }
    expected = bool(granting)
    problems = []
    if not (decision["allowed"] == expected == may):
        problems.append(f"{where}: canI {decision['allowed']}, enforcer {may}, expected {expected}")
        return problems
    if set(decision["rolesNeeded"]) != NEEDED[action]:
        problems.append(f"{where}: rolesNeeded {decision['rolesNeeded']}, expected {NEEDED[action]}")
    reason = decision["reason"]
    if expected:
        grants = {(g["role"], g["application"], g["environment"], g["group"]) for g in decision["grants"]}
        if grants != granting or len(decision["grants"]) != len(granting):
            problems.append(f"{where}: grants {decision['grants']}, expected {granting}")
        for role, b_app, b_env, group in granting:
            if not names_role(reason, role) or f"{b_app}/{b_env}" not in reason:
                problems.append(f"{where}: reason {reason!r} does not name {role} on {b_app}/{b_env}")
            if group and group not in reason:
                problems.append(f"{where}: reason {reason!r} does not name group {group}")
    else:
        if decision["grants"]:
            problems.append(f"{where}: refused with grants {decision['grants']}")
        missing = [role for role in NEEDED[action] if not names_role(reason, role)]
        if missing:
            problems.append(f"{where}: reason {reason!r} does not name the needed {missing}")
    return problems


async def test_can_i_matches_the_enforcer_for_every_role_scope_and_action(world):
    """R1 to R5, exhaustively: for every subject (each role on exact, app/*, */env and */* scopes,
    directly and through a group; super-admin; no role; mixtures) x every application/environment
    x every action, canI equals Authorizer.may and the table of RULES.md; the reason names the
    granting bindings (and group) when allowed and the roles needed when refused; explainAccess
    by a super-admin answers the same about that user."""
    everyone = await build(world)
    authorizer = Authorizer()
    await authorizer.refresh()
    problems: list[str] = []
    checked = 0
    for subject in everyone:
        for app, env in SCOPES:
            mine = await subject.client.ok(canI_query(app, env, False))
            theirs = await world["admin"].ok(canI_query(app, env, True), {"u": subject.user_id})
            for action in ACTIONS:
                may = authorizer.may(pk(subject.user_id), Action[action], Scope(app, env))
                problems += check_decision(subject, app, env, action, mine[action], may)
                if theirs[action] != mine[action]:
                    problems.append(
                        f"{subject.name} {action} {app}/{env}: explainAccess {theirs[action]} != canI {mine[action]}"
                    )
                checked += 1
    assert checked == len(everyone) * len(SCOPES) * len(ACTIONS) >= 45 * 32
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])


async def test_explain_access_is_for_super_admins(world, unchanged):
    """explainAccess about another user is FORBIDDEN to non-super-admins; about no such user
    NOT_FOUND; a wrong-kind id or a malformed scope name BAD_USER_INPUT."""
    query = """query($u: ID!, $a: String!) {
      explainAccess(userId: $u, action: APPROVE, application: $a, environment: "prod") { allowed reason } }"""
    async with unchanged():
        for who in ("dev", "approver1", "viewer", "nobody"):
            code = await world[who].code(query, {"u": world["approver2"].user_id, "a": "shop"})
            assert code == "FORBIDDEN", who
        data = await world["admin2"].ok(query, {"u": world["approver2"].user_id, "a": "shop"})
        assert data["explainAccess"]["allowed"] is True
        data = await world["admin2"].ok(query, {"u": world["billing_dev"].user_id, "a": "shop"})
        assert data["explainAccess"]["allowed"] is False
        assert await world["admin"].code(query, {"u": "User:999999", "a": "shop"}) == "NOT_FOUND"
        assert await world["admin"].code(query, {"u": world.ids["shop"], "a": "shop"}) == "BAD_USER_INPUT"
        assert (
            await world["admin"].code(query, {"u": world["dev"].user_id, "a": "Not A Name"})
            == "BAD_USER_INPUT"
        )
        code = await world["dev"].code(
            '{ canI(action: VIEW, application: "Bad!", environment: "prod") { allowed } }'
        )
        assert code == "BAD_USER_INPUT"


async def test_explain_access_about_a_deactivated_user(world):
    """A deactivated user may do nothing, and the reason says so; the enforcer agrees."""
    await world["admin"].ok(
        "mutation($id: ID!) { deactivateUser(id: $id) { id } }", {"id": world["dev"].user_id}
    )
    data = await world["admin"].ok(
        """query($u: ID!) { explainAccess(userId: $u, action: DEPLOY, application: "shop", environment: "prod") {
             allowed reason grants { role } } }""",
        {"u": world["dev"].user_id},
    )
    assert data["explainAccess"]["allowed"] is False
    assert data["explainAccess"]["grants"] == []
    assert "deactivated" in data["explainAccess"]["reason"]
    authorizer = Authorizer()
    await authorizer.refresh()
    assert not authorizer.may(pk(world["dev"].user_id), Action.DEPLOY, Scope("shop", "prod"))


# --- the CLI ---------------------------------------------------------------------------------------


def greenlight(*args: str, cwd: Path, database_url: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    env["GREENLIGHT_ENV_FILE"] = str(cwd / "no.env")
    if database_url:
        env["GREENLIGHT_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "greenlight", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_policy_check_prints_allowed_or_denied_like_can_i(tmp_path):
    """`greenlight policy check EMAIL ACTION APP ENV` on a database made by `greenlight bootstrap`:
    ALLOWED (exit 0) or DENIED (exit 1) with the same reason canI gives that user."""
    url = f"sqlite://{tmp_path / 'greenlight.sqlite3'}"
    done = greenlight("bootstrap", "root@example.com", cwd=tmp_path, database_url=url)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]

    # a builder and a group-made approver, through the API with the bootstrap token
    await db.connect(url)
    try:
        settings = Settings(database_url=url, background_jobs=False, mutations_per_minute=0)
        app = create_app(settings, manage_database=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            root = Client(http, token)
            for name in ("shop", "billing"):
                await root.ok("mutation($n: String!) { createApplication(name: $n) { id } }", {"n": name})
            for name in ("staging", "prod"):
                await root.ok("mutation($n: String!) { createEnvironment(name: $n) { id } }", {"n": name})
            users = {}
            for name in ("builder", "approver"):
                data = await root.ok(
                    "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                    {"i": {"email": f"{name}@example.com", "name": name}},
                )
                users[name] = data["createUser"]["id"]
            await root.ok(
                """mutation($u: ID!) { grantRole(input: {userId: $u, role: BUILD_AND_DEPLOY, application: "shop"}) {
                     id } }""",
                {"u": users["builder"]},
            )
            group = (await root.ok('mutation { createGroup(name: "prod-approvers") { id } }'))["createGroup"][
                "id"
            ]
            await root.ok(
                """mutation($g: ID!) { grantGroupRole(input: {groupId: $g, role: IMAGE_APPROVER,
                     environment: "prod"}) { id } }""",
                {"g": group},
            )
            await root.ok(
                "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }",
                {"g": group, "u": users["approver"]},
            )
            cases = [
                ("root", "ADMINISTER", "billing", "staging", True),
                ("root", "REPORT_DEPLOYMENT_STATUS", "shop", "prod", False),
                ("builder", "REGISTER_IMAGE", "shop", "staging", True),
                ("builder", "APPROVE", "shop", "prod", False),
                ("builder", "DEPLOY", "billing", "prod", False),
                ("approver", "APPROVE", "billing", "prod", True),
                ("approver", "APPROVE", "shop", "staging", False),
            ]
            expected = {}
            for who, action, a, e, allowed in cases:
                explain = f"""query($u: ID!) {{ explainAccess(userId: $u, action: {action}, application: "{a}",
                  environment: "{e}") {{ allowed reason }} }}"""
                uid = users.get(who) or (await root.ok("{ me { id } }"))["me"]["id"]
                decision = (await root.ok(explain, {"u": uid}))["explainAccess"]
                assert decision["allowed"] is allowed, (who, action, a, e, decision)
                expected[(who, action, a, e)] = decision["reason"]
    finally:
        await db.close()

    for who, action, a, e, allowed in cases:
        done = greenlight(
            "policy", "check", f"{who}@example.com", action, a, e, cwd=tmp_path, database_url=url
        )
        word = "ALLOWED" if allowed else "DENIED"
        assert done.returncode == (0 if allowed else 1), (who, action, done.stdout, done.stderr)
        assert done.stdout.strip() == f"{word}: {expected[(who, action, a, e)]}", (who, action)
    # the reasons name where access comes from, or what is missing
    assert "prod-approvers" in expected[("approver", "APPROVE", "billing", "prod")]
    assert "image-approver" in expected[("approver", "APPROVE", "shop", "staging")]
    # lowercase action names work too; no such user is DENIED; an unknown action is a usage error
    done = greenlight(
        "policy", "check", "builder@example.com", "deploy", "shop", "prod", cwd=tmp_path, database_url=url
    )
    assert done.returncode == 0 and done.stdout.startswith("ALLOWED: ")
    done = greenlight(
        "policy", "check", "ghost@example.com", "VIEW", "shop", "prod", cwd=tmp_path, database_url=url
    )
    assert done.returncode == 1 and done.stdout.startswith("DENIED: ")
    done = greenlight(
        "policy", "check", "root@example.com", "FLY", "shop", "prod", cwd=tmp_path, database_url=url
    )
    assert done.returncode not in (0, 1)
    assert "FLY" in done.stderr


def test_cli_policy_validate_passes_on_the_packaged_files(tmp_path):
    done = greenlight("policy", "validate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert check() == []


def numbered(path: Path, needle: str) -> int:
    """The 1-based number of the line of `path` that is exactly `needle`."""
    return [line.strip() for line in path.read_text().splitlines()].index(needle) + 1


def test_cli_policy_validate_names_the_file_and_line_of_each_error(tmp_path):
    """R5, policy files as code: broken copies given with --model / --policy exit 1 with
    messages naming the file and the line (or the missing section)."""
    policy = tmp_path / "broken-policy.csv"
    text = POLICY_PATH.read_text().replace("p, image-approver, approve", "p, image-approver, aprove")
    text = text.replace("p, viewer, view", "p, veiwer, view")
    policy.write_text(text)
    bad_action = numbered(policy, "p, image-approver, aprove")
    bad_role = numbered(policy, "p, veiwer, view")
    done = greenlight("policy", "validate", "--policy", str(policy), cwd=tmp_path)
    assert done.returncode == 1
    assert f"broken-policy.csv line {bad_action}" in done.stderr and "aprove" in done.stderr
    assert f"broken-policy.csv line {bad_role}" in done.stderr and "veiwer" in done.stderr
    assert "model.conf" not in done.stderr  # the packaged model is fine

    model = tmp_path / "broken-model.conf"
    lines = MODEL_PATH.read_text().splitlines()
    start = lines.index("[matchers]")
    model.write_text("\n".join(lines[:start]) + "\n")  # no [matchers] section
    done = greenlight("policy", "validate", "--model", str(model), cwd=tmp_path)
    assert done.returncode == 1
    assert "broken-model.conf" in done.stderr and "matchers" in done.stderr

    shape = tmp_path / "shape-model.conf"
    shape.write_text(MODEL_PATH.read_text().replace("r = sub, app, env, act", "r = sub, act"))
    done = greenlight("policy", "validate", "--model", str(shape), "--policy", str(policy), cwd=tmp_path)
    assert done.returncode == 1
    assert f"shape-model.conf line {numbered(shape, 'r = sub, act')}" in done.stderr
    assert f"broken-policy.csv line {bad_action}" in done.stderr

    # the same checks from Python
    errors = check(shape, policy)
    assert any(f"line {bad_action}" in e and "aprove" in e for e in errors)
    assert any(e.startswith("shape-model.conf line") for e in errors)
    assert check(MODEL_PATH, POLICY_PATH) == []
