"""The realistic mix, `make bench`'s headline (see bench/README.md): many users, each with
its own token and role bindings, so each sees its own applications and pipelines, each
asking its own questions, while writes flow in the background through the API.

Per operation, the servers take turns in interleaved rounds (baseline, Greenlight, naive,
baseline, Greenlight, naive, ...), each round driven by the same clients with the same
requests for the same time, so a slow minute of the machine falls on all of them; the
ratio is taken round by round and reported as min / median / max.

The background writer (a thread of the benchmark's process) sends WRITES_PER_SECOND
mutations to the server being measured: to Greenlight, CI registering an image on one of
the mix's applications, CI requesting approval of it, an approver approving it (three
real mutations, from users other than the readers); to the baseline, its trivial
requestApproval and approveRequest at the same rate. The naive server has no
registerImage, so during its rounds the writes go to Greenlight (same database, another
process).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import statistics
import threading
import time
from dataclasses import dataclass, field

import httpx

from bench import load
from bench.config import Options
from bench.queries import (
    APPROVAL_PENDING_MINE,
    APPROVE_REQUEST,
    REGISTER_IMAGE,
    REQUEST_APPROVAL,
    SELECT_IMAGE,
    encode,
)
from bench.world import PAGE, MixWorld

WRITES_PER_SECOND = 2.5
NAIVE_TARGET = 3.0  # the issue: Greenlight at least 3x the naive implementation
PROFILED = 30  # requests per operation under cProfile, in-process
TOP = 5  # packages shown per operation
MIN_ANSWERS = 3  # a round lasts until at least this many answers per client are counted


@dataclass(frozen=True)
class MixOperation:
    key: str
    title: str
    target: float  # least ratio to the baseline the issue asks for
    mutation: bool = False
    naive: bool = True  # the naive server answers it too


MIX_OPERATIONS = {
    "select": MixOperation("select", f"Select Image {PAGE}", 1.0),
    "pending": MixOperation("pending", f"Approval pending {PAGE}", 1.0),
    "approve": MixOperation("approve", "approveRequest", 0.4, mutation=True),
    "request": MixOperation("request", "requestApproval", 0.4, mutation=True, naive=False),
}


def read_variants(key: str, mix: MixWorld) -> list[list[str]]:
    """One (token, body) per user: its own Select Image, its own Approval pending."""
    out = []
    for user in mix.users:
        if key == "select":
            body = encode(SELECT_IMAGE, {"pipelineId": f"Pipeline:{user.select_pipeline_id}"})
        else:
            body = encode(APPROVAL_PENDING_MINE, {"first": PAGE})
        out.append([user.token, body.decode()])
    return out


def approve_variant(mix: MixWorld, entry: tuple[int, int]) -> list[str]:
    user, request_id = entry
    return [mix.users[user].token, encode(APPROVE_REQUEST, {"id": f"ApprovalRequest:{request_id}"}).decode()]


def request_variant(mix: MixWorld, entry: tuple[int, int, int]) -> list[str]:
    user, pipeline_id, image_id = entry
    variables = {"pipelineId": f"Pipeline:{pipeline_id}", "imageId": f"Image:{image_id}"}
    return [mix.users[user].token, encode(REQUEST_APPROVAL, variables).decode()]


class Supply:
    """The mutations' bodies, each used once (shared by the servers that change the data)."""

    def __init__(self, mix: MixWorld) -> None:
        self.mix = mix
        self.approvals = list(mix.approvals)
        self.requests = list(mix.requests)

    def reserve(self, key: str, n: int) -> list[list[str]]:
        """The last `n` of a supply, taken out of it (for the in-process count and profile)."""
        if key == "approve":
            taken, self.approvals = self.approvals[-n:], self.approvals[:-n]
            return [approve_variant(self.mix, e) for e in taken]
        taken, self.requests = self.requests[-n:], self.requests[:-n]
        return [request_variant(self.mix, e) for e in taken]

    def variants(self, key: str) -> list[list[str]]:
        if key == "approve":
            return [approve_variant(self.mix, e) for e in self.approvals]
        return [request_variant(self.mix, e) for e in self.requests]

    def used(self, key: str, n: int) -> None:
        if key == "approve":
            self.approvals = self.approvals[n:]
        else:
            self.requests = self.requests[n:]


# The background writer


class Writer(threading.Thread):
    """WRITES_PER_SECOND mutations to whichever server `aim` names, until `stop`."""

    def __init__(self, mix: MixWorld, rate: float = WRITES_PER_SECOND) -> None:
        super().__init__(daemon=True)
        self.mix = mix
        self.interval = 1.0 / rate if rate > 0 else None
        self.port: int | None = None
        self.real = False  # Greenlight (real mutations) or the baseline (trivial ones)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.ok = self.errors = 0
        self.first_error: str | None = None
        self.seconds = 0.0
        self.steps = itertools.count()
        self.targets = itertools.cycle(mix.targets)
        self.pending: tuple[str, str] | None = None  # (mutation, body) to send next
        self.serial = itertools.count()

    def aim(self, port: int | None, real: bool) -> None:
        with self.lock:
            self.port, self.real = port, real
            self.pending = None

    def counts(self) -> tuple[int, int, float]:
        with self.lock:
            return self.ok, self.errors, self.seconds

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)

    def _post(self, client: httpx.Client, port: int, token: str, body: bytes) -> dict | None:
        try:
            response = client.post(
                f"http://127.0.0.1:{port}/graphql",
                content=body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
                timeout=30,
            )
            answer = response.json()
        except (httpx.HTTPError, ValueError) as error:
            answer = {"errors": [str(error)]}
        with self.lock:
            if answer.get("errors") or not answer.get("data"):
                self.errors += 1
                self.first_error = self.first_error or json.dumps(answer)[:200]
                return None
            self.ok += 1
        return answer["data"]

    def _real(self, client: httpx.Client, port: int) -> None:
        """One step of register -> request -> approve, on the mix's applications."""
        mix = self.mix
        if self.pending is None:
            application, repository, pipeline_id = next(self.targets)
            n = next(self.serial)
            digest = (
                "sha256:" + hashlib.sha256(f"writer-{os.getpid()}-{time.time()}-{n}".encode()).hexdigest()
            )
            variables = {
                "application": application,
                "repository": repository,
                "tag": f"9.{n}.{os.getpid()}",
                "digest": digest,
            }
            data = self._post(client, port, mix.ci_token, encode(REGISTER_IMAGE, variables))
            if data:
                image = data["registerImage"]["id"]
                body = encode(REQUEST_APPROVAL, {"pipelineId": f"Pipeline:{pipeline_id}", "imageId": image})
                self.pending = ("request", body)
            return
        kind, body = self.pending
        self.pending = None
        if kind == "request":
            data = self._post(client, port, mix.ci_token, body)
            if data:
                self.pending = ("approve", encode(APPROVE_REQUEST, {"id": data["requestApproval"]["id"]}))
        else:
            self._post(client, port, mix.approver_token, body)

    def _trivial(self, client: httpx.Client, port: int) -> None:
        n = next(self.steps)
        if n % 2:
            body = encode(APPROVE_REQUEST, {"id": "ApprovalRequest:1"})
        else:
            body = encode(REQUEST_APPROVAL, {"pipelineId": "Pipeline:1", "imageId": "Image:1"})
        self._post(client, port, "baseline", body)

    def run(self) -> None:
        if self.interval is None:
            return
        started = time.perf_counter()
        with httpx.Client() as client:
            tick = time.perf_counter()
            while not self.stopped.is_set():
                with self.lock:
                    port, real = self.port, self.real
                if port is not None:
                    if real:
                        self._real(client, port)
                    else:
                        self._trivial(client, port)
                tick += self.interval
                self.stopped.wait(max(0.0, tick - time.perf_counter()))
        self.seconds = time.perf_counter() - started


# Rounds


@dataclass
class Round:
    number: int  # 1, 2, ...: the servers' rounds of the same number ran one after the other
    result: load.Result
    writes_ok: int = 0
    writes_failed: int = 0
    writes_seconds: float = 0.0


@dataclass
class MixRow:
    operation: str  # MixOperation.key
    backend: str
    server: str  # baseline, greenlight, naive
    rounds: list[Round] = field(default_factory=list)
    statements: float | None = None
    note: str = ""

    def median(self, attribute: str) -> float:
        """Over the rounds; latencies over the rounds that had answers."""
        values = [
            getattr(r.result, attribute) for r in self.rounds if r.result.requests or attribute == "rps"
        ]
        return statistics.median(values) if values else float("nan")

    @property
    def errors(self) -> int:
        return sum(r.result.errors for r in self.rounds)

    @property
    def first_error(self) -> str | None:
        return next((r.result.first_error for r in self.rounds if r.result.first_error), None)


def ratios(mine: MixRow, other: MixRow) -> list[float]:
    """Round by round: requests/s of `mine` over `other`'s in the same round."""
    theirs = {r.number: r for r in other.rounds}
    out = []
    for a in mine.rounds:
        b = theirs.get(a.number)
        if b is not None and b.result.rps > 0:
            out.append(a.result.rps / b.result.rps)
    return out


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}x"


def drive_round(
    port: int, options: Options, variants: list[list[str]], seconds: float, cycle: bool
) -> load.Result:
    spec = load.Spec(
        port=port,
        connections=options.connections,
        duration=seconds,
        token="",
        variants=variants,
        cycle=cycle,
        to_last_answer=True,
        min_answers=MIN_ANSWERS * options.connections,
    )
    return load.builtin(spec)


def run_operation(
    key: str,
    options: Options,
    mix: MixWorld,
    supply: Supply,
    ports: dict[str, int],
    writer: Writer,
    backend: str,
) -> list[MixRow]:
    """`options.mix_rounds` interleaved rounds of `key` on every server in `ports`."""
    operation = MIX_OPERATIONS[key]
    servers = [
        s for s in ("baseline", "greenlight", "naive") if s in ports and (s != "naive" or operation.naive)
    ]
    rows = {s: MixRow(key, backend, s) for s in servers}
    reads = None if operation.mutation else read_variants(key, mix)
    for n in range(options.mix_rounds + 1):  # round 0: the warm-up, not reported
        seconds = options.warmup if n == 0 else options.mix_duration
        if seconds <= 0:
            continue
        for server in servers:
            port = ports[server]
            if server == "baseline":
                variants, cycle = (reads if reads else _trivial(key)), True
            elif reads:
                variants, cycle = reads, True
            else:
                variants, cycle = supply.variants(key), False
                if not variants:
                    rows[server].note = "ran out of its supply"
                    continue
            writer.aim(ports["greenlight"] if server == "naive" else port, server != "baseline")
            before = writer.counts()
            started = time.perf_counter()
            result = drive_round(port, options, variants, seconds, cycle)
            elapsed = time.perf_counter() - started
            after = writer.counts()
            writer.aim(None, False)
            if not reads and server != "baseline":
                supply.used(key, result.sent)
                if result.exhausted:
                    rows[server].note = f"ran out of its supply after {result.seconds:.1f} s"
            if n > 0:
                rows[server].rounds.append(
                    Round(n, result, after[0] - before[0], after[1] - before[1], elapsed)
                )
    return [rows[s] for s in servers]


def _trivial(key: str) -> list[list[str]]:
    if key == "approve":
        return [["baseline", encode(APPROVE_REQUEST, {"id": "ApprovalRequest:1"}).decode()]]
    body = encode(REQUEST_APPROVAL, {"pipelineId": "Pipeline:1", "imageId": "Image:1"})
    return [["baseline", body.decode()]]


def render(rows: list[MixRow], profiles: dict[str, dict], writer_note: list[str]) -> list[str]:
    header = (
        f"{'operation':<20} {'db':<9} {'server':<10} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'vs baseline min/med/max':>24} {'target':>7} {'':<4} {'vs naive min/med/max':>22} "
        f"{'target':>7} {'':<4} {'SQL/req':>7} {'errors':>6}"
    )
    lines = [header, "-" * len(header)]
    index = {(r.operation, r.backend, r.server): r for r in rows}
    for row in rows:
        operation = MIX_OPERATIONS[row.operation]
        base = vs_base = vs_naive = verdict_b = verdict_n = target_b = target_n = ""
        if row.server == "greenlight":
            base = index.get((row.operation, row.backend, "baseline"))
            naive = index.get((row.operation, row.backend, "naive"))
            if base:
                values = ratios(row, base)
                vs_base = spread(values)
                target_b = f">={operation.target:.1f}x"
                if values:
                    verdict_b = (
                        "ok" if statistics.median(values) >= operation.target and not row.errors else "MISS"
                    )
            if naive:
                values = ratios(row, naive)
                vs_naive = spread(values)
                target_n = f">={NAIVE_TARGET:.1f}x"
                if values:
                    verdict_n = (
                        "ok" if statistics.median(values) >= NAIVE_TARGET and not row.errors else "MISS"
                    )
        statements = "-" if row.statements is None else f"{row.statements:g}"
        note = row.note
        if row.first_error:
            note = (note + "; " if note else "") + f"first error: {row.first_error[:120]}"
        lines.append(
            f"{operation.title:<20} {row.backend:<9} {row.server:<10} {row.median('rps'):>8,.1f} "
            f"{row.median('p50_ms'):>7.2f} {row.median('p99_ms'):>7.2f} {vs_base or '-':>24} "
            f"{target_b or '-':>7} {verdict_b:<4} {vs_naive or '-':>22} {target_n or '-':>7} {verdict_n:<4} "
            f"{statements:>7} {row.errors:>6}" + (f"   {note}" if note else "")
        )
    lines.append("")
    lines.append(
        "req/s, p50, p99: the median over the rounds; vs baseline / vs naive: Greenlight's req/s over the "
        "other's in the same round, min / median / max over the rounds (the verdict on the median)."
    )
    lines += writer_note
    if profiles:
        lines.append("")
        lines.append(
            f"Where Greenlight's time goes in the mix (in-process, cProfile, {PROFILED} requests per operation "
            f"over the mix's users; own time, top {TOP} packages; more: python -m bench profile):"
        )
        for backend, by_operation in profiles.items():
            for key, entry in by_operation.items():
                shares = ", ".join(f"{title} {share * 100:.0f}%" for title, share in entry["top"])
                lines.append(
                    f"  {MIX_OPERATIONS[key].title} ({backend}, {entry['ms']:.1f} ms/req profiled): {shares}"
                )
    return lines


# One backend


def run_backend(
    options: Options, backend: str, url: str, world, env: dict[str, str]
) -> tuple[list, dict, list]:
    """The mix on one database: statements and profile in-process first, then the three
    servers up together and the interleaved rounds. Returns (rows, profile, notes)."""
    from bench.run import in_process, say, server, wait_ready

    mix = world.mix_world()
    supply = Supply(mix)
    keys = list(options.mix_queries)
    variants: dict[str, list[list[str]]] = {}
    from bench.inproc import COUNTED, WARM

    needed = WARM + COUNTED + PROFILED
    for key in keys:
        variants[key] = (
            supply.reserve(key, needed) if MIX_OPERATIONS[key].mutation else read_variants(key, mix)
        )
    say(f"{backend}: the mix, counting statements and profiling in-process")
    counted = json.loads(
        in_process("mix", backend, url, world, [], operations=keys, variants=variants, profiled=PROFILED)
    )
    naive_keys = [k for k in keys if MIX_OPERATIONS[k].naive]
    naive_counted: dict[str, float] = {}
    if naive_keys:
        naive_variants = {
            k: supply.reserve(k, WARM + COUNTED) if MIX_OPERATIONS[k].mutation else variants[k]
            for k in naive_keys
        }
        naive_counted = json.loads(
            in_process("naive-count", backend, url, world, [], operations=naive_keys, variants=naive_variants)
        )["per_request"]
    logs = options.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows: list[MixRow] = []
    notes: list[str] = []
    first = read_variants("select", mix)[0]
    writer = Writer(mix, options.mix_rate)
    paths = {name: logs / f"mix-{backend}-{name}.log" for name in ("baseline", "greenlight", "naive")}
    with (
        server("baseline", dict(os.environ), paths["baseline"]) as base_port,
        server("greenlight", env, paths["greenlight"]) as gl_port,
        server("naive", env, paths["naive"]) as naive_port,
    ):
        ports = {"baseline": base_port, "greenlight": gl_port, "naive": naive_port}
        for name, port in ports.items():
            wait_ready(port, first[1].encode(), first[0], paths[name])
        writer.start()
        try:
            for key in keys:
                say(f"{backend}: the mix, {MIX_OPERATIONS[key].title} ({options.mix_rounds} rounds)")
                found = run_operation(key, options, mix, supply, ports, writer, backend)
                for row in found:
                    if row.server == "greenlight":
                        row.statements = counted["per_request"].get(key)
                    elif row.server == "naive":
                        row.statements = naive_counted.get(key)
                rows += found
        finally:
            writer.stop()
    rates = []
    for name in ("baseline", "greenlight", "naive"):
        mine = [r for r in rows if r.server == name]
        seconds = sum(x.writes_seconds for r in mine for x in r.rounds)
        if seconds:
            done = sum(x.writes_ok for r in mine for x in r.rounds)
            failed = sum(x.writes_failed for r in mine for x in r.rounds)
            where = " (sent to Greenlight)" if name == "naive" else ""
            rates.append(
                f"{name} rounds {done / seconds:.1f}/s{where}" + (f", {failed} failed" if failed else "")
            )
    if rates:
        notes.append(f"{backend}: background writes during the measured rounds: " + "; ".join(rates))
    if writer.first_error:
        notes.append(f"{backend}: the background writer's first error: {writer.first_error}")
    if not options.keep_logs:
        for path in paths.values():
            path.unlink(missing_ok=True)
    return rows, counted["profile"], notes


def describe(world, options: Options) -> list[str]:
    mix = world.mix_world()
    views = {tuple(u.applications) for u in mix.users}
    return [
        f"  users: {len(mix.users)}, each with its own token and role bindings (image-approver on 2 "
        f"applications, build-and-deploy on one): {len(views)} different views; each asks its own "
        "Select Image (a pipeline of its home application) and its own Approval pending "
        f"(filter: PENDING, awaitingMyApproval, first: {PAGE}); approveRequest and requestApproval "
        "by the mix's users, each body used once",
        f"  writes in the background: {options.mix_rate:g}/s (Greenlight: CI registerImage, CI "
        "requestApproval, an approver's approveRequest; baseline: its trivial mutations)",
        f"  rounds: {options.mix_rounds} per operation, interleaved (baseline, greenlight, naive), "
        f"{options.mix_duration:g} s each after a {options.warmup:g} s warm-up round; "
        f"{options.connections} keep-alive clients, built-in load generator (a token per request)",
    ]
