"""The benchmark's world: generated deterministically from its sizes, written with bulk
inserts (SQLite: one executemany per table in one transaction; PostgreSQL: COPY) into a
database whose schema Greenlight's own migrations created (greenlight.db.migrate).

Layout (A applications, E environments, V = min(20, A // 10) of them visible to the
benchmark user):
- a pipeline for every (application, environment);
- images spread evenly over the applications, each built by a random user;
- on pipeline app-0/env-0 ("Select Image"), 50 APPROVED requests on its 50 newest images
  and a HEALTHY deployment of an older one;
- the newest requests: PENDING ones on the visible applications' other pipelines, half of
  them with one approval already; the benchmark user may approve every one (this is the
  supply `approveRequest` consumes; see `World.supply`);
- the other requests in every state, mostly on applications the user cannot see;
- role bindings: the benchmark user is image-approver on the V visible applications, the
  rest go to random users on random scopes.

Columns this file does not name (added by later migrations) get the model's default.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path

from bench.config import REPO_DIR, Sizes

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SELECT_IMAGES = 50
PAGE = 50
BENCH_EMAIL = "bench@example.com"

# Users with fixed roles; everyone from FIRST_RANDOM_USER on is random.
BENCH_USER, CI_USER, APPROVER_USER, ADMIN_USER = 1, 2, 3, 4
FIRST_RANDOM_USER = 5

# The realistic mix (bench/mix.py): MIX_USERS users of their own (ids after the random
# ones), each image-approver on two applications the benchmark user cannot see (its home
# and the next one) and build-and-deploy on its home; on every home application, the
# newest MIX_SELECT images APPROVED on its first environment (what the user's "Select
# Image" lists) and MIX_PENDING PENDING requests on the other environments (what its
# "Approval pending" lists, and what its approveRequest consumes).
MIX_USERS = 50
MIX_SELECT = 50
MIX_PENDING = 200
MIX_REQUEST_SUPPLY = 30_000  # at most, (pipeline, image) pairs for requestApproval


@dataclass
class World:
    """What the benchmark needs to know about a seeded database."""

    sizes: dict[str, int]
    token: str
    bench_user_id: int
    select_pipeline_id: int
    select_images: int  # how many images "Select Image" lists
    pending_visible: int  # PENDING requests the benchmark user sees
    supply: list[int] = field(default_factory=list)  # PENDING requests it may approve
    rows: dict[str, int] = field(default_factory=dict)
    mix: dict = field(default_factory=dict)  # MixWorld as a dict (see `mix_world`)

    def mix_world(self) -> MixWorld:
        return MixWorld.of(self.mix)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> World:
        return cls(**json.loads(path.read_text()))


@dataclass
class MixUser:
    id: int
    email: str
    token: str
    applications: list[str]  # the applications it sees (image-approver on each)
    home: str  # build-and-deploy here too
    select_pipeline_id: int
    select_images: int  # how many images its "Select Image" lists
    pending: int  # PENDING requests awaiting its approval, when seeded


@dataclass
class MixWorld:
    """The realistic mix's users, and what their mutations consume."""

    users: list[MixUser]
    ci_token: str  # CI_USER's: registers images and requests approval (the writer)
    approver_token: str  # APPROVER_USER's: approves what the writer asked (the writer)
    targets: list[tuple[str, str, int]]  # (application, repository, pipeline id) the writer uses
    approvals: list[tuple[int, int]]  # (user index, request id): approveRequest's supply
    requests: list[tuple[int, int, int]]  # (user index, pipeline id, image id): requestApproval's

    @classmethod
    def of(cls, data: dict) -> MixWorld:
        return cls(
            users=[MixUser(**u) for u in data["users"]],
            ci_token=data["ci_token"],
            approver_token=data["approver_token"],
            targets=[tuple(t) for t in data["targets"]],
            approvals=[tuple(a) for a in data["approvals"]],
            requests=[tuple(r) for r in data["requests"]],
        )


@dataclass
class Table:
    model: str  # the Tortoise model's name in greenlight.models
    columns: list[str]  # model field names (foreign keys as "<name>_id")
    rows: list[tuple] = field(default_factory=list)


def fingerprint() -> str:
    """Changes whenever the schema (migrations) or this seeding code changes."""
    digest = hashlib.sha256()
    for path in sorted((REPO_DIR / "greenlight" / "migrations").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:12]


def _token(sizes: Sizes, who: str = "") -> str:
    if not who:
        return "glt_bench_" + hashlib.sha256(f"greenlight-bench-{sizes.key()}".encode()).hexdigest()[:32]
    return "glt_mix_" + hashlib.sha256(f"greenlight-bench-{who}-{sizes.key()}".encode()).hexdigest()[:32]


def generate(sizes: Sizes, seed: int = 8) -> tuple[list[Table], World]:
    rnd = random.Random(seed)
    A, E, I, R, B, U = (  # noqa: E741
        sizes.applications,
        sizes.environments,
        sizes.images,
        sizes.requests,
        sizes.bindings,
        sizes.users,
    )
    V = max(1, min(20, A // 10))
    width = max(4, len(str(A - 1)))
    app_names = [f"app-{a:0{width}d}" for a in range(A)]
    env_names = [f"env-{e:02d}" for e in range(E)]

    def at(seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds, microseconds=1)

    def random_user(*excluded: int, r: random.Random = rnd) -> int:
        while True:
            user = r.randrange(FIRST_RANDOM_USER, U + 1)
            if user not in excluded:
                return user

    # Users
    users = Table("User", ["id", "email", "name", "is_active", "created_at"])
    fixed = {
        BENCH_USER: (BENCH_EMAIL, "Bench Approver"),
        CI_USER: ("ci@example.com", "CI"),
        APPROVER_USER: ("approver@example.com", "Approver"),
        ADMIN_USER: ("admin@example.com", "Admin"),
    }
    for user_id in range(1, U + 1):
        email, name = fixed.get(user_id, (f"user{user_id:05d}@example.com", f"User {user_id}"))
        users.rows.append((user_id, email, name, True, at(user_id)))

    token = _token(sizes)
    from greenlight.workflow.identity import hash_token

    tokens = Table("ApiToken", ["id", "user_id", "name", "token_hash", "created_at"])
    tokens.rows.append((1, BENCH_USER, "bench", hash_token(token), at(0)))

    applications = Table("Application", ["id", "name", "created_at"])
    applications.rows = [(a + 1, app_names[a], at(a)) for a in range(A)]
    environments = Table("Environment", ["id", "name", "created_at"])
    environments.rows = [(e + 1, env_names[e], at(e)) for e in range(E)]

    def pipeline_id(a: int, e: int) -> int:
        return a * E + e + 1

    select_pipeline = pipeline_id(0, 0)
    pipelines = Table(
        "Pipeline",
        [
            "id",
            "application_id",
            "environment_id",
            "strategy",
            "trigger_type",
            "required_approvals",
            "ttl_hours",
            "approvers_can_deploy",
            "created_at",
        ],
    )
    for a in range(A):
        for e in range(E):
            pid = pipeline_id(a, e)
            required = 1 if pid == select_pipeline else 2
            pipelines.rows.append((pid, a + 1, e + 1, "ROLLING", "MANUAL", required, None, False, at(pid)))

    # Images: global index g belongs to application g % A, as its (g // A)-th image.
    def images_of(a: int) -> int:
        return I // A + (1 if a < I % A else 0)

    def image_id(a: int, k: int) -> int:
        return k * A + a + 1

    images = Table(
        "Image", ["id", "application_id", "repository", "tag", "digest", "built_by_id", "created_at"]
    )
    built_by = [0] * (I + 1)
    for g in range(I):
        a, k = g % A, g // A
        builder = random_user()
        built_by[g + 1] = builder
        digest = "sha256:" + hashlib.sha256(f"image-{g}".encode()).hexdigest()
        images.rows.append(
            (g + 1, a + 1, f"registry.example.com/acme/{app_names[a]}", f"1.{k}.0", digest, builder, at(g))
        )

    # Approval requests, oldest first: ids grow with requested_at.
    requests = Table(
        "ApprovalRequest",
        [
            "id",
            "image_id",
            "pipeline_id",
            "requested_by_id",
            "state",
            "live_key",
            "requested_at",
            "required_approvals",
            "expires_at",
            "closed_at",
        ],
    )
    approvals = Table("Approval", ["id", "request_id", "user_id", "decided_at", "comment"])
    rejections = Table("Rejection", ["id", "request_id", "user_id", "decided_at", "reason"])
    deployments = Table(
        "Deployment",
        [
            "id",
            "pipeline_id",
            "image_id",
            "status",
            "strategy",
            "triggered_by_id",
            "approval_request_id",
            "started_at",
            "finished_at",
            "driver",
            "rollout_seconds",
        ],
    )
    used: set[tuple[int, int]] = set()
    supply: list[int] = []

    def add_request(
        image: int, pid: int, state: str, required: int, approvers: int, r: random.Random = rnd
    ) -> int:
        request_id = len(requests.rows) + 1
        used.add((image, pid))
        requester = random_user(built_by[image], r=r)
        when = at(I + request_id)
        live = state in ("PENDING", "APPROVED")
        closed = None if live else when + timedelta(hours=1)
        expires = when + timedelta(days=1) if state == "EXPIRED" else None
        requests.rows.append(
            (
                request_id,
                image,
                pid,
                requester,
                state,
                f"{image}:{pid}" if live else None,
                when,
                required,
                expires,
                closed,
            )
        )
        decided: set[int] = set()
        for _ in range(approvers):
            approver = random_user(built_by[image], requester, *decided, r=r)
            decided.add(approver)
            approvals.rows.append(
                (len(approvals.rows) + 1, request_id, approver, when + timedelta(minutes=10), None)
            )
        if state == "REJECTED":
            rejections.rows.append(
                (
                    len(rejections.rows) + 1,
                    request_id,
                    random_user(built_by[image], requester, r=r),
                    closed,
                    "no",
                )
            )
        if state == "CONSUMED":
            deployments.rows.append(
                (
                    len(deployments.rows) + 1,
                    pid,
                    image,
                    "HEALTHY",
                    "ROLLING",
                    requester,
                    request_id,
                    closed,
                    closed + timedelta(seconds=90),
                    "simulator",
                    90.0,
                )
            )
        return request_id

    # "Select Image": the newest images of app 0 approved on env 0; an older one deployed.
    newest = images_of(0)
    select_n = min(SELECT_IMAGES, newest - 1)
    add_request(image_id(0, newest - select_n - 1), select_pipeline, "CONSUMED", 1, 1)
    for k in range(newest - select_n, newest):
        add_request(image_id(0, k), select_pipeline, "APPROVED", 1, 1)

    # The supply: PENDING requests on the visible applications, other environments.
    def supply_pairs():
        for j in range(max(images_of(a) for a in range(V)) * V * (E - 1)):
            a, rest = j % V, j // V
            e, back = 1 + rest % (E - 1), rest // (E - 1)
            k = images_of(a) - 1 - back
            if k >= 0:
                yield image_id(a, k), pipeline_id(a, e)

    capacity = sum(images_of(a) for a in range(V)) * (E - 1)
    remaining = R - len(requests.rows)
    supply_n = min(capacity, remaining * 3 // 5)
    background_n = remaining - supply_n
    supply_plan = []
    for pair in supply_pairs():
        if len(supply_plan) == supply_n:
            break
        supply_plan.append(pair)

    # The background: every state, mostly on applications the user cannot see.
    def background_pairs():
        if A > V:
            hidden = A - V
            for j in range(max(images_of(a) for a in range(V, A)) * hidden * E):
                a, rest = V + j % hidden, j // hidden
                e, k = rest % E, rest // E
                if k < images_of(a):
                    yield image_id(a, k), pipeline_id(a, e)
        for a in range(V):
            for e in range(E):
                for k in range(images_of(a)):
                    yield image_id(a, k), pipeline_id(a, e)

    taken = set(supply_plan)
    states = ("APPROVED", "REJECTED", "CANCELLED", "CONSUMED", "EXPIRED", "PENDING")
    pairs = (pair for pair in background_pairs() if pair not in used and pair not in taken)
    for n, (image, pid) in zip(range(background_n), pairs, strict=False):
        state = states[n % len(states)]
        add_request(image, pid, state, 2, 2 if state in ("APPROVED", "CONSUMED") else 0)
    for n, (image, pid) in enumerate(supply_plan):
        supply.append(add_request(image, pid, "PENDING", 2, n % 2))

    # The mix (after everything else, with a random generator of its own, so the rest of
    # the world is what it was without it).
    mix_rnd = random.Random(seed + 1)
    homes = list(range(V, A)) or list(range(A))
    mix_home = [homes[k % len(homes)] for k in range(MIX_USERS)]
    mix_seen = [[mix_home[k], homes[(k + 1) % len(homes)]] for k in range(MIX_USERS)]
    mix_pending: dict[int, list[tuple[int, int]]] = {}  # app -> (request id, approvals seeded)
    planned: dict[int, list[tuple[int, int]]] = {}  # app -> (image, pipeline) pending pairs
    for a in sorted(set(mix_home) | {x for seen in mix_seen for x in seen}):
        if a in mix_pending:
            continue
        n = images_of(a)
        if a in mix_home:
            pid = pipeline_id(a, 0)
            for k in range(max(0, n - SELECT_IMAGES), n):
                if (image_id(a, k), pid) not in used:
                    add_request(image_id(a, k), pid, "APPROVED", 2, 2, r=mix_rnd)
        mix_pending[a] = []
        pending_pairs = (
            (image_id(a, k), pipeline_id(a, e)) for k in range(n - 1, -1, -1) for e in range(1, E)
        )
        planned[a] = [pair for pair in pending_pairs if pair not in used][:MIX_PENDING]
    # Requested in turns across the applications, as real traffic interleaves them: a
    # user's newest page holds some of each application it sees.
    for turn in range(MIX_PENDING):
        for a, pairs in planned.items():
            if turn < len(pairs):
                seeded = turn % 2
                image, pid = pairs[turn]
                mix_pending[a].append((add_request(image, pid, "PENDING", 2, seeded, r=mix_rnd), seeded))

    # Role bindings
    bindings = Table("RoleBinding", ["id", "user_id", "role", "application", "environment", "created_at"])
    wanted: list[tuple[int, str, str, str]] = [
        (BENCH_USER, "image-approver", app_names[a], "*") for a in range(V)
    ]
    wanted += [
        (CI_USER, "build-and-deploy", "*", "*"),
        (APPROVER_USER, "image-approver", "*", "*"),
        (ADMIN_USER, "super-admin", "*", "*"),
    ]
    seen = set(wanted)
    roles = ("viewer", "build-and-deploy", "image-approver")
    attempts = 0
    while len(wanted) < B and attempts < B * 20:
        attempts += 1
        binding = (
            random_user(),
            rnd.choice(roles),
            "*" if rnd.random() < 0.01 else rnd.choice(app_names),
            "*" if rnd.random() < 0.3 else rnd.choice(env_names),
        )
        if binding not in seen:
            seen.add(binding)
            wanted.append(binding)
    wanted = wanted[:B]
    mix_users: list[MixUser] = []
    mix_tokens = {CI_USER: _token(sizes, "ci"), APPROVER_USER: _token(sizes, "approver")}
    for k in range(MIX_USERS):
        user_id = U + 1 + k
        email = f"mix{k:02d}@example.com"
        users.rows.append((user_id, email, f"Mix {k}", True, at(user_id)))
        mix_tokens[user_id] = _token(sizes, f"mix-{k}")
        for a in mix_seen[k]:
            wanted.append((user_id, "image-approver", app_names[a], "*"))
        wanted.append((user_id, "build-and-deploy", app_names[mix_home[k]], "*"))
    for user_id, secret in mix_tokens.items():
        tokens.rows.append((len(tokens.rows) + 1, user_id, "mix", hash_token(secret), at(0)))
    bindings.rows = [(n + 1, *binding, at(n)) for n, binding in enumerate(wanted)]

    approved_on: dict[int, set[int]] = {}
    for row in requests.rows:
        if row[4] == "APPROVED":
            approved_on.setdefault(row[2], set()).add(row[1])
    for k in range(MIX_USERS):
        user_id = U + 1 + k
        select = pipeline_id(mix_home[k], 0)
        mix_users.append(
            MixUser(
                id=user_id,
                email=f"mix{k:02d}@example.com",
                token=mix_tokens[user_id],
                applications=[app_names[a] for a in mix_seen[k]],
                home=app_names[mix_home[k]],
                select_pipeline_id=select,
                select_images=len(approved_on.get(select, ())),
                pending=len({r for a in set(mix_seen[k]) for r, _ in mix_pending[a]}),
            )
        )
    # approveRequest's supply: every user's first approval of each request it sees, then
    # the second ones (a request seeded with one approval takes one more only).
    first_round: list[tuple[int, int]] = []
    second_round: list[tuple[int, int]] = []
    takers: dict[int, list[int]] = {}
    for k in range(MIX_USERS):
        for a in dict.fromkeys(mix_seen[k]):
            for request_id, _seeded in mix_pending[a]:
                takers.setdefault(request_id, []).append(k)
    seeded_of = {r: s for pending in mix_pending.values() for r, s in pending}
    for request_id in sorted(takers):
        room = 2 - seeded_of[request_id]
        for n, k in enumerate(takers[request_id][:room]):
            (first_round if n == 0 else second_round).append((k, request_id))
    mix_rnd.shuffle(first_round)
    mix_rnd.shuffle(second_round)
    # requestApproval's supply: pairs on the user's home never requested, users in turn.
    free: dict[int, list[tuple[int, int]]] = {}
    for a in sorted(set(mix_home)):
        free[a] = [
            (pipeline_id(a, e), image_id(a, k))
            for k in range(images_of(a) - 1, -1, -1)
            for e in range(E)
            if (image_id(a, k), pipeline_id(a, e)) not in used
        ]
    owners: dict[int, list[int]] = {}
    for k in range(MIX_USERS):
        owners.setdefault(mix_home[k], []).append(k)
    request_supply: list[tuple[int, int, int]] = []
    per_user: dict[int, list[tuple[int, int, int]]] = {k: [] for k in range(MIX_USERS)}
    for a, pairs in free.items():
        for n, (pid, image) in enumerate(pairs):
            per_user[owners[a][n % len(owners[a])]].append((owners[a][n % len(owners[a])], pid, image))
    for turn in range(max(len(v) for v in per_user.values())):
        for k in range(MIX_USERS):
            if turn < len(per_user[k]):
                request_supply.append(per_user[k][turn])
    mix = MixWorld(
        users=mix_users,
        ci_token=mix_tokens[CI_USER],
        approver_token=mix_tokens[APPROVER_USER],
        targets=[
            (app_names[a], f"registry.example.com/acme/{app_names[a]}", pipeline_id(a, e))
            for a in sorted(set(mix_home))
            for e in range(1, E)
        ],
        approvals=first_round + second_round,
        requests=request_supply[:MIX_REQUEST_SUPPLY],
    )

    tables = [
        users,
        tokens,
        applications,
        environments,
        pipelines,
        images,
        requests,
        approvals,
        rejections,
        deployments,
        bindings,
    ]
    visible_pending = sum(1 for row in requests.rows if row[4] == "PENDING" and (row[2] - 1) // E < V)
    world = World(
        sizes=asdict(sizes),
        token=token,
        bench_user_id=BENCH_USER,
        select_pipeline_id=select_pipeline,
        select_images=select_n,
        pending_visible=visible_pending,
        supply=supply,
        rows={table.model: len(table.rows) for table in tables},
        mix=asdict(mix),
    )
    return tables, world


def _complete(table: Table) -> tuple[str, list[str], list[tuple]]:
    """The table's name, its database columns, and its rows with every column the model
    has, the missing ones set to the model's default (or NULL, or the seed time)."""
    from greenlight import models

    model = getattr(models, table.model)
    meta = model._meta
    projection = meta.fields_db_projection  # field name -> column
    unknown = [c for c in table.columns if c not in projection]
    if unknown:
        raise RuntimeError(f"bench: {table.model} has no field(s) {unknown}; update bench/world.py")
    extra_fields = [name for name in projection if name not in table.columns]
    extra_values = []
    for name in extra_fields:
        f = meta.fields_map[name]
        if getattr(f, "auto_now_add", False) or getattr(f, "auto_now", False):
            value = T0
        elif f.default is not None:
            value = f.default() if callable(f.default) else f.default
        elif f.null:
            value = None
        else:
            raise RuntimeError(f"bench: {table.model}.{name} needs a value; update bench/world.py")
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, dict | list):
            value = json.dumps(value)
        extra_values.append(value)
    columns = [projection[c] for c in table.columns] + [projection[c] for c in extra_fields]
    extra = tuple(extra_values)
    rows = [row + extra for row in table.rows] if extra else table.rows
    return meta.db_table, columns, rows


def _needs_models() -> None:
    """Greenlight's models, registered with Tortoise, so their metadata is complete."""
    from tortoise import Tortoise

    from greenlight.db import tortoise_config

    if not Tortoise._inited:
        asyncio.run(Tortoise.init(config=tortoise_config("sqlite://:memory:")))
        asyncio.run(Tortoise.close_connections())


def seed_sqlite(path: Path, sizes: Sizes) -> tuple[World, float]:
    """A new SQLite database at `path`: migrated by Greenlight, then filled. Returns the
    world and the seconds it took."""
    from greenlight import db

    started = time.perf_counter()
    path.unlink(missing_ok=True)
    asyncio.run(db.migrate(f"sqlite://{path}"))
    tables, world = generate(sizes)
    fill_sqlite(path, tables)
    return world, time.perf_counter() - started


def fill_sqlite(path: Path, tables: list[Table]) -> None:
    """Bulk-insert `tables` into the (migrated) SQLite database at `path`, in one
    transaction; WAL mode afterwards, as Greenlight runs it."""
    _needs_models()
    # Tortoise's SQLite adapters: datetimes are stored as Tortoise itself stores them.
    import tortoise.backends.sqlite.executor  # noqa: F401

    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=DELETE")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN")
        for table in tables:
            name, columns, rows = _complete(table)
            marks = ", ".join("?" * len(columns))
            quoted = ", ".join(f'"{column}"' for column in columns)  # "commit" is a keyword
            connection.executemany(f'INSERT INTO "{name}" ({quoted}) VALUES ({marks})', rows)
        connection.execute("COMMIT")
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


async def _seed_postgres(url: str, tables: list[Table]) -> None:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        for table in tables:
            name, columns, rows = _complete(table)
            await connection.copy_records_to_table(name, records=rows, columns=columns)
            await connection.execute(
                f"SELECT setval(pg_get_serial_sequence('\"{name}\"', 'id'), "
                f'(SELECT COALESCE(MAX(id), 0) + 1 FROM "{name}"), false)'
            )
        # What autovacuum would do shortly after a bulk load; plans are then stable.
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


def seed_postgres(url: str, sizes: Sizes) -> tuple[World, float]:
    """Fill the (existing, empty) PostgreSQL database at `url`, migrated by Greenlight."""
    from greenlight import db

    started = time.perf_counter()
    asyncio.run(db.migrate(url))
    tables, world = generate(sizes)
    fill_postgres(url, tables)
    return world, time.perf_counter() - started


def fill_postgres(url: str, tables: list[Table]) -> None:
    """COPY `tables` into the (migrated) PostgreSQL database at `url`, then VACUUM ANALYZE."""
    _needs_models()
    asyncio.run(_seed_postgres(url, tables))


def describe(world: World) -> str:
    return ", ".join(f"{count:,} {model}" for model, count in world.rows.items())
