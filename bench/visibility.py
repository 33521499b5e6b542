"""The promise that "listing what a user may see costs the same whether the database holds 10 or
10,000 applications the user cannot see".

Two small worlds that differ only in how many applications the measuring user cannot see
(`--invisible FEW,MANY`, 10 and 10,000 by default). Both hold the same visible part: one
application the user is image-approver on, with 3 pipelines (one per environment), 50
images and 50 approval requests (40 approved on the first pipeline, which "Select Image"
lists, one consumed by the deployment running there, 9 pending on the second). Each
invisible application has the same 3 pipelines, 5 images, 5 approval requests in several
states (with their approvals, rejection and deployment) and a role binding of some other
user, so invisible rows are in every table the lists read. The visible rows are the oldest
(lowest ids): a newest-first list that found its rows by reading past others would have to
read every invisible row first. Seeded with bench/world.py's bulk writers (SQLite:
executemany; PostgreSQL: COPY, then VACUUM ANALYZE), into a database of the run's own for
each world, removed afterwards.

Then, per world, in a fresh process (bench/inproc.py's in-process ASGI calls, every
request doing its database work): each list query is sent
`--visibility-requests` times one at a time after warm-up, timed (median, p90), and its SQL
statements are counted at the driver as bench/inproc.py counts them. The answers must be
the same in both worlds, byte for byte.

    python -m bench visibility [flags]   # this table alone
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

from bench.config import REPO_DIR, Options
from bench.queries import SELECT_IMAGE
from bench.world import T0, Table, fill_postgres, fill_sqlite

TARGET = 1.25  # ok when the median at MANY is at most this many times the median at FEW
ENVIRONMENTS = 3
USERS = 50
VISIBLE_IMAGES = 50
VISIBLE_REQUESTS = 50
SELECT_APPROVED = 40  # approved on the first pipeline: what "Select Image" lists
HIDDEN_IMAGES = 5  # per invisible application
HIDDEN_STATES = ("APPROVED", "PENDING", "REJECTED", "CONSUMED", "CANCELLED")  # one request each
WARM = 20
ROUND = 10  # timed requests in a row in one world before the other world's turn
COUNTED = 3
PAGE = 50
BENCH_USER = 1
VISIBLE_APP = "shop"

APPLICATIONS = """query Applications {
  applications { name }
}"""

IMAGES = """query Images($applicationId: ID!, $first: Int!) {
  images(applicationId: $applicationId, first: $first) {
    edges { node { id tag digest createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}"""

APPROVAL_REQUESTS = """query ApprovalRequests($first: Int!) {
  approvalRequests(first: $first) {
    edges {
      node {
        id
        state
        requestedAt
        image { tag }
        pipeline { environment { name } }
      }
    }
  }
}"""


@dataclass(frozen=True)
class ListQuery:
    key: str
    title: str
    document: str
    expected: int  # items the user sees, in both worlds

    def body(self, world: VisWorld) -> bytes:
        variables: dict = {}
        if self.key == "images":
            variables = {"applicationId": f"Application:{world.application_id}", "first": PAGE}
        elif self.key == "requests":
            variables = {"first": PAGE}
        elif self.key == "select":
            variables = {"pipelineId": f"Pipeline:{world.select_pipeline_id}"}
        return json.dumps({"query": self.document, "variables": variables}, separators=(",", ":")).encode()

    def size(self, data: dict) -> int:
        if self.key == "applications":
            return len(data["applications"])
        if self.key == "images":
            return len(data["images"]["edges"])
        if self.key == "requests":
            return len(data["approvalRequests"]["edges"])
        return len(data["pipeline"]["deployableImages"])


QUERIES = {
    q.key: q
    for q in (
        ListQuery("applications", "applications", APPLICATIONS, 1),
        ListQuery("images", "images (first 50)", IMAGES, min(PAGE, VISIBLE_IMAGES)),
        ListQuery("requests", "approvalRequests", APPROVAL_REQUESTS, min(PAGE, VISIBLE_REQUESTS)),
        ListQuery("select", "Select Image", SELECT_IMAGE, SELECT_APPROVED),
    )
}


@dataclass
class VisWorld:
    invisible: int
    token: str
    application_id: int
    select_pipeline_id: int
    rows: dict[str, int] = field(default_factory=dict)


def generate(invisible: int, seed: int = 8) -> tuple[list[Table], VisWorld]:
    """The world with `invisible` applications the benchmark user cannot see; its visible
    part (and every id in it) is the same whatever `invisible` is."""
    from greenlight.workflow.identity import hash_token

    rnd = random.Random(seed)
    clock = iter(range(10**9))

    def at() -> object:
        return T0 + timedelta(seconds=next(clock), microseconds=1)

    def someone(*excluded: int) -> int:
        while True:
            user = rnd.randrange(BENCH_USER + 1, USERS + 1)
            if user not in excluded:
                return user

    users = Table("User", ["id", "email", "name", "is_active", "created_at"])
    users.rows = [(1, "bench@example.com", "Bench Viewer", True, at())]
    users.rows += [(u, f"user{u:03d}@example.com", f"User {u}", True, at()) for u in range(2, USERS + 1)]
    token = "glt_bench_" + hashlib.sha256(b"greenlight-bench-visibility").hexdigest()[:32]
    tokens = Table("ApiToken", ["id", "user_id", "name", "token_hash", "created_at"])
    tokens.rows = [(1, BENCH_USER, "bench", hash_token(token), at())]

    width = max(5, len(str(invisible)))
    names = [VISIBLE_APP] + [f"hidden-{h:0{width}d}" for h in range(1, invisible + 1)]
    applications = Table("Application", ["id", "name", "created_at"])
    environments = Table("Environment", ["id", "name", "created_at"])
    environments.rows = [(e + 1, f"env-{e:02d}", at()) for e in range(ENVIRONMENTS)]
    pipelines = Table(
        "Pipeline",
        [
            "id",
            "application_id",
            "environment_id",
            "strategy",
            "trigger_type",
            "required_approvals",
            "created_at",
        ],
    )
    images = Table(
        "Image", ["id", "application_id", "repository", "tag", "digest", "built_by_id", "created_at"]
    )
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
            "closed_at",
        ],
    )
    approvals = Table("Approval", ["id", "request_id", "user_id", "decided_at"])
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
            "rollout_seconds",
        ],
    )
    bindings = Table("RoleBinding", ["id", "user_id", "role", "application", "environment", "created_at"])
    bindings.rows = [(1, BENCH_USER, "image-approver", VISIBLE_APP, "*", at())]
    built_by: dict[int, int] = {}

    def add_application(a: int) -> list[int]:
        """The application with index `a` and its pipelines; returns the pipeline ids."""
        applications.rows.append((a + 1, names[a], at()))
        ids = []
        for e in range(ENVIRONMENTS):
            ids.append(len(pipelines.rows) + 1)
            pipelines.rows.append((ids[-1], a + 1, e + 1, "ROLLING", "MANUAL", 1, at()))
        return ids

    def add_image(a: int) -> int:
        image = len(images.rows) + 1
        built_by[image] = someone()
        digest = "sha256:" + hashlib.sha256(f"visibility-image-{image}".encode()).hexdigest()
        repository = f"registry.example.com/acme/{names[a]}"
        images.rows.append((image, a + 1, repository, f"1.{image}.0", digest, built_by[image], at()))
        return image

    def add_request(image: int, pipeline: int, state: str) -> int:
        request = len(requests.rows) + 1
        requester = someone(built_by[image])
        when = at()
        live = state in ("PENDING", "APPROVED")
        closed = None if live else when + timedelta(hours=1)
        key = f"{image}:{pipeline}" if live else None
        requests.rows.append((request, image, pipeline, requester, state, key, when, 1, closed))
        if state in ("APPROVED", "CONSUMED"):
            approver = someone(built_by[image], requester)
            approvals.rows.append((len(approvals.rows) + 1, request, approver, when + timedelta(minutes=10)))
        if state == "REJECTED":
            rejecter = someone(built_by[image], requester)
            rejections.rows.append((len(rejections.rows) + 1, request, rejecter, closed, "no"))
        if state == "CONSUMED":
            deployments.rows.append(
                (
                    len(deployments.rows) + 1,
                    pipeline,
                    image,
                    "HEALTHY",
                    "ROLLING",
                    requester,
                    request,
                    closed,
                    closed + timedelta(seconds=90),
                    90.0,
                )
            )
        return request

    # The visible part first: the same rows, the same ids, in both worlds.
    visible_pipelines = add_application(0)
    visible_images = [add_image(0) for _ in range(VISIBLE_IMAGES)]
    select = visible_pipelines[0]
    add_request(visible_images[0], select, "CONSUMED")  # the image running on it
    for image in visible_images[1 : 1 + SELECT_APPROVED]:
        add_request(image, select, "APPROVED")
    for image in visible_images[1 + SELECT_APPROVED : VISIBLE_REQUESTS]:
        add_request(image, visible_pipelines[1], "PENDING")

    # The invisible applications, newer than everything the user sees.
    roles = ("viewer", "build-and-deploy", "image-approver")
    for a in range(1, invisible + 1):
        pipeline_ids = add_application(a)
        hidden_images = [add_image(a) for _ in range(HIDDEN_IMAGES)]
        for n, state in enumerate(HIDDEN_STATES):
            add_request(hidden_images[n % HIDDEN_IMAGES], pipeline_ids[n % ENVIRONMENTS], state)
        bindings.rows.append((len(bindings.rows) + 1, someone(), rnd.choice(roles), names[a], "*", at()))

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
    world = VisWorld(
        invisible=invisible,
        token=token,
        application_id=1,
        select_pipeline_id=select,
        rows={table.model: len(table.rows) for table in tables},
    )
    return tables, world


# Seeding (in the harness's process)


def seed_sqlite(path: Path, invisible: int) -> tuple[VisWorld, float]:
    from greenlight import db

    started = time.perf_counter()
    path.unlink(missing_ok=True)
    asyncio.run(db.migrate(f"sqlite://{path}"))
    tables, world = generate(invisible)
    fill_sqlite(path, tables)
    return world, time.perf_counter() - started


def seed_postgres(url: str, invisible: int) -> tuple[VisWorld, float]:
    from greenlight import db

    started = time.perf_counter()
    asyncio.run(db.migrate(url))
    tables, world = generate(invisible)
    fill_postgres(url, tables)
    return world, time.perf_counter() - started


# Measuring: a worker process per world (`python -m bench.visibility worker SPEC`), driven
# over its stdin, one JSON line per command and per answer. The harness alternates the two
# worlds' workers in rounds, so whatever else the machine does at the time weighs on both.


async def worker(spec: dict, commands, answers) -> None:
    from bench.inproc import App, StatementCounter, _hook_postgres, _hook_sqlite, _unhook_sqlite

    world = VisWorld(**spec["world"])
    counter = StatementCounter()
    counter.width = None  # whole statements, for bench/.data/visibility-sql.txt
    postgres = spec["backend"] == "postgres"
    if postgres:
        _hook_postgres(counter)
    app = App(spec["database_url"])
    await app.start()
    bodies = {key: QUERIES[key].body(world) for key in spec["queries"]}

    def answer(value: dict) -> None:
        answers.write(json.dumps(value) + "\n")
        answers.flush()

    try:
        ready = {}
        for key, body in bodies.items():
            status, text = await app.post(body, world.token)
            decoded = json.loads(text)
            if status != 200 or decoded.get("errors"):
                raise RuntimeError(
                    f"bench: {QUERIES[key].title}: Greenlight answered {status}: {text[:500]!r}"
                )
            for _ in range(WARM):
                await app.post(body, world.token)
            ready[key] = {
                "items": QUERIES[key].size(decoded["data"]),
                "answer": hashlib.sha256(text).hexdigest(),
            }
        answer(ready)
        for line in commands:
            command = json.loads(line)
            if "time" in command:
                body = bodies[command["time"]]
                timings = []
                for _ in range(command["n"]):
                    started = time.perf_counter()
                    await app.post(body, world.token)
                    timings.append((time.perf_counter() - started) * 1000)
                answer({"ms": timings})
            elif "count" in command:
                # Counted apart from the timed requests, so counting costs them nothing.
                body = bodies[command["count"]]
                if not postgres:
                    await _hook_sqlite(counter)
                await asyncio.sleep(0.05)  # asyncpg reports statements with call_soon
                counter.reset()
                counter.keep = True
                sample: list[str] = []
                for n in range(COUNTED):
                    await app.post(body, world.token)
                    if n == 0:
                        await asyncio.sleep(0.01)
                        counter.keep = False
                        sample = list(counter.statements)
                await asyncio.sleep(0.05)
                if not postgres:
                    _unhook_sqlite()
                answer({"statements": counter.count / COUNTED, "sql": sample})
            else:
                break
    finally:
        await app.stop()


class Worker:
    """A world's worker process."""

    def __init__(self, backend: str, url: str, world: VisWorld, scratch: Path) -> None:
        spec = {"backend": backend, "database_url": url, "world": asdict(world), "queries": list(QUERIES)}
        self.spec_path = scratch / f"visibility-{os.getpid()}-{backend}-{world.invisible}.json"
        self.spec_path.write_text(json.dumps(spec))
        self.log_path = self.spec_path.with_suffix(".log")
        env = {**os.environ, "GREENLIGHT_ENV_FILE": "", "GREENLIGHT_RESPONSE_CACHE_SECONDS": "0"}
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.visibility", "worker", str(self.spec_path)],
                cwd=REPO_DIR,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(30)
            raise RuntimeError(f"bench: visibility worker failed:\n{self.log_path.read_text()[-3000:]}")
        return json.loads(line)

    def ask(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"stop": True}) + "\n")
                self.process.stdin.close()
                self.process.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.spec_path.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)


def drive(workers: dict[int, Worker], requests: int) -> dict[int, dict]:
    """Each query's timed requests, in rounds of at most ROUND, the worlds taking turns
    (which goes first alternates); then its statements, counted in each world."""
    results: dict[int, dict] = {invisible: {} for invisible in workers}
    order = list(workers)
    for key in QUERIES:
        for invisible, w in workers.items():
            results[invisible][key] = {**w.ready[key], "ms": []}
        done, turn = 0, 0
        while done < requests:
            n = min(ROUND, requests - done)
            for invisible in order if turn % 2 == 0 else order[::-1]:
                results[invisible][key]["ms"] += workers[invisible].ask(time=key, n=n)["ms"]
            done, turn = done + n, turn + 1
        for invisible, w in workers.items():
            results[invisible][key].update(w.ask(count=key))
    return results


# The harness


@dataclass
class Figures:
    backend: str
    worlds: dict[int, VisWorld] = field(default_factory=dict)
    results: dict[int, dict] = field(default_factory=dict)  # invisible -> query key -> figures
    note: str = ""


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _database(options: Options, backend: str, invisible: int) -> Iterator[tuple[str, VisWorld]]:
    """A database of this run's own holding the world; removed afterwards."""
    from bench import run

    if backend == "sqlite":
        path = options.data_dir / f"visibility-{os.getpid()}-{invisible}.sqlite3"
        try:
            _say(f"visibility: seeding SQLite with {invisible:,} invisible applications")
            world, _ = seed_sqlite(path, invisible)
            yield f"sqlite://{path}", world
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = f"greenlight_bench_visibility_{os.getpid()}_{invisible}"
    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    asyncio.run(run._pg_admin(options.postgres_url, drop))
    asyncio.run(run._pg_admin(options.postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        url = run._database_url(options.postgres_url, name)
        _say(f"visibility: seeding PostgreSQL with {invisible:,} invisible applications")
        world, _ = seed_postgres(url, invisible)
        yield url, world
    finally:
        asyncio.run(run._pg_admin(options.postgres_url, drop))


def measure_backend(options: Options, backend: str) -> Figures:
    from bench import run

    figures = Figures(backend)
    if backend == "postgres":
        problem = run.postgres_reachable(options.postgres_url)
        if problem:
            figures.note = f"skipped, {options.postgres_url} unreachable ({problem})"
            return figures
    options.data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        workers: dict[int, Worker] = {}
        for invisible in dict.fromkeys(options.invisible):
            url, world = stack.enter_context(_database(options, backend, invisible))
            figures.worlds[invisible] = world
            workers[invisible] = Worker(backend, url, world, options.data_dir)
            stack.callback(workers[invisible].stop)
        _say(f"visibility: {backend}: {options.visibility_requests} requests per query and world")
        figures.results = drive(workers, options.visibility_requests)
    return figures


def measure_all(options: Options) -> list[Figures]:
    return [measure_backend(options, backend) for backend in options.backends]


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]


@dataclass
class Line:
    query: str
    backend: str
    few: dict | None = None
    many: dict | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not (self.few and self.many):
            return None
        return statistics.median(self.many["ms"]) / statistics.median(self.few["ms"])

    @property
    def verdict(self) -> str:
        if self.ratio is None:
            return ""
        same = self.few["statements"] == self.many["statements"] and self.few["answer"] == self.many["answer"]
        return "ok" if self.ratio <= TARGET and same else "MISS"


def lines(figures: list[Figures], options: Options) -> list[Line]:
    few, many = options.invisible
    result = []
    for key, query in QUERIES.items():
        for f in figures:
            line = Line(query.title, f.backend, note=f.note)
            if few in f.results and many in f.results:
                line.few, line.many = f.results[few][key], f.results[many][key]
                problems = []
                if line.few["statements"] != line.many["statements"]:
                    problems.append("statements differ")
                if line.few["answer"] != line.many["answer"]:
                    problems.append("answers differ")
                for which in (line.few, line.many):
                    if which["items"] != query.expected:
                        problems.append(f"answered {which['items']} items, expected {query.expected}")
                line.note = "; ".join(dict.fromkeys(problems))
            result.append(line)
    return result


def table(figures: list[Figures], options: Options) -> str:
    few, many = options.invisible
    a, b = f"{few:,}", f"{many:,}"
    out = [
        f"  worlds: 1 visible application ({ENVIRONMENTS} pipelines, {VISIBLE_IMAGES} images, "
        f"{VISIBLE_REQUESTS} approval requests) and {a} or {b} invisible ones "
        f"({ENVIRONMENTS} pipelines, {HIDDEN_IMAGES} images, {len(HIDDEN_STATES)} requests and a role "
        "binding each)",
        f"  {options.visibility_requests} requests per query and world, one at a time in-process after "
        f"{WARM} warm-up",
        "",
    ]
    header = (
        f"{'query':<18} {'backend':<8} {'ms at ' + a + ' p50/p90':>20} {'ms at ' + b + ' p50/p90':>22} "
        f"{'ratio':>6} {'':<4} {'SQL at ' + a:>10} {'SQL at ' + b:>13}"
    )
    out += [header, "-" * len(header)]
    for line in lines(figures, options):
        if line.few is None:
            out.append(
                f"{line.query:<18} {line.backend:<8} {'-':>20} {'-':>22}   {line.note or 'not measured'}"
            )
            continue

        def ms(which: dict) -> str:
            return f"{statistics.median(which['ms']):.2f} / {p90(which['ms']):.2f}"

        out.append(
            f"{line.query:<18} {line.backend:<8} {ms(line.few):>20} {ms(line.many):>22} "
            f"{line.ratio:>5.2f}x {line.verdict:<4} {line.few['statements']:>10g} {line.many['statements']:>13g}"
            + (f"   {line.note}" if line.note else "")
        )
    out.append("")
    out.append(
        f"  ratio: median ms at {b} / median ms at {a} invisible applications; the target is about "
        f"1.0x, ok when at most {TARGET:.2f}x and the SQL statements per request (counted at the driver) "
        "and the answers are the same in both worlds; MISS otherwise."
    )
    for f in figures:
        for invisible, world in f.worlds.items():
            described = ", ".join(f"{n:,} {model}" for model, n in world.rows.items())
            out.append(f"  {f.backend}, {invisible:,} invisible: {described}")
    return "\n".join(out)


def render(figures: list[Figures], options: Options) -> str:
    title = "Listing what a user may see vs applications it cannot see (bench/visibility.py)"
    return title + ":\n" + table(figures, options) + "\n"


def statements(figures: list[Figures]) -> str:
    """The SQL each query sent (first counted request), per backend and world: for a look
    at a MISS."""
    out = []
    for f in figures:
        for invisible, results in f.results.items():
            for key, found in results.items():
                out.append(f"-- {QUERIES[key].title}, {f.backend}, {invisible:,} invisible")
                out += found["sql"]
    return "\n".join(out) + "\n"


def run(options: Options) -> str:
    """The table, for bench/run.py (measured on options.backends)."""
    try:
        figures = measure_all(options)
    except Exception as error:  # report it, don't lose the rest of the benchmark
        return f"Listing what a user may see (bench/visibility.py):\n  not measured ({type(error).__name__}: {error})\n"
    (options.data_dir / "visibility-sql.txt").write_text(statements(figures))
    return render(figures, options)


def main(argv: list[str]) -> int:
    if argv[:1] == ["worker"]:
        os.environ.setdefault("GREENLIGHT_ENV_FILE", "")
        from greenlight.observability import logs

        # Answers go to the harness on the real stdout; anything else printed, to stderr.
        answers = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        logs.setup("json", os.environ.get("GREENLIGHT_LOG_LEVEL", "INFO"), stream=open(os.devnull, "w"))  # noqa: SIM115
        spec = json.loads(Path(argv[1]).read_text())
        asyncio.run(worker(spec, sys.stdin, answers))
        return 0
    from bench.config import parse

    options = parse(argv)
    options.data_dir.mkdir(parents=True, exist_ok=True)
    figures = measure_all(options)
    (options.data_dir / "visibility-sql.txt").write_text(statements(figures))
    print(render(figures, options), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
