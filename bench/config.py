"""The benchmark's settings: world sizes and load, from flags or BENCH_* environment variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / ".data"
REPO_DIR = BENCH_DIR.parent

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Sizes:
    applications: int = 1000
    environments: int = 20
    images: int = 100_000
    requests: int = 50_000
    bindings: int = 100_000
    users: int = 10_000

    def key(self) -> str:
        return (
            f"a{self.applications}-e{self.environments}-i{self.images}-r{self.requests}"
            f"-b{self.bindings}-u{self.users}"
        )

    def check(self) -> None:
        if self.applications < 1 or self.environments < 2:
            raise SystemExit("bench: needs at least 1 application and 2 environments")
        if self.users < 10:
            raise SystemExit("bench: needs at least 10 users")
        if self.images < self.applications * 2:
            raise SystemExit("bench: needs at least 2 images per application")
        if self.requests < 110:
            raise SystemExit("bench: needs at least 110 approval requests (50 approved, 50 pending, more)")


SMALL = Sizes(applications=50, environments=5, images=5_000, requests=3_000, bindings=5_000, users=500)
TINY = Sizes(applications=3, environments=2, images=600, requests=400, bindings=200, users=30)


@dataclass(frozen=True)
class Options:
    sizes: Sizes
    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 16
    backends: tuple[str, ...] = ("sqlite", "postgres")
    queries: tuple[str, ...] = ("select", "pending", "approve")
    loadgen: str = "auto"  # auto (wrk when installed), wrk, builtin
    postgres_url: str = DEFAULT_POSTGRES_URL
    data_dir: Path = DATA_DIR
    keep_logs: bool = False
    authorization: bool = True
    visibility: bool = True  # bench/visibility.py's table
    invisible: tuple[int, int] = (10, 10_000)  # applications the user cannot see, the two worlds
    visibility_requests: int = 200  # timed requests per query and world
    mix: bool = True  # bench/mix.py's realistic mix (the headline)
    mix_rounds: int = 5  # interleaved rounds per operation and server
    mix_duration: float = 5.0  # seconds per round
    mix_rate: float = 2.5  # background writes per second
    mix_queries: tuple[str, ...] = ("select", "pending", "approve", "request")

    def describe(self) -> dict:
        return {**asdict(self), "sizes": asdict(self.sizes)}


QUERIES = ("select", "pending", "approve")
MIX_QUERIES = ("select", "pending", "approve", "request")
BACKENDS = ("sqlite", "postgres")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def _csv(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in items if v not in allowed]
    if unknown or not items:
        raise SystemExit(f"bench: {what} must be a comma-separated list of {', '.join(allowed)}")
    return items


def _pair(value: str) -> tuple[int, int]:
    try:
        few, many = (int(v.replace("_", "")) for v in value.split(","))
    except ValueError:
        raise SystemExit("bench: --invisible must be two counts, FEW,MANY (e.g. 10,10000)") from None
    if few < 0 or many < few:
        raise SystemExit("bench: --invisible FEW,MANY needs 0 <= FEW <= MANY")
    return few, many


def parse(argv: list[str] | None = None) -> Options:
    """Flags win over BENCH_* variables, which win over the defaults (BENCH_SMALL=1 or
    --small: a world of a few thousand rows and 3-second runs, for a quick look)."""
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--small", action="store_true", default=env.get("BENCH_SMALL", "") not in ("", "0"))
    parser.add_argument("--tiny", action="store_true", default=env.get("BENCH_TINY", "") not in ("", "0"))
    for field in ("applications", "environments", "images", "requests", "bindings", "users"):
        parser.add_argument(f"--{field}", type=int, default=None, help=f"(BENCH_{field.upper()})")
    parser.add_argument("--duration", type=float, default=None, help="seconds per query (BENCH_DURATION)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before each (BENCH_WARMUP)")
    parser.add_argument(
        "--connections", type=int, default=None, help="concurrent clients (BENCH_CONNECTIONS)"
    )
    parser.add_argument("--backends", default=env.get("BENCH_BACKENDS", ",".join(BACKENDS)))
    parser.add_argument("--queries", default=env.get("BENCH_QUERIES", ",".join(QUERIES)))
    parser.add_argument(
        "--loadgen", choices=("auto", "wrk", "builtin"), default=env.get("BENCH_LOADGEN", "auto")
    )
    parser.add_argument(
        "--postgres-url",
        default=env.get("BENCH_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
        help="a PostgreSQL server URL; the benchmark creates and drops its own database there",
    )
    parser.add_argument("--data-dir", default=env.get("BENCH_DATA_DIR") or str(DATA_DIR))
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs in the data dir")
    parser.add_argument(
        "--skip-authorization",
        action="store_true",
        default=env.get("BENCH_AUTHORIZATION", "1") in ("0", "false", "no"),
        help="leave out bench/authorization.py's figures (BENCH_AUTHORIZATION=0)",
    )
    parser.add_argument(
        "--skip-visibility",
        action="store_true",
        default=env.get("BENCH_VISIBILITY", "1") in ("0", "false", "no"),
        help="leave out bench/visibility.py's table (BENCH_VISIBILITY=0)",
    )
    parser.add_argument(
        "--invisible",
        default=env.get("BENCH_INVISIBLE") or None,
        help="FEW,MANY: applications the measuring user cannot see in the two worlds of "
        "bench/visibility.py (BENCH_INVISIBLE; default 10,10000)",
    )
    parser.add_argument(
        "--visibility-requests",
        type=int,
        default=None,
        help="timed requests per query and world in bench/visibility.py (BENCH_VISIBILITY_REQUESTS)",
    )
    parser.add_argument(
        "--skip-mix",
        action="store_true",
        default=env.get("BENCH_MIX", "1") in ("0", "false", "no"),
        help="leave out the realistic mix (BENCH_MIX=0)",
    )
    parser.add_argument("--mix-rounds", type=int, default=None, help="rounds per server (BENCH_MIX_ROUNDS)")
    parser.add_argument(
        "--mix-duration", type=float, default=None, help="seconds per round (BENCH_MIX_DURATION)"
    )
    parser.add_argument(
        "--mix-rate", type=float, default=None, help="background writes per second (BENCH_MIX_RATE, 2.5)"
    )
    parser.add_argument(
        "--mix-queries",
        default=env.get("BENCH_MIX_QUERIES", ",".join(MIX_QUERIES)),
        help="the mix's operations: select,pending,approve,request",
    )
    args = parser.parse_args(argv)

    if args.tiny:
        base, duration, warmup = TINY, 1.0, 0.3
        invisible, visibility_requests = (10, 100), 20
        mix_rounds, mix_duration = 2, 1.0
    elif args.small:
        base, duration, warmup = SMALL, 3.0, 1.0
        invisible, visibility_requests = (10, 10_000), 50
        mix_rounds, mix_duration = 3, 2.0
    else:
        base, duration, warmup = Sizes(), 10.0, 2.0
        invisible, visibility_requests = (10, 10_000), 200
        mix_rounds, mix_duration = 5, 5.0
    if args.invisible is not None:
        invisible = _pair(args.invisible)
    if args.visibility_requests is not None:
        visibility_requests = args.visibility_requests
    else:
        visibility_requests = _env_int("BENCH_VISIBILITY_REQUESTS", visibility_requests)
    if visibility_requests < 1:
        raise SystemExit("bench: --visibility-requests must be at least 1")
    sizes = replace(
        base,
        **{
            field: getattr(args, field)
            if getattr(args, field) is not None
            else _env_int(f"BENCH_{field.upper()}", getattr(base, field))
            for field in ("applications", "environments", "images", "requests", "bindings", "users")
        },
    )
    sizes.check()
    return Options(
        sizes=sizes,
        duration=args.duration if args.duration is not None else _env_float("BENCH_DURATION", duration),
        warmup=args.warmup if args.warmup is not None else _env_float("BENCH_WARMUP", warmup),
        connections=args.connections if args.connections is not None else _env_int("BENCH_CONNECTIONS", 16),
        backends=_csv(args.backends, BACKENDS, "--backends"),
        queries=_csv(args.queries, QUERIES, "--queries"),
        loadgen=args.loadgen,
        postgres_url=args.postgres_url,
        data_dir=Path(args.data_dir),
        keep_logs=args.keep_logs,
        authorization=not args.skip_authorization,
        visibility=not args.skip_visibility,
        invisible=invisible,
        visibility_requests=visibility_requests,
        mix=not args.skip_mix,
        mix_rounds=args.mix_rounds
        if args.mix_rounds is not None
        else _env_int("BENCH_MIX_ROUNDS", mix_rounds),
        mix_duration=args.mix_duration
        if args.mix_duration is not None
        else _env_float("BENCH_MIX_DURATION", mix_duration),
        mix_rate=args.mix_rate if args.mix_rate is not None else _env_float("BENCH_MIX_RATE", 2.5),
        mix_queries=_csv(args.mix_queries, MIX_QUERIES, "--mix-queries"),
    )
