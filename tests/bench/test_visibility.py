"""Smoke test of bench/visibility.py (`python -m bench visibility`): on SQLite, at tiny
sizes (10 and 100 invisible applications, a few requests), it prints a row for every list
query, with the same SQL statements per request and the same answers in both worlds.
Timings are not asserted: a few requests on a busy machine say nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.visibility import QUERIES

REPO = Path(__file__).resolve().parents[2]


def test_visibility_prints_equal_statement_counts_at_both_sizes(tmp_path):
    command = [
        sys.executable,
        "-m",
        "bench",
        "visibility",
        "--backends",
        "sqlite",
        "--invisible",
        "10,100",
        "--visibility-requests",
        "3",
        "--data-dir",
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "bench/visibility.py" in out
    assert re.search(r"^query\s+backend\s+ms at 10 p50/p90\s+ms at 100 p50/p90\s+ratio", out, re.M), out
    for query in QUERIES.values():
        row = re.search(
            rf"^{re.escape(query.title)}\s+sqlite\s+[\d.]+ / [\d.]+\s+[\d.]+ / [\d.]+\s+[\d.]+x\s+(ok|MISS)"
            r"\s+(\d+)\s+(\d+)(.*)$",
            out,
            re.M,
        )
        assert row, f"no row for {query.title}:\n{out}"
        few, many = int(row.group(2)), int(row.group(3))
        assert few > 0, row.group(0)  # the response cache is off: every request reads
        assert few == many, row.group(0)
        # the user sees the same items in both worlds (a MISS may only come from the timing)
        assert not row.group(4).strip(), row.group(0)
    assert "sqlite, 100 invisible: " in out
    assert (tmp_path / "visibility-sql.txt").read_text().count("-- ") == 2 * len(QUERIES)
    # the worlds' databases are removed
    assert not list(tmp_path.glob("visibility-*.sqlite3*"))
