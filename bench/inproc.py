"""Greenlight in this process, called as an ASGI app without any network: to count the SQL
statements each operation sends, and to profile where a request's time goes.

    python -m bench.inproc count SPEC.json      -> {"select": 5.0, ...} on stdout
    python -m bench.inproc profile SPEC.json    -> a report on stdout

Statements are counted at the database driver, so BEGIN, COMMIT and SAVEPOINT count
like any other statement: on SQLite every statement Greenlight's connection is asked to
run (`_hook_sqlite`); on PostgreSQL an asyncpg query logger on every
connection sees every statement sent (the reset query asyncpg's pool sends when a
connection goes back to it is counted apart). Each operation is sent a few times first (the
first request also loads the role bindings), then counted over several requests.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.queries import OPERATIONS
from bench.world import World

WARM = 3
COUNTED = 5


# What asyncpg's pool sends on every release of a connection (Pool's default reset): a
# round trip of its own, counted apart from the statements Greenlight asks for.
POOL_RESET = "SELECT pg_advisory_unlock_all()"


class StatementCounter:
    def __init__(self) -> None:
        self.count = 0
        self.resets = 0
        self.statements: list[str] = []
        self.keep = False
        self.width: int | None = 160  # characters kept of each statement; None: all

    def reset(self) -> None:
        self.count = self.resets = 0
        self.statements = []

    def __call__(self, statement) -> None:
        text = str(getattr(statement, "query", statement))
        if text.lstrip().startswith(POOL_RESET):
            self.resets += 1
            return
        self.count += 1
        if self.keep:
            self.statements.append(text if self.width is None else text[: self.width])


def _hook_postgres(counter: StatementCounter) -> None:
    """Every asyncpg connection made from now on reports its statements to `counter`."""
    import asyncpg.connection

    original = asyncpg.connection.Connection.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.add_query_logger(counter)

    asyncpg.connection.Connection.__init__ = init


async def _hook_sqlite(counter: StatementCounter) -> None:
    """Every statement Greenlight's SQLite connection is asked to run reports to `counter`
    (greenlight.sqlite runs them all through the connection's `_execute`): an INSERT and
    the last_insert_rowid() read with it count once, as the INSERT ... RETURNING they stand
    for on PostgreSQL. SQLite's own trace callback would also report each write again for
    every trigger it fires."""
    from tortoise import connections

    connection = connections.get("default")._connection  # connected by the warm-up requests
    sqlite = connection._conn
    run = type(connection)._execute.__get__(connection)

    async def counted(fn, *args, **kwargs):
        if args and isinstance(args[0], str):
            counter(args[0])
        elif fn in (sqlite.commit, sqlite.rollback) and sqlite.in_transaction:
            counter("COMMIT" if fn == sqlite.commit else "ROLLBACK")
        return await run(fn, *args, **kwargs)

    connection._execute = counted


def _unhook_sqlite() -> None:
    from tortoise import connections

    connections.get("default")._connection.__dict__.pop("_execute", None)


class App:
    """Greenlight's ASGI app, called directly."""

    def __init__(self, database_url: str, **settings) -> None:
        self.database_url = database_url
        self.settings = settings  # further Settings fields, e.g. max_query_depth=20
        self.app = None

    async def start(self) -> None:
        from greenlight import db
        from greenlight.app import create_app
        from greenlight.config import Settings

        await db.connect(self.database_url)
        settings = Settings(
            database_url=self.database_url, background_jobs=False, mutations_per_minute=0, **self.settings
        )
        self.app = create_app(settings, manage_database=False)

    async def stop(self) -> None:
        from greenlight import db

        await db.close()

    async def post(self, body: bytes, token: str) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"authorization", f"Bearer {token}".encode()),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


def _bodies(world: World, key: str, ids: list[int], n: int) -> list[bytes]:
    operation = OPERATIONS[key]
    if operation.mutation:
        if len(ids) < n:
            raise RuntimeError(f"bench: {n} approvable requests needed in-process, {len(ids)} reserved")
        return [operation.body(world, ids.pop()) for _ in range(n)]
    return [operation.body(world)] * n


async def _checked(app: App, body: bytes, token: str) -> None:
    status, answer = await app.post(body, token)
    if status != 200 or b'"errors"' in answer:
        raise RuntimeError(f"bench: Greenlight answered {status}: {answer[:500].decode(errors='replace')}")


async def count(spec: dict) -> dict:
    world = World(**spec["world"])
    ids = list(spec["ids"])
    counter = StatementCounter()
    postgres = spec["backend"] == "postgres"
    if postgres:
        _hook_postgres(counter)
    app = App(spec["database_url"])
    await app.start()
    result: dict[str, float] = {}
    resets: dict[str, float] = {}
    samples: dict[str, list[str]] = {}
    try:
        hooked = False
        for key in spec["operations"]:
            for body in _bodies(world, key, ids, WARM):
                await _checked(app, body, world.token)
            if not postgres and not hooked:
                await _hook_sqlite(counter)
                hooked = True
            await asyncio.sleep(0.05)  # asyncpg reports statements with call_soon
            counter.reset()
            counter.keep = True
            bodies = _bodies(world, key, ids, COUNTED)
            for n, body in enumerate(bodies):
                await _checked(app, body, world.token)
                if n == 0:
                    await asyncio.sleep(0.01)
                    samples[key] = list(counter.statements)
                    counter.keep = False
            await asyncio.sleep(0.05)
            result[key] = counter.count / COUNTED
            resets[key] = counter.resets / COUNTED
    finally:
        await app.stop()
    return {"per_request": result, "pool_resets": resets, "statements": samples}


CATEGORIES = (
    ("waiting for I/O (DB thread or socket)", ("select.epoll", "selectors.py", "{method 'poll'")),
    ("SQLite driver (aiosqlite, main-thread side)", ("aiosqlite", "sqlite3")),
    ("asyncpg driver", ("asyncpg",)),
    ("Tortoise ORM + pypika (building SQL, rows to models)", ("tortoise", "pypika", "iso8601")),
    ("strawberry (resolvers, types, extensions)", ("strawberry",)),
    ("graphql-core (parse, validate, execute)", ("graphql",)),
    ("casbin", ("casbin",)),
    ("greenlight code", ("greenlight",)),
    ("starlette", ("starlette",)),
    ("json", ("json",)),
    ("logging", ("logging",)),
    ("prometheus / opentelemetry", ("prometheus", "opentelemetry")),
    ("asyncio (tasks, futures, event loop)", ("asyncio", "contextvars", "uvloop")),
)


def _category(filename: str, name: str) -> str | None:
    text = f"{filename}:{name}"
    for title, needles in CATEGORIES:
        if any(n in text for n in needles):
            return title
    return None


def package_shares(stats: pstats.Stats) -> dict[str, float]:
    """Own time by package; a C function's time goes to the package of its callers."""
    shares: dict[str, float] = defaultdict(float)
    for (filename, _line, name), (_cc, _nc, tottime, _ct, callers) in stats.stats.items():
        category = _category(filename, name)
        stdlib = "/lib/python3" in filename and "site-packages" not in filename
        if category is None and (filename == "~" or stdlib) and callers:
            spread = sum(entry[2] for entry in callers.values()) or 1.0
            for (caller_file, _l, caller_name), entry in callers.items():
                shares[_category(caller_file, caller_name) or "other"] += tottime * entry[2] / spread
            continue
        shares[category or "other"] += tottime
    total = sum(shares.values()) or 1.0
    return {title: seconds / total for title, seconds in shares.items()}


def top_functions(stats: pstats.Stats, requests: int, count: int = 10) -> list[str]:
    rows = []
    for (filename, line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        short = filename
        for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
            short = short.split(marker, 1)[-1]
        rows.append((tottime, f"{short}:{line}({name})"))
    rows.sort(reverse=True)
    return [f"{tottime / requests * 1000:7.3f} ms  {where}" for tottime, where in rows[:count]]


class Phases:
    """Wall time per request in the phases of a Greenlight request, measured by wrapping
    the functions that run them (requests are sent one at a time, so nothing overlaps
    except a request's own concurrent database calls, which are merged)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.db_spans: list[tuple[float, float]] = []
        self._patched: list[tuple[object, str, object]] = []

    def _wrap_async(self, owner, attr: str, phase: str) -> None:
        original = getattr(owner, attr)
        totals = self.totals

        async def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                totals[phase] += time.perf_counter() - started

        setattr(owner, attr, wrapper)
        self._patched.append((owner, attr, original))

    def _wrap_db(self, owner, attr: str) -> None:
        original = owner.__dict__.get(attr)
        if original is None:
            return
        spans = self.db_spans

        async def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                spans.append((started, time.perf_counter()))

        setattr(owner, attr, wrapper)
        self._patched.append((owner, attr, original))

    def _wrap_sync(self, owner, attr: str, phase: str) -> None:
        original = getattr(owner, attr)
        totals = self.totals

        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[phase] += time.perf_counter() - started

        setattr(owner, attr, wrapper)
        self._patched.append((owner, attr, original))

    def install(self) -> None:
        from strawberry.http.base import BaseView
        from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
        from tortoise.backends.sqlite.client import SqliteClient, SqliteTransactionWrapper

        from greenlight.api import GreenlightSchema
        from greenlight.app import GreenlightGraphQL

        self._wrap_async(GreenlightGraphQL, "get_context", "authentication (token, user, policy version)")
        self._wrap_async(GreenlightSchema, "execute", "GraphQL execute (parse, validate, resolvers)")
        self._wrap_sync(BaseView, "encode_json", "JSON encoding of the answer")
        for owner in (SqliteClient, SqliteTransactionWrapper, AsyncpgDBClient, TransactionWrapper):
            for attr in (
                "execute_query",
                "execute_query_dict",
                "execute_insert",
                "execute_many",
                "begin",
                "commit",
                "rollback",
                "savepoint",
                "release_savepoint",
            ):
                self._wrap_db(owner, attr)

    def uninstall(self) -> None:
        for owner, attr, original in reversed(self._patched):
            setattr(owner, attr, original)
        self._patched = []

    def reset(self) -> None:
        self.totals.clear()
        self.db_spans.clear()

    def db_seconds(self) -> float:
        merged = 0.0
        end = 0.0
        for started, stopped in sorted(self.db_spans):
            if stopped <= end:
                continue
            merged += stopped - max(started, end)
            end = stopped
        return merged


async def profile(spec: dict) -> str:
    world = World(**spec["world"])
    ids = list(spec["ids"])
    n = spec["requests"]
    app = App(spec["database_url"])
    await app.start()
    phases = Phases()
    report = io.StringIO()
    try:
        for key in spec["operations"]:
            operation = OPERATIONS[key]
            for body in _bodies(world, key, ids, WARM):
                await _checked(app, body, world.token)
            count = n
            # Timed without the profiler: the phases of a request.
            phases.install()
            phases.reset()
            started = time.perf_counter()
            for body in _bodies(world, key, ids, count):
                await _checked(app, body, world.token)
            wall = time.perf_counter() - started
            phases.uninstall()
            report.write(f"{operation.title} ({spec['backend']}): {wall / count * 1000:.2f} ms per request ")
            report.write(f"in-process, {count} requests one at a time\n")
            accounted = 0.0
            for phase, seconds in phases.totals.items():
                accounted += seconds
                report.write(f"  {seconds / count * 1000:7.2f} ms  {seconds / wall * 100:4.0f}%  {phase}\n")
            report.write(
                f"  {(wall - accounted) / count * 1000:7.2f} ms  {(wall - accounted) / wall * 100:4.0f}%  "
                "the rest (ASGI, middleware, request parsing, logging, metrics)\n"
            )
            db = phases.db_seconds()
            report.write(
                f"  of all that, {db / count * 1000:.2f} ms ({db / wall * 100:.0f}%) with at least one "
                "database call in flight (ORM execution, driver, the database; Python work of other "
                "resolvers may run meanwhile)\n"
            )
            # Profiled: own time by package.
            profiler = cProfile.Profile()
            bodies = _bodies(world, key, ids, count)
            profiler.enable()
            for body in bodies:
                await _checked(app, body, world.token)
            profiler.disable()
            stats = pstats.Stats(profiler)
            report.write("  own time by package (cProfile; C functions counted with their callers):\n")
            for title, share in sorted(package_shares(stats).items(), key=lambda kv: -kv[1]):
                if share >= 0.01:
                    report.write(f"    {share * 100:5.1f}%  {title}\n")
            report.write("  top functions by own time, per request (under the profiler):\n")
            for line in top_functions(stats, count):
                report.write(f"    {line}\n")
    finally:
        await app.stop()
    return report.getvalue()


async def mix(spec: dict) -> dict:
    """The realistic mix's operations (bench/mix.py), as its users send them: statements per
    request averaged over COUNTED requests of different users after WARM, then `profiled`
    requests under cProfile, own time by package. A mutation's bodies are each used once."""
    from bench.mix import TOP

    app = App(spec["database_url"])
    counter = StatementCounter()
    postgres = spec["backend"] == "postgres"
    if postgres:
        _hook_postgres(counter)
    await app.start()
    per_request: dict[str, float] = {}
    profiles: dict[str, dict] = {}
    hooked = False
    try:
        for key, variants in spec["variants"].items():
            queue = list(variants)
            mutation = key in ("approve", "request")

            def take(n: int, queue=queue, mutation=mutation) -> list[list[str]]:
                if mutation:
                    taken = queue[:n]
                    del queue[:n]
                    return taken
                return [queue[i % len(queue)] for i in range(n)]

            for token, body in take(WARM):
                await _checked(app, body.encode(), token)
            if not postgres and not hooked:
                await _hook_sqlite(counter)
                hooked = True
            await asyncio.sleep(0.05)
            counter.reset()
            for token, body in take(COUNTED):
                await _checked(app, body.encode(), token)
            await asyncio.sleep(0.05)
            per_request[key] = counter.count / COUNTED
            chosen = take(spec["profiled"])
            profiler = cProfile.Profile()
            started = time.perf_counter()
            profiler.enable()
            for token, body in chosen:
                await _checked(app, body.encode(), token)
            profiler.disable()
            wall = time.perf_counter() - started
            shares = sorted(package_shares(pstats.Stats(profiler)).items(), key=lambda kv: -kv[1])
            profiles[key] = {"top": shares[:TOP], "ms": wall / max(1, len(chosen)) * 1000}
    finally:
        await app.stop()
    return {"per_request": per_request, "profile": profiles}


class NaiveApp(App):
    """bench/naive's GraphQL app, called directly (its lifespan's work done by start)."""

    async def start(self) -> None:
        from tortoise import Tortoise

        from bench.naive.app import NaiveGraphQL, schema, tortoise_config

        await Tortoise.init(config=tortoise_config(self.database_url), _enable_global_fallback=True)
        self.app = NaiveGraphQL(schema)

    async def stop(self) -> None:
        from tortoise import Tortoise

        await Tortoise.close_connections()


async def _hook_naive_sqlite(counter: StatementCounter) -> None:
    """Every statement the naive server's SQLite connection runs (sqlite3's trace callback:
    BEGIN and COMMIT count; a write would count again per trigger it fires)."""
    from tortoise import Tortoise

    connection = Tortoise.get_connection("default")._connection  # aiosqlite's, on its own thread
    await connection._execute(connection._conn.set_trace_callback, counter)


async def naive_count(spec: dict) -> dict:
    """Statements per request of the naive server for the mix's reads (and approveRequest),
    as `mix` counts Greenlight's."""
    app = NaiveApp(spec["database_url"])
    counter = StatementCounter()
    postgres = spec["backend"] == "postgres"
    if postgres:
        _hook_postgres(counter)
    await app.start()
    per_request: dict[str, float] = {}
    try:
        for key, variants in spec["variants"].items():
            queue = list(variants)
            for token, body in queue[:WARM]:
                await _checked(app, body.encode(), token)
            if not postgres:
                await _hook_naive_sqlite(counter)
            await asyncio.sleep(0.05)
            counter.reset()
            chosen = (
                queue[WARM : WARM + COUNTED]
                if key == "approve"
                else [queue[i % len(queue)] for i in range(COUNTED)]
            )
            for token, body in chosen:
                await _checked(app, body.encode(), token)
            await asyncio.sleep(0.05)
            per_request[key] = counter.count / len(chosen)
    finally:
        await app.stop()
    return {"per_request": per_request}


def main(argv: list[str]) -> None:
    mode, path = argv
    spec = json.loads(Path(path).read_text())
    os.environ.setdefault("GREENLIGHT_ENV_FILE", "")
    from greenlight.observability import logs

    # As `greenlight serve` logs (one JSON line per request), but to nowhere.
    logs.setup("json", os.environ.get("GREENLIGHT_LOG_LEVEL", "INFO"), stream=open(os.devnull, "w"))  # noqa: SIM115
    if mode == "count":
        print(json.dumps(asyncio.run(count(spec))))
    elif mode == "profile":
        print(asyncio.run(profile(spec)))
    elif mode == "mix":
        print(json.dumps(asyncio.run(mix(spec))))
    elif mode == "naive-count":
        print(json.dumps(asyncio.run(naive_count(spec))))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
