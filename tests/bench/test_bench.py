"""Smoke test of the benchmark harness (`make bench`): the whole of it, on a tiny world for
a fraction of a second per operation, prints a row for every operation and server (and
bench/visibility.py's table, at 10 and 100 invisible applications, a few requests each).

SQLite only, unless GREENLIGHT_TEST_POSTGRES_URL names a PostgreSQL server (the harness
creates and drops a database of its own there)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bench.queries import OPERATIONS

REPO = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get("GREENLIGHT_TEST_POSTGRES_URL")


def test_bench_prints_a_row_for_every_operation_and_server(tmp_path):
    backends = ["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"]
    command = [
        sys.executable,
        "-m",
        "bench",
        "--tiny",
        "--backends",
        ",".join(backends),
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--connections",
        "4",
        "--loadgen",
        "builtin",
        "--skip-authorization",
        "--visibility-requests",
        "3",
        "--data-dir",
        str(tmp_path),
    ]
    if POSTGRES_URL:
        command += ["--postgres-url", POSTGRES_URL]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "Greenlight benchmark" in out
    assert re.search(r"^operation\s+server\s+req/s\s+p50 ms\s+p99 ms\s+ratio\s+target", out, re.M), out
    for operation in OPERATIONS.values():
        for server in ("baseline", *backends):
            row = re.search(rf"^{re.escape(operation.title)}\s+{server}\s+([\d,.]+)\s", out, re.M)
            assert row, f"no row for {operation.title} on {server}:\n{out}"
            if server != "baseline":
                # the ratio to the baseline, and SQL statements per request, are filled in
                line = row.group(0) + out[row.end() :].split("\n", 1)[0]
                assert re.search(r"\d\.\d\dx\s+>=\d\.\dx", line), line
                assert re.search(r"(ok|MISS)\s+\d+(\.\d+)?\s+\d+", line), line
    assert "Authorization decisions" in out
    # the realistic mix, the headline, first: every server's row, Greenlight's with the spread
    # of its ratios to the baseline and to the naive server over the interleaved rounds
    assert out.index("The realistic mix") < out.index("One user repeating one question")
    assert re.search(r"^\s+users: 50, each with its own token", out, re.M), out
    spread = r"\d+\.\d\d / \d+\.\d\d / \d+\.\d\dx"
    for title in ("Select Image 50", "Approval pending 50"):
        for backend in backends:
            for server in ("baseline", "greenlight", "naive"):
                assert re.search(rf"^{title}\s+{backend}\s+{server}\s+[\d,.]+\s", out, re.M), (title, out)
            line = re.search(rf"^{title}\s+{backend}\s+greenlight\s.*$", out, re.M).group(0)
            assert len(re.findall(spread, line)) == 2, line  # vs baseline, vs naive
        # SQL statements per request, counted in-process, for Greenlight and the naive server
        for server in ("greenlight", "naive"):
            line = re.search(rf"^{title}\s+sqlite\s+{server}\s.*$", out, re.M).group(0)
            assert re.search(r"\s\d+(\.\d+)?\s+\d+(\s|$)", line.split("first error")[0]), line
    assert re.search(
        r"^sqlite: background writes during the measured rounds: baseline rounds [\d.]+/s", out, re.M
    )
    for title in ("approveRequest", "requestApproval"):
        assert re.search(rf"^{title}\s+sqlite\s+greenlight\s", out, re.M), out
    assert re.search(r"^  Select Image 50 \(sqlite, [\d.]+ ms/req profiled\): \S", out, re.M), out
    # bench/visibility.py's table (tests/bench/test_visibility.py looks at it closer), in the
    # last-run file too
    assert re.search(r"^Select Image\s+sqlite\s+[\d.]+ / [\d.]+\s+[\d.]+ / [\d.]+\s+[\d.]+x", out, re.M), out
    assert out.endswith((tmp_path / "last-run.txt").read_text())
    # the seeded world is cached for the next run, keyed by its sizes
    assert list(tmp_path.glob("world-a3-e2-*.sqlite3"))
