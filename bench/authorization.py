"""Authorization at scale: load time, decision time, and how soon a change takes effect.

    python -m bench.authorization [--bindings 100000] [--users 10000] [--json]

Seeds a fresh SQLite database (Greenlight's migrations, then bulk inserts) with BINDINGS
role bindings (1 % of them held by groups, whose members are about one user in two) for
USERS users on 1,000 applications x 20 environments, and measures:

- load: a new process (`python -c`, importing Greenlight) until its Authorizer holds every
  binding; and a new Authorizer in this process (what a process does on its first request);
- decisions: Authorizer.may on a mix of allowed and refused requests on exact scopes,
  covered by exact and wildcard bindings, and on "*/*" (the super-admin check): Casbin's
  own evaluation (a first request for that user, scope and action) and the cached answer
  (every later one), median and 99th percentile;
- changes: from the start of a grant (or revocation, membership, group grant,
  deactivation) made through one Authorizer's workflow call until a second Authorizer
  sharing the database, standing for another process, answers the next request
  accordingly: the writer's transaction, then the reader's refresh and decision.

`run()` returns the figures as a dict; `python -m bench.authorization` prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
T0 = datetime(2025, 1, 1, tzinfo=UTC)

ROLES = ("viewer", "build-and-deploy", "image-approver", "deploy-agent")
ROLE_WEIGHTS = (40, 25, 30, 5)
ACTIONS_OF = {
    "viewer": ("view",),
    "build-and-deploy": ("view", "register_image", "request_approval", "deploy"),
    "image-approver": ("view", "approve"),
    "deploy-agent": ("view", "report_deployment_status"),
    "super-admin": ("view", "approve", "deploy", "administer"),
}
ALL_ACTIONS = ("view", "register_image", "request_approval", "deploy", "approve", "administer")
ADMIN = 1  # user 1 is the super-admin that makes the changes
SUPER_ADMINS = 5  # users 1 to 5 are super-admins


# --- the world ---------------------------------------------------------------------------------


def _generate(bindings: int, users: int, applications: int, environments: int, groups: int, seed: int):
    """Rows per table (as column -> values), deterministic for the sizes and seed."""
    rng = random.Random(seed)
    apps = [f"app-{i}" for i in range(applications)]
    envs = [f"env-{i}" for i in range(environments)]

    def scope() -> tuple[str, str]:
        kind = rng.random()
        if kind < 0.60:
            return rng.choice(apps), rng.choice(envs)
        if kind < 0.90:
            return rng.choice(apps), "*"
        if kind < 0.999:
            return "*", rng.choice(envs)
        return "*", "*"

    group_bindings = bindings // 100 if groups else 0
    role_rows: list[tuple] = []
    seen: set[tuple] = set()
    for user in range(1, SUPER_ADMINS + 1):
        seen.add(("user", user, "super-admin", "*", "*"))
        role_rows.append((user, None, "super-admin", "*", "*"))
    while len(role_rows) < bindings - group_bindings:
        user = rng.randint(SUPER_ADMINS + 1, users)
        role = rng.choices(ROLES, ROLE_WEIGHTS)[0]
        app, env = scope()
        key = ("user", user, role, app, env)
        if key not in seen:
            seen.add(key)
            role_rows.append((user, None, role, app, env))
    while len(role_rows) < bindings:
        group = rng.randint(1, groups)
        role = rng.choices(ROLES, ROLE_WEIGHTS)[0]
        app, env = scope()
        key = ("group", group, role, app, env)
        if key not in seen:
            seen.add(key)
            role_rows.append((None, group, role, app, env))
    memberships = set()
    if groups:
        for user in range(SUPER_ADMINS + 1, users + 1):
            for _ in range(rng.choice((0, 0, 1, 1, 2))):
                memberships.add((rng.randint(1, groups), user))
    return {
        "users": (
            ("id", "email", "name", "is_active", "created_at"),
            [(u, f"user{u}@bench.example", f"user {u}", True, T0) for u in range(1, users + 1)],
        ),
        "applications": (("id", "name", "created_at"), [(i + 1, a, T0) for i, a in enumerate(apps)]),
        "environments": (("id", "name", "created_at"), [(i + 1, e, T0) for i, e in enumerate(envs)]),
        "groups": (("id", "name", "created_at"), [(g, f"team-{g}", T0) for g in range(1, groups + 1)]),
        "group_members": (
            ("group_id", "user_id", "created_at"),
            [(g, u, T0) for g, u in sorted(memberships)],
        ),
        "role_bindings": (
            ("user_id", "group_id", "role", "application", "environment", "created_at"),
            [(*row, T0) for row in role_rows],
        ),
    }


def _complete(table: str, columns: tuple[str, ...], rows: list[tuple]) -> tuple[list[str], list[tuple]]:
    """Adds the columns later migrations may have given the table, with their defaults."""
    from tortoise import Tortoise

    model = next(m for m in Tortoise.apps["models"].values() if m._meta.db_table == table)
    extra, values = [], []
    for name, column in model._meta.fields_db_projection.items():
        if column in columns or name == "id":
            continue
        field = model._meta.fields_map[name]
        if getattr(field, "auto_now_add", False) or getattr(field, "auto_now", False):
            value = T0
        elif field.default is not None:
            value = field.default() if callable(field.default) else field.default
        elif field.null:
            value = None
        else:
            raise RuntimeError(f"bench: {table}.{column} needs a value; update bench/authorization.py")
        extra.append(column)
        values.append(value.value if isinstance(value, Enum) else value)
    return [*columns, *extra], [row + tuple(values) for row in rows] if extra else rows


async def seed_database(path: Path, **sizes) -> dict:
    """A fresh SQLite database at `path`, migrated and filled; returns its rows per table."""
    import tortoise.backends.sqlite.executor  # noqa: F401  (SQLite adapters for datetimes)

    from greenlight import db

    path.unlink(missing_ok=True)
    await db.migrate(f"sqlite://{path}")
    await db.connect("sqlite://:memory:")  # the models' metadata, for _complete
    world = _generate(**sizes)
    try:
        tables = {name: _complete(name, columns, rows) for name, (columns, rows) in world.items()}
    finally:
        await db.close()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN")
        for name, (columns, rows) in tables.items():
            marks = ", ".join("?" * len(columns))
            quoted = ", ".join(f'"{column}"' for column in columns)  # "commit" is a keyword
            connection.executemany(f'INSERT INTO "{name}" ({quoted}) VALUES ({marks})', rows)
        connection.execute("COMMIT")
    finally:
        connection.close()
    return world


# --- measuring ---------------------------------------------------------------------------------


def _summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "n": len(ordered),
        "median_us": statistics.median(ordered) * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
    }


LOAD_SCRIPT = """
import asyncio, sys, time
started = float(sys.argv[2])
from greenlight import db
from greenlight.policies import Authorizer
imported = time.time()
async def main():
    await db.connect(sys.argv[1])
    authorizer = Authorizer()
    await authorizer.refresh()
    loaded = time.time()
    print(imported - started, loaded - imported, loaded - started)
    await db.close()
asyncio.run(main())
"""


def _load_in_new_process(url: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, url, repr(started)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_DIR,
        timeout=300,
        check=True,
    )
    imports, load, total = (float(x) for x in done.stdout.split())
    return {"start_and_imports_s": imports, "load_s": load, "total_s": total}


def _requests(rng: random.Random, world: dict, count: int) -> list[tuple[int, str, str, str]]:
    """(user, app, env, action): a third covered by one of the user's own bindings (allowed
    unless the action is not the role's), a third on random exact scopes (mostly refused),
    and a third "*/*" super-admin checks (administer) and views."""
    _, role_rows = world["role_bindings"]
    _, app_rows = world["applications"]
    _, env_rows = world["environments"]
    _, user_rows = world["users"]
    apps = [row[1] for row in app_rows]
    envs = [row[1] for row in env_rows]
    users = len(user_rows)
    direct = [row for row in role_rows if row[0] is not None]
    requests = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            user, _, role, app, env, *_ = rng.choice(direct)
            app = rng.choice(apps) if app == "*" else app
            env = rng.choice(envs) if env == "*" else env
            action = rng.choice(ACTIONS_OF[role] + ("approve",))
        elif kind == 1:
            user, app, env = rng.randint(1, users), rng.choice(apps), rng.choice(envs)
            action = rng.choice(ALL_ACTIONS)
        else:
            user, app, env = rng.randint(1, users), "*", "*"
            action = rng.choice(("administer", "view"))
        requests.append((user, app, env, action))
    return requests


async def _decisions(authorizer, requests) -> dict:
    from greenlight.policies import Action, Scope

    calls = [(user, Action(action), Scope(app, env)) for user, app, env, action in requests]
    clock = time.perf_counter
    casbin, first, cached = [], [], []
    allowed = 0
    for user, action, scope in calls:  # the enforcer alone
        t = clock()
        authorizer.decide(user, action, scope)
        casbin.append(clock() - t)
    seen = set()
    for user, action, scope in calls:  # through the cache: first time, then again
        key = (user, action, scope)
        t = clock()
        answer = authorizer.may(user, action, scope)
        (cached if key in seen else first).append(clock() - t)
        seen.add(key)
        allowed += answer
    for user, action, scope in calls:
        t = clock()
        authorizer.may(user, action, scope)
        cached.append(clock() - t)
    mismatches = sum(authorizer.may(u, a, s) != authorizer.decide(u, a, s) for u, a, s in calls)
    return {
        "requests": len(calls),
        "allowed": allowed,
        "refused": len(calls) - allowed,
        "mismatches": mismatches,
        "casbin": _summary(casbin),
        "first": _summary(first),
        "cached": _summary(cached),
    }


async def _changes(writer, reader, rng: random.Random, world: dict, rounds: int) -> dict:
    """Each change made through `writer`'s workflow; timed until `reader` (another process)
    answers its next request accordingly."""
    from greenlight.models import Application, Environment, Role, User
    from greenlight.policies import Action, Actor, Scope
    from greenlight.workflow import identity, teams

    admin = await User.get(id=ADMIN)
    _, user_rows = world["users"]
    _, group_rows = world["groups"]
    users = len(user_rows)
    clock = time.perf_counter
    results: dict[str, dict[str, list[float]]] = {}

    async def timed(name: str, change, user: int, action: Action, scope: Scope, expected: bool):
        await writer.refresh()  # the writer's own request starts with it
        await reader.refresh()
        actor = Actor(admin, writer)
        assert reader.may(user, action, scope) != expected, (name, user, scope)
        started = clock()
        await change(actor)
        committed = clock()
        await reader.refresh()  # the reader's next request
        answer = reader.may(user, action, scope)
        done = clock()
        assert answer == expected, (name, user, scope)
        times = results.setdefault(name, {"write": [], "effect": [], "total": []})
        times["write"].append(committed - started)
        times["effect"].append(done - committed)
        times["total"].append(done - started)

    for _ in range(rounds):
        app, env = f"bench-app-{rng.randrange(10**9)}", f"bench-env-{rng.randrange(10**9)}"
        await Application.create(name=app)
        await Environment.create(name=env)
        scope = Scope(app, env)
        await reader.refresh()
        user = rng.randint(SUPER_ADMINS + 1, users)
        while reader.may(user, Action.VIEW, scope):  # a "*/*" binding covers the new scope
            user = rng.randint(SUPER_ADMINS + 1, users)
        holder: dict[str, int] = {}

        async def grant(actor, user=user, app=app, holder=holder):
            binding = await identity.grant_role(actor, user, Role.IMAGE_APPROVER, app, "*")
            holder["id"] = binding.id

        async def revoke(actor, holder=holder):
            await identity.revoke_role(actor, holder["id"])

        await timed("grant", grant, user, Action.APPROVE, scope, True)
        await timed("revoke", revoke, user, Action.APPROVE, scope, False)

        group = rng.randint(1, len(group_rows))

        async def group_grant(actor, group=group, app=app, holder=holder):
            binding = await teams.grant_group_role(actor, group, Role.VIEWER, app, "*")
            holder["group_binding"] = binding.id

        async def join(actor, group=group, user=user):
            await teams.add_member(actor, group, user)

        async def leave(actor, group=group, user=user):
            await teams.remove_member(actor, group, user)

        async def group_revoke(actor, holder=holder):
            await teams.revoke_group_role(actor, holder["group_binding"])

        member = await _member_of(group)
        if member is not None and not reader.may(member, Action.VIEW, scope):
            await timed("group grant", group_grant, member, Action.VIEW, scope, True)
            if user not in await _members(group):
                await timed("membership add", join, user, Action.VIEW, scope, True)
                await timed("membership remove", leave, user, Action.VIEW, scope, False)
            await timed("group revoke", group_revoke, member, Action.VIEW, scope, False)

        # deactivation: a user holding a role on the scope loses it on the reader at once
        await identity.grant_role(Actor(admin, writer), user, Role.VIEWER, app, env)

        async def deactivate(actor, user=user):
            await identity.deactivate_user(actor, user)

        await timed("deactivation", deactivate, user, Action.VIEW, scope, False)
        await identity.reactivate_user(Actor(admin, writer), user)

    return {
        name: {part: _summary(values) for part, values in times.items()} for name, times in results.items()
    }


async def _member_of(group: int) -> int | None:
    from greenlight.models import GroupMember

    return (
        await GroupMember.filter(group_id=group, user__is_active=True)
        .first()
        .values_list("user_id", flat=True)
    )


async def _members(group: int) -> set[int]:
    from greenlight.models import GroupMember

    return set(await GroupMember.filter(group_id=group).values_list("user_id", flat=True))


async def _measure(path: Path, world: dict, samples: int, rounds: int, seed: int) -> dict:
    from greenlight import db
    from greenlight.policies import Authorizer

    url = f"sqlite://{path}"
    figures: dict = {"load_new_process": _load_in_new_process(url)}
    await db.connect(url)
    try:
        loads = []
        for _ in range(3):
            authorizer = Authorizer()
            started = time.perf_counter()
            await authorizer.refresh()
            loads.append(time.perf_counter() - started)
        figures["load_in_process_s"] = statistics.median(loads)
        figures["rules"] = len(authorizer._rules.enforcer.get_grouping_policy())
        rng = random.Random(seed)
        figures["decisions"] = await _decisions(authorizer, _requests(rng, world, samples))
        reader = Authorizer()
        await reader.refresh()
        figures["changes"] = await _changes(authorizer, reader, rng, world, rounds)
    finally:
        await db.close()
    return figures


def run(
    bindings: int = 100_000,
    users: int = 10_000,
    *,
    applications: int = 1000,
    environments: int = 20,
    groups: int = 100,
    samples: int = 30_000,
    rounds: int = 20,
    seed: int = 8,
    folder: Path | None = None,
) -> dict:
    """Seeds a fresh SQLite database and measures; returns the figures (times in seconds
    where named _s, microseconds where named _us)."""
    sizes = dict(
        bindings=bindings,
        users=users,
        applications=applications,
        environments=environments,
        groups=groups,
        seed=seed,
    )
    with tempfile.TemporaryDirectory(prefix="greenlight-bench-authz-", dir=folder) as tmp:
        path = Path(tmp) / "authorization.sqlite3"
        started = time.perf_counter()
        world = asyncio.run(seed_database(path, **sizes))
        seeded = time.perf_counter() - started
        rows = {name: len(table_rows) for name, (_, table_rows) in world.items()}
        figures = asyncio.run(_measure(path, world, samples, rounds, seed))
    return {"sizes": sizes, "rows": rows, "seed_s": seeded, **figures}


# --- the table -----------------------------------------------------------------------------------


def table(figures: dict) -> str:
    sizes = figures["sizes"]
    lines = [
        f"Authorization at {sizes['bindings']:,} role bindings, {sizes['users']:,} users, "
        f"{sizes['groups']} groups ({figures['rows']['group_members']:,} memberships; "
        f"{figures['rules']:,} Casbin g rules), SQLite",
        "",
        f"{'what':<48} {'median':>12} {'p99':>12}",
    ]
    load = figures["load_new_process"]
    lines.append(f"{'new process: start, imports, all bindings':<48} {load['total_s']:>10.2f} s {'':>12}")
    lines.append(f"{'  of which loading the bindings':<48} {load['load_s']:>10.2f} s {'':>12}")
    lines.append(
        f"{'new Authorizer in a running process':<48} {figures['load_in_process_s']:>10.2f} s {'':>12}"
    )
    d = figures["decisions"]
    for key, label in (
        ("cached", "decision (cached, every later request)"),
        ("first", "decision (first for user, scope, action)"),
        ("casbin", "decision (the enforcer alone, no cache)"),
    ):
        lines.append(f"{label:<48} {d[key]['median_us']:>9.2f} us {d[key]['p99_us']:>9.2f} us")
    for name, parts in figures["changes"].items():
        total, effect = parts["total"], parts["effect"]
        lines.append(
            f"{name + ' to effect on another process':<48} {total['median_us'] / 1000:>9.2f} ms "
            f"{total['p99_us'] / 1000:>9.2f} ms"
        )
        lines.append(
            f"{'  of which its refresh and decision':<48} {effect['median_us'] / 1000:>9.2f} ms "
            f"{effect['p99_us'] / 1000:>9.2f} ms"
        )
    lines.append("")
    lines.append(
        f"{d['requests']:,} decisions ({d['allowed']:,} allowed, {d['refused']:,} refused; "
        f"cache and Casbin disagreed {d['mismatches']} times); seeding took {figures['seed_s']:.1f} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.authorization", description=__doc__.split("\n")[0])
    parser.add_argument("--bindings", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--applications", type=int, default=1000)
    parser.add_argument("--environments", type=int, default=20)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--samples", type=int, default=30_000, help="decisions measured")
    parser.add_argument("--rounds", type=int, default=20, help="changes measured, of each kind")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(
        args.bindings,
        args.users,
        applications=args.applications,
        environments=args.environments,
        groups=args.groups,
        samples=args.samples,
        rounds=args.rounds,
    )
    print(json.dumps(figures, indent=2) if args.json else table(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
