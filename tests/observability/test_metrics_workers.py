"""`greenlight serve --workers 2` with GREENLIGHT_METRICS_PORT, as run in production: every
scrape, whichever worker answers it, shows the counters summed over both workers (so a
counter never goes down between scrapes), the API port has no /metrics, and promtool finds
nothing wrong. A stale file left in PROMETHEUS_MULTIPROC_DIR by an earlier run is not
counted. PostgreSQL only (several workers need it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_processes import Processes, _environment, pg_database  # noqa: F401 (fixture)
from tests.support import bootstrap_token, free_port

PROMTOOL = shutil.which("promtool")


def counter(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_counters_are_summed_over_workers_on_the_metrics_port(pg_database, tmp_path):  # noqa: F811
    metrics_port = free_port()
    folder = tmp_path / "multiproc"
    folder.mkdir()
    (folder / "counter_99999.db").write_bytes(b"left over by an earlier run")
    env = {
        **_environment(pg_database),
        "GREENLIGHT_METRICS_PORT": str(metrics_port),
        "GREENLIGHT_METRICS_HOST": "127.0.0.1",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
    }
    token = bootstrap_token(tmp_path, env)
    processes = Processes(tmp_path, env)
    try:
        server = processes.start("workers", "--workers", "2")
        processes.wait_ready(server)
        assert not (folder / "counter_99999.db").exists()
        name = f"Count_{uuid.uuid4().hex[:8]}"
        sent = 30
        # New connections each time, so both workers answer some of them.
        for _ in range(sent):
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", trust_env=False) as api:
                response = api.post(
                    "/graphql",
                    json={"query": f"query {name} {{ me {{ email }} }}"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert response.status_code == 200 and not response.json().get("errors"), response.text
        assert server.http.get("/metrics").status_code == 404

        texts = []
        for _ in range(8):
            with httpx.Client(base_url=f"http://127.0.0.1:{metrics_port}", trust_env=False) as scraper:
                response = scraper.get("/metrics")
            assert response.status_code == 200, server.tail()
            texts.append(response.text)
        for text in texts:
            assert counter(text, "greenlight_graphql_requests_total", operation=name, outcome="OK") == sent
            assert counter(text, "greenlight_build_info") == 1
            assert counter(text, "greenlight_deployments", status="PROGRESSING") == 0
        if PROMTOOL:
            checked = subprocess.run(
                [PROMTOOL, "check", "metrics"], input=texts[-1].encode(), capture_output=True, timeout=60
            )
            assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
        # Both workers counted some of the requests (else this proves nothing about summing).
        workers = {p.name for p in folder.iterdir() if p.name.startswith("counter_")}
        assert len(workers) >= 2, workers
    finally:
        processes.kill_all()


@pytest.mark.skipif(os.name != "posix", reason="POSIX processes")
def test_single_worker_serves_metrics_on_its_own_port(tmp_path):
    """One process on SQLite: the metrics port answers, the API port has no /metrics, and
    no multiprocess folder is used."""
    metrics_port = free_port()
    env = {
        **_environment(f"sqlite://{tmp_path / 'greenlight.sqlite3'}"),
        "GREENLIGHT_METRICS_PORT": str(metrics_port),
        "GREENLIGHT_METRICS_HOST": "127.0.0.1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    processes = Processes(tmp_path, env)
    try:
        server = processes.start("single")
        processes.wait_ready(server)
        assert server.http.get("/metrics").status_code == 404
        with httpx.Client(base_url=f"http://127.0.0.1:{metrics_port}", trust_env=False) as scraper:
            response = scraper.get("/metrics")
        assert response.status_code == 200, server.tail()
        assert counter(response.text, "greenlight_build_info") == 1
        assert "greenlight_approval_requests" in response.text
    finally:
        processes.kill_all()
