"""Load generators: `wrk` when installed, else a built-in one.

Both keep a fixed number of keep-alive connections each with one request in flight for
a fixed time, and report requests/s, p50 and p99 latency and how many answers were not a
clean 200 without GraphQL `errors`.

The built-in one runs in a process of its own (`python -m bench.load SPEC.json`), on
uvloop when installed, with raw asyncio protocols and requests encoded up front, so it
spends a few percent of a core where the server under test spends all of one; it reports
its own CPU time so that can be checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

GRACE = 10.0  # seconds to wait for answers in flight when time is up


@dataclass
class Spec:
    port: int
    connections: int
    duration: float
    token: str
    body: str | None = None  # a fixed body, or:
    prefix: str = ""  # body = prefix + id + suffix, one id of `ids` per request
    suffix: str = ""
    ids: list[int] = field(default_factory=list)
    cycle: bool = False  # start the ids again when they run out (the baseline ignores them)
    # Or: one (token, body) per request, in turn (many users; consumed like ids unless
    # `cycle`); built-in generator only.
    variants: list[list[str]] = field(default_factory=list)
    # requests/s over the time to the last answer counted rather than the whole duration:
    # a server whose answers all come back together (many requests in flight, each
    # taking longer than a fraction of the run) would otherwise be charged for the
    # answers the deadline cut off (built-in generator only).
    to_last_answer: bool = False
    # Past the duration, keep sending until this many answers are counted (a server slower
    # than the duration still gets a figure; built-in generator only).
    min_answers: int = 0
    host: str = "127.0.0.1"
    path: str = "/graphql"


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    sent: int = 0  # requests sent (ids used), answered in time or not
    exhausted: bool = False  # the ids ran out before the time was up
    first_error: str | None = None
    cpu_share: float | None = None  # the load generator's CPU time / wall time
    tool: str = "builtin"

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def _percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


class _Run:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        head = (
            f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {spec.token}\r\n"
        ).encode()
        self.head = head
        self.fixed = None
        if spec.body is not None:
            body = spec.body.encode()
            self.fixed = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        self.prefix, self.suffix = spec.prefix.encode(), spec.suffix.encode()
        self.variants = [self._request(token, body.encode()) for token, body in spec.variants]
        self.ids = itertools.cycle(spec.ids) if spec.cycle else iter(spec.ids)
        self.deadline = 0.0
        self.started = 0.0
        self.latencies: list[float] = []
        self.errors = 0
        self.sent = 0
        self.exhausted_at: float | None = None
        self.last_answer = 0.0
        self.first_error: str | None = None
        self.in_flight = 0
        self.idle = asyncio.Event()

    def _request(self, token: str, body: bytes) -> bytes:
        spec = self.spec
        return (
            f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def over(self, at: float) -> bool:
        """Whether the run is over at `at`: the duration passed and enough answers counted."""
        return at > self.deadline and len(self.latencies) >= self.spec.min_answers

    def next_request(self) -> bytes | None:
        now = time.perf_counter()
        if self.over(now):
            return None
        if self.fixed is not None:
            self.sent += 1
            return self.fixed
        if self.variants:
            if self.sent >= len(self.variants) and not self.spec.cycle:
                if self.exhausted_at is None:
                    self.exhausted_at = now
                return None
            self.sent += 1
            return self.variants[(self.sent - 1) % len(self.variants)]
        request_id = next(self.ids, None)
        if request_id is None:
            if self.exhausted_at is None:
                self.exhausted_at = now
            return None
        self.sent += 1
        body = self.prefix + str(request_id).encode() + self.suffix
        return self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body

    def record(self, status: int, body: bytes, sent_at: float, answered_at: float) -> None:
        if self.over(answered_at):
            return
        self.latencies.append(answered_at - sent_at)
        self.last_answer = answered_at
        if status != 200 or b'"errors"' in body:
            self.errors += 1
            if self.first_error is None:
                self.first_error = f"HTTP {status}: {body[:300].decode(errors='replace')}"


class _Client(asyncio.Protocol):
    def __init__(self, run: _Run) -> None:
        self.run = run
        self.buffer = bytearray()
        self.need: int | None = None
        self.status = 0
        self.length = 0
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self) -> None:
        request = self.run.next_request()
        if request is None:
            self.busy = False
            self.run.in_flight -= 1
            if self.run.in_flight == 0:
                self.run.idle.set()
            return
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.need is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            self.status = int(head[9:12])
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                raise RuntimeError("bench: answer without Content-Length: " + head.decode(errors="replace"))
            start = at + 17
            stop = head.find(b"\r\n", start)
            self.length = int(head[start : stop if stop >= 0 else len(head)])
            self.need = end + 4 + self.length
        if len(self.buffer) < self.need:
            return
        answered_at = time.perf_counter()
        body = bytes(self.buffer[self.need - self.length : self.need])
        del self.buffer[: self.need]
        self.need = None
        self.run.record(self.status, body, self.sent_at, answered_at)
        self.send()

    def connection_lost(self, exc) -> None:
        if self.busy:
            self.busy = False
            self.run.in_flight -= 1
            if self.run.in_flight == 0:
                self.run.idle.set()


async def _drive(spec: Spec) -> Result:
    loop = asyncio.get_running_loop()
    run = _Run(spec)
    clients = []
    for _ in range(spec.connections):
        _, client = await loop.create_connection(lambda: _Client(run), spec.host, spec.port)
        clients.append(client)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    run.started = time.perf_counter()
    run.deadline = run.started + spec.duration
    run.in_flight = len(clients)
    for client in clients:
        client.busy = True
        client.send()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run.idle.wait(), spec.duration + GRACE + (60 if spec.min_answers else 0))
    wall = time.perf_counter() - run.started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for client in clients:
        client.transport.close()
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    seconds = spec.duration
    if run.exhausted_at is not None:
        seconds = max(run.last_answer, run.exhausted_at) - run.started
    elif spec.to_last_answer and run.latencies:
        seconds = run.last_answer - run.started
    latencies = sorted(run.latencies)
    return Result(
        requests=len(latencies),
        errors=run.errors,
        seconds=seconds,
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        sent=run.sent,
        exhausted=run.exhausted_at is not None,
        first_error=run.first_error,
        cpu_share=cpu / wall if wall > 0 else None,
    )


def builtin(spec: Spec) -> Result:
    """Runs the built-in load generator in a process of its own."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(asdict(spec), handle)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.load", handle.name],
            capture_output=True,
            text=True,
            timeout=spec.duration + GRACE + 60 + (60 if spec.min_answers else 0),
            cwd=Path(__file__).resolve().parent.parent,
        )
    finally:
        Path(handle.name).unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench: the load generator failed:\n{done.stderr}")
    return Result(**json.loads(done.stdout.strip().splitlines()[-1]))


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _lua_string(text: str) -> str:
    level = "="
    while f"]{level}]" in text:
        level += "="
    return f"[{level}[{text}]{level}]"


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {authorization}
errors = 0
first_error = ""
local prefix = {prefix}
local suffix = {suffix}
local ids = {{{ids}}}
local next_id = 1
sent = 0
{fixed}
{request}
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then
    errors = errors + 1
    if first_error == "" then first_error = string.sub(body, 1, 200) end
  end
end

local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local errs, used, first = 0, 0, ""
  for _, t in ipairs(threads) do
    errs = errs + t:get("errors")
    used = used + t:get("sent")
    if first == "" then first = t:get("first_error") end
  end
  io.write("WRKERR " .. string.gsub(first, "[\\r\\n]", " ") .. "\\n")
  local status = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    'WRKJSON {{"requests": %d, "duration_us": %d, "errors": %d, "transport_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d, "sent": %d}}\\n',
    summary.requests, summary.duration, errs, status,
    latency:percentile(50), latency:percentile(99), used))
end
"""

WRK_REQUEST = """
request = function()
  local id = ids[next_id]
  if id == nil then
    next_id = 1
    id = ids[1]
  end
  next_id = next_id + 1
  sent = sent + 1
  return wrk.format(nil, nil, nil, prefix .. id .. suffix)
end
"""


def wrk(spec: Spec) -> Result:
    """Runs wrk (one thread: the server under test needs the other core)."""
    if spec.variants:
        raise ValueError("bench: wrk is not given per-request tokens; use the built-in generator")
    fixed = request = ""
    if spec.body is not None:
        fixed = f"wrk.body = {_lua_string(spec.body)}"
    else:
        request = WRK_REQUEST
    script = WRK_SCRIPT.format(
        authorization=_lua_string(f"Bearer {spec.token}"),
        prefix=_lua_string(spec.prefix),
        suffix=_lua_string(spec.suffix),
        ids=",".join(map(str, spec.ids)),
        fixed=fixed,
        request=request,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    started = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            [
                wrk_path() or "wrk",
                "-t1",
                f"-c{spec.connections}",
                f"-d{max(1, round(spec.duration))}s",
                "--timeout",
                "30s",
                "-s",
                handle.name,
                f"http://{spec.host}:{spec.port}{spec.path}",
            ],
            capture_output=True,
            text=True,
            timeout=spec.duration + GRACE + 60,
        )
    finally:
        Path(handle.name).unlink(missing_ok=True)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"bench: wrk failed:\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    first_error = next((ln[7:] for ln in done.stdout.splitlines() if ln.startswith("WRKERR ")), "")
    seconds = data["duration_us"] / 1e6
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    errors = data["errors"] + data["transport_errors"]
    return Result(
        requests=data["requests"],
        errors=errors,
        seconds=seconds,
        p50_ms=data["p50_us"] / 1000 if data["requests"] else float("nan"),
        p99_ms=data["p99_us"] / 1000 if data["requests"] else float("nan"),
        sent=data["sent"],
        exhausted=bool(spec.ids) and not spec.cycle and data["sent"] > len(spec.ids),
        first_error=(first_error.strip() or "transport errors") if errors else None,
        cpu_share=cpu / wall if wall > 0 else None,
        tool="wrk",
    )


def main(argv: list[str]) -> None:
    spec = Spec(**json.loads(Path(argv[0]).read_text()))
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    result = runner(_drive(spec))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main(sys.argv[1:])
