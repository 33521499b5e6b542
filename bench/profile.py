"""`python -m bench profile [--backend sqlite|postgres] [--requests N] [bench flags]`:
the benchmark's world and operations, sent to Greenlight in this machine's one process
under cProfile (no network, no load generator), and a summary of where the time goes:
own time by package, and the Greenlight functions with the most cumulative time."""

from __future__ import annotations

import argparse

from bench.config import parse
from bench.inproc import WARM
from bench.run import database, in_process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench profile", add_help=False)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--requests", type=int, default=200, help="requests per operation")
    own, rest = parser.parse_known_args(argv)
    options = parse(rest)
    with database(own.backend, options) as (url, world, _how):
        needed = 2 * own.requests + WARM if "approve" in options.queries else 0
        ids = world.supply[len(world.supply) - needed :] if needed else []
        print(
            in_process(
                "profile",
                own.backend,
                url,
                world,
                ids,
                operations=list(options.queries),
                requests=own.requests,
            ),
            end="",
        )
    return 0
