"""`make bench`: seed, serve, load, and print the table (see bench/README.md)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from bench import load
from bench.config import REPO_DIR, Options, parse
from bench.inproc import COUNTED, WARM
from bench.queries import OPERATIONS
from bench.world import World, describe, fingerprint, seed_postgres, seed_sqlite

READY_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Row:
    operation: str
    server: str
    result: load.Result | None = None
    statements: float | None = None
    note: str = ""


@dataclass
class Report:
    options: Options
    tool: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    authorization: str | None = None
    visibility: str | None = None
    statements: dict[str, dict] = field(default_factory=dict)
    mix_rows: list = field(default_factory=list)
    mix_profiles: dict[str, dict] = field(default_factory=dict)
    mix_notes: list[str] = field(default_factory=list)
    mix_world: str = ""


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# Servers


@contextlib.contextmanager
def server(which: str, env: dict[str, str], log_path: Path) -> Iterator[int]:
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.serve", which, str(port)],
            cwd=REPO_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def post(port: int, body: bytes, token: str, timeout: float = 60.0) -> dict:
    response = httpx.post(
        f"http://127.0.0.1:{port}/graphql",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        timeout=timeout,
    )
    response.raise_for_status()
    answer = response.json()
    if answer.get("errors"):
        raise RuntimeError(f"bench: errors in the answer: {answer['errors']}")
    return answer["data"]


def wait_ready(port: int, body: bytes, token: str, log_path: Path) -> float:
    """Seconds until the server answers `body` (a query) without errors."""
    started = time.perf_counter()
    while True:
        try:
            post(port, body, token, timeout=READY_TIMEOUT)
            return time.perf_counter() - started
        except (httpx.TransportError, httpx.HTTPStatusError):
            if time.perf_counter() - started > READY_TIMEOUT:
                raise RuntimeError(f"bench: server not ready; see {log_path}") from None
            time.sleep(0.05)


# Databases


def sqlite_world(options: Options) -> tuple[Path, World, str]:
    """The cached seeded SQLite file for these sizes (made if missing)."""
    data = options.data_dir
    data.mkdir(parents=True, exist_ok=True)
    stem = f"world-{options.sizes.key()}"
    path = data / f"{stem}-{fingerprint()}.sqlite3"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return path, World.load(meta), "cached"
    for stale in data.glob(f"{stem}-*"):
        stale.unlink()
    say(f"seeding SQLite ({options.sizes.key()}) into {path.name}")
    with tempfile.TemporaryDirectory(dir=data) as scratch:
        tmp = Path(scratch) / "world.sqlite3"
        world, seconds = seed_sqlite(tmp, options.sizes)
        world.save(Path(scratch) / "world.json")
        shutil.move(tmp, path)
        shutil.move(Path(scratch) / "world.json", meta)
    return path, world, f"seeded in {seconds:.1f} s"


def _pg(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


async def _pg_admin(url: str, sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_pg(url), timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _database_url(server_url: str, name: str) -> str:
    prefix, _, _ = server_url.rstrip("/").rpartition("/")
    return f"{prefix}/{name}"


@contextlib.contextmanager
def database(backend: str, options: Options) -> Iterator[tuple[str, World, str]]:
    """A database of this run's own holding the world; removed afterwards."""
    if backend == "sqlite":
        template, world, how = sqlite_world(options)
        work = options.data_dir / f"run-{os.getpid()}.sqlite3"
        shutil.copyfile(template, work)
        try:
            yield f"sqlite://{work}", world, how
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{work}{suffix}").unlink(missing_ok=True)
        return
    name = f"greenlight_bench_{os.getpid()}"
    asyncio.run(_pg_admin(options.postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_pg_admin(options.postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        url = _database_url(options.postgres_url, name)
        say(f"seeding PostgreSQL ({options.sizes.key()}) into {name}")
        world, seconds = seed_postgres(url, options.sizes)
        yield url, world, f"seeded in {seconds:.1f} s"
    finally:
        asyncio.run(_pg_admin(options.postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def postgres_reachable(url: str) -> str | None:
    try:
        asyncio.run(_pg_admin(url, "SELECT 1"))
    except Exception as error:  # any failure means: skip PostgreSQL, say why
        return f"{type(error).__name__}: {error}"
    return None


# In-process statement counts


def in_process(mode: str, backend: str, url: str, world: World, ids: list[int], **extra) -> str:
    spec = {
        "backend": backend,
        "database_url": url,
        "world": asdict(world),
        "ids": ids,
        "operations": extra.pop("operations"),
        **extra,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.inproc", mode, handle.name],
            cwd=REPO_DIR,
            env={**os.environ, "GREENLIGHT_ENV_FILE": ""},
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        Path(handle.name).unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench: in-process {mode} failed:\n{done.stderr[-3000:]}")
    return done.stdout


# Load


def drive(tool: str, spec: load.Spec) -> load.Result:
    return load.wrk(spec) if tool == "wrk" else load.builtin(spec)


def measure(
    tool: str,
    options: Options,
    port: int,
    token: str,
    key: str,
    body: bytes | None,
    ids: list[int],
    cycle: bool = False,
) -> load.Result:
    """A warm-up, then the measured run, at the same concurrency."""
    operation = OPERATIONS[key]
    spec = load.Spec(
        port=port, connections=options.connections, duration=options.warmup, token=token, cycle=cycle
    )
    if operation.mutation:
        prefix, suffix = operation.body_parts()
        spec.prefix, spec.suffix, spec.ids = prefix.decode(), suffix.decode(), ids
    else:
        spec.body = body.decode()
    if options.warmup > 0 and (spec.ids or not operation.mutation):
        warm = drive(tool, spec)
        if operation.mutation and not cycle:
            spec.ids = ids[warm.sent + options.connections :]
    spec.duration = options.duration
    if operation.mutation and not spec.ids:
        return load.Result(0, 0, options.duration, math.nan, math.nan, exhausted=True, tool=tool)
    return drive(tool, spec)


def run_server(
    report: Report,
    options: Options,
    tool: str,
    which: str,
    env: dict[str, str],
    world: World | None,
    backend_label: str,
    statements: dict[str, float] | None,
    supply: list[int],
) -> None:
    logs = options.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{backend_label}.log"
    token = world.token if world else "baseline"
    first_key = next((k for k in options.queries if not OPERATIONS[k].mutation), None)
    if first_key is None:
        ready_body = json.dumps({"query": "{ __typename }"}).encode()
    elif which == "baseline":
        ready_body = OPERATIONS[first_key].encode(_baseline_variables(first_key))
    else:
        ready_body = OPERATIONS[first_key].body(world)
    with server(which, env, log_path) as port:
        ready = wait_ready(port, ready_body, token, log_path)
        if which == "greenlight":
            report.notes.append(
                f"{backend_label}: Greenlight answered its first query {ready:.1f} s after start "
                f"(process start, {world.rows.get('RoleBinding', 0):,} role bindings loaded)"
            )
        for key in options.queries:
            operation = OPERATIONS[key]
            say(f"{backend_label}: {operation.title}")
            row = Row(operation.title, backend_label)
            ids: list[int] = []
            if which == "baseline":
                body = operation.encode(_baseline_variables(key))
                ids = list(range(1, 1001))  # any id will do; the load generator cycles
                expected = 50 if key != "approve" else 1
            else:
                if operation.mutation:
                    ids = list(supply)
                    body = operation.body(world, ids.pop())
                else:
                    body = operation.body(world)
                expected = operation.expected(world)
            got = operation.size(post(port, body, token))
            if got != expected:
                row.note = f"answered {got} items, expected {expected}"
            row.result = measure(tool, options, port, token, key, body, ids, cycle=which == "baseline")
            row.statements = statements.get(key) if statements else None
            if row.result.exhausted:
                row.note = (
                    f"ran out of approvable requests after {row.result.seconds:.1f} s "
                    f"({len(supply):,} seeded)"
                )
            if row.result.errors and row.result.first_error:
                row.note = (
                    row.note + "; " if row.note else ""
                ) + f"first error: {row.result.first_error[:160]}"
            report.rows.append(row)
    if not options.keep_logs:
        log_path.unlink(missing_ok=True)


def _baseline_variables(key: str) -> dict:
    if key == "select":
        return {"pipelineId": "Pipeline:1"}
    if key == "pending":
        return {"first": 50}
    return {"id": "ApprovalRequest:1"}


def run_backend(report: Report, options: Options, tool: str, backend: str) -> None:
    if backend == "postgres":
        problem = postgres_reachable(options.postgres_url)
        if problem:
            report.notes.append(f"postgres: skipped, {options.postgres_url} unreachable ({problem})")
            for key in options.queries:
                report.rows.append(Row(OPERATIONS[key].title, backend, note="skipped"))
            return
    with database(backend, options) as (url, world, how):
        report.notes.append(f"{backend}: world {how}: {describe(world)}")
        # Approvable requests: the last few for the in-process count and the shape check.
        reserve = WARM + COUNTED if "approve" in options.queries else 0
        split = len(world.supply) - reserve
        counted_ids, supply = world.supply[split:], world.supply[:split]
        say(f"{backend}: counting SQL statements in-process")
        counted = json.loads(
            in_process("count", backend, url, world, counted_ids, operations=list(options.queries))
        )
        report.statements[backend] = counted["statements"]
        resets = {k: v for k, v in counted.get("pool_resets", {}).items() if v}
        if resets:
            report.notes.append(
                f"{backend}: besides SQL/req, asyncpg's pool sent its reset query (a round trip) "
                + ", ".join(f"{v:g} times per {OPERATIONS[k].title}" for k, v in resets.items())
            )
        env = {
            **os.environ,
            "GREENLIGHT_DATABASE_URL": url,
            "GREENLIGHT_MUTATIONS_PER_MINUTE": "0",
            "GREENLIGHT_ENV_FILE": "",
        }
        run_server(report, options, tool, "greenlight", env, world, backend, counted["per_request"], supply)
        if options.mix:
            from bench import mix

            report.mix_world = "\n".join(mix.describe(world, options))
            try:
                rows, profile, notes = mix.run_backend(options, backend, url, world, env)
            except Exception as error:  # report it, keep the rest of the table
                report.mix_notes.append(f"{backend}: the mix failed: {type(error).__name__}: {error}")
            else:
                report.mix_rows += rows
                report.mix_profiles[backend] = profile
                report.mix_notes += notes


def authorization(options: Options) -> str:
    """The figures of bench/authorization.py (another part of the benchmark), rendered by
    its own `table` when it has one."""
    try:
        from bench import authorization as module
    except ImportError:
        return "  not measured (bench/authorization.py is not there)"
    sizes = options.sizes
    wanted = {"applications": sizes.applications, "environments": sizes.environments}
    if sizes.bindings < 1000:  # the smoke test's tiny world: fewer samples
        wanted |= {"samples": 2000, "rounds": 3}
    accepted = inspect.signature(module.run).parameters
    kwargs = {k: v for k, v in wanted.items() if k in accepted}
    try:
        figures = module.run(sizes.bindings, sizes.users, **kwargs)
    except Exception as error:  # report it, don't lose the table
        return f"  not measured ({type(error).__name__}: {error})"
    if hasattr(module, "table"):
        with contextlib.suppress(Exception):
            return "\n".join("  " + line for line in module.table(figures).rstrip().splitlines())
    return "\n".join(f"  {key}: {value}" for key, value in _flatten(figures))


def _flatten(value, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, f"{value:,.3f}" if isinstance(value, float) else str(value)


# The table


def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def render(report: Report) -> str:
    options = report.options
    s = options.sizes
    lines = [
        "",
        "Greenlight benchmark",
        f"  world: {s.applications:,} applications, {s.environments:,} environments, {s.images:,} images, "
        f"{s.requests:,} approval requests, {s.bindings:,} role bindings, {s.users:,} users "
        "(plus the mix's users, their bindings and requests)",
        "  servers: one uvicorn worker each, same settings (bench/serve.py); baseline = bare Strawberry, "
        "static data; naive = bench/naive (Strawberry + Tortoise without special care)",
        "",
    ]
    lines += mix_section(report)
    lines += [
        "One user repeating one question (the figures measured before the mix, kept for comparison: the "
        "benchmark user, one token, the same request every time, no writes meanwhile, one run each):",
        f"  load: {options.connections} concurrent keep-alive clients, {options.duration:g} s per operation "
        f"after {options.warmup:g} s warm-up; load generator: {report.tool}",
        "",
    ]
    header = (
        f"{'operation':<18} {'server':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7} "
        f"{'target':>7} {'':<4} {'SQL/req':>7} {'errors':>7}"
    )
    lines += [header, "-" * len(header)]
    baseline = {row.operation: row for row in report.rows if row.server == "baseline"}
    for row in report.rows:
        operation = next(op for op in OPERATIONS.values() if op.title == row.operation)
        result = row.result
        ratio = target = verdict = None
        if row.server != "baseline" and result is not None:
            base = baseline.get(row.operation)
            if base and base.result and base.result.rps > 0:
                ratio = result.rps / base.result.rps
                target = operation.target
                verdict = "ok" if ratio >= target and not result.errors else "MISS"
        lines.append(
            f"{row.operation:<18} {row.server:<9} "
            f"{_fmt(result.rps if result else None, ',.1f'):>9} "
            f"{_fmt(result.p50_ms if result else None, '.2f'):>8} "
            f"{_fmt(result.p99_ms if result else None, '.2f'):>8} "
            f"{(_fmt(ratio, '.2f') + 'x') if ratio is not None else '-':>7} "
            f"{('>=' + format(target, '.1f') + 'x') if target else '-':>7} {verdict or '':<4} "
            f"{_fmt(row.statements, 'g'):>7} "
            f"{_fmt(result.errors if result else None, 'd'):>7}" + (f"   {row.note}" if row.note else "")
        )
    lines.append("")
    lines.append(
        "SQL/req: statements per request counted at the driver in an in-process run (bench/inproc.py), "
        "BEGIN/COMMIT/SAVEPOINT included."
    )
    shares = [row.result.cpu_share for row in report.rows if row.result and row.result.cpu_share is not None]
    if shares:
        lines.append(
            f"Load generator CPU: at most {max(shares) * 100:.0f}% of one core "
            "(the server under test uses one core)."
        )
    lines += report.notes
    lines.append("")
    lines.append("Authorization decisions (bench/authorization.py):")
    lines.append(report.authorization or "  not measured")
    lines.append("")
    lines.append(
        report.visibility.rstrip("\n")
        if report.visibility
        else "Listing what a user may see (bench/visibility.py):\n  not measured"
    )
    return "\n".join(lines) + "\n"


def mix_section(report: Report) -> list[str]:
    options = report.options
    if not options.mix:
        return ["The realistic mix: not measured (--skip-mix)", ""]
    from bench import mix

    lines = ["The realistic mix (the headline; bench/mix.py):"]
    if report.mix_world:
        lines.append(report.mix_world)
    lines.append("")
    if report.mix_rows:
        lines += mix.render(report.mix_rows, report.mix_profiles, [])
    else:
        lines.append("  not measured")
    lines += report.mix_notes
    lines.append("")
    return lines


def save(report: Report, text: str) -> None:
    report.options.data_dir.mkdir(parents=True, exist_ok=True)
    (report.options.data_dir / "last-run.txt").write_text(text)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    tool = "builtin"
    if options.loadgen in ("auto", "wrk") and load.wrk_path():
        tool = "wrk"
    elif options.loadgen == "wrk":
        raise SystemExit("bench: --loadgen wrk, but wrk is not installed")
    report = Report(options, "wrk (1 thread)" if tool == "wrk" else "built-in (asyncio, own process)")
    say(f"baseline ({', '.join(options.queries)}) with {report.tool}")
    run_server(report, options, tool, "baseline", dict(os.environ), None, "baseline", None, [])
    for backend in options.backends:
        run_backend(report, options, tool, backend)
    if options.authorization:
        say("authorization decisions")
        report.authorization = authorization(options)
    else:
        report.authorization = "  not measured (--skip-authorization)"
    if options.visibility:
        from bench import visibility

        say("visibility: list cost vs applications the user cannot see")
        report.visibility = visibility.run(options)
    else:
        report.visibility = (
            "Listing what a user may see (bench/visibility.py):\n  not measured (--skip-visibility)"
        )
    # Baseline rows first per operation, then the backends, in the order of the queries.
    order = {OPERATIONS[k].title: n for n, k in enumerate(options.queries)}
    servers = ("baseline", *options.backends)
    report.rows.sort(key=lambda r: (order[r.operation], servers.index(r.server)))
    text = render(report)
    print(text, end="")
    save(report, text)
    return 0
