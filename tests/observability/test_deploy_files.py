"""Deployment files: the Dockerfile runs as a non-root user with a health check
on /healthz; the Kubernetes manifest has a migration Job (`greenlight migrate`) and a
Deployment probed on /readyz and /healthz; `greenlight migrate` applies the migrations and
exits. (These machines have no container engine: the files are checked, not run.)"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import TABLES

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "kubernetes" / "greenlight.yaml"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        result.append((instruction.upper(), arguments.strip()))
    return result


def test_dockerfile_runs_as_a_non_root_user():
    """The image runs Greenlight as a user that is not root."""
    instructions = _instructions()
    users = [args for name, args in instructions if name == "USER"]
    assert users, "no USER instruction"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    # The last USER comes before the command the container runs.
    names = [name for name, _ in instructions]
    last_user = max(i for i, name in enumerate(names) if name == "USER")
    assert last_user < max(i for i, name in enumerate(names) if name in ("CMD", "ENTRYPOINT"))
    cmd = [args for name, args in instructions if name == "CMD"][-1]
    assert "greenlight" in cmd and "serve" in cmd and "0.0.0.0" in cmd


def test_dockerfile_health_check_on_healthz():
    """The image checks its own health on /healthz."""
    checks = [args for name, args in _instructions() if name == "HEALTHCHECK"]
    assert len(checks) == 1, checks
    assert "CMD" in checks[0]
    assert "/healthz" in checks[0]
    assert "--interval" in checks[0]
    # It asks the port the server listens on, which the image exposes.
    exposed = [args for name, args in _instructions() if name == "EXPOSE"]
    cmd = [args for name, args in _instructions() if name == "CMD"][-1]
    port = re.search(r'"--port",\s*"(\d+)"', cmd)[1]
    assert exposed == [port]
    assert f":{port}/healthz" in checks[0]


def _documents() -> list[dict]:
    documents = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    assert documents
    for document in documents:
        assert {"apiVersion", "kind", "metadata"} <= document.keys(), document
    return documents


def _of_kind(kind: str) -> list[dict]:
    return [d for d in _documents() if d["kind"] == kind]


def test_kubernetes_deployment_has_probes():
    """Readiness on /readyz, liveness on /healthz, on the port the server uses."""
    (deployment,) = _of_kind("Deployment")
    assert deployment["apiVersion"] == "apps/v1"
    spec = deployment["spec"]
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"
    assert liveness["path"] == "/healthz"
    for probe in (readiness, liveness):
        assert probe["port"] in ports or probe["port"] in ports.values()
    command = container.get("command", []) + container.get("args", [])
    assert "serve" in command
    assert ports.get("http") == int(command[command.index("--port") + 1])
    env = {e["name"] for e in container["env"]}
    # The database URL holds a password: it comes from a mounted secret file (its _FILE twin).
    assert "GREENLIGHT_DATABASE_URL_FILE" in env and "GREENLIGHT_DATABASE_URL" not in env
    assert "--no-migrate" in command
    # Not root, here either.
    security = {**pod["spec"].get("securityContext", {}), **container.get("securityContext", {})}
    assert security.get("runAsNonRoot") is True
    assert security.get("runAsUser", 0) != 0


def test_kubernetes_service_targets_the_deployment():
    """The Service selects the Deployment's pods and a port they name."""
    (service,) = _of_kind("Service")
    (deployment,) = _of_kind("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    names = {p["name"] for p in container["ports"]}
    assert all(p["targetPort"] in names for p in service["spec"]["ports"])


def test_kubernetes_job_runs_greenlight_migrate():
    """Migrations run as a separate Job, `greenlight migrate`."""
    (job,) = _of_kind("Job")
    assert job["apiVersion"] == "batch/v1"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    (container,) = pod["containers"]
    command = container.get("command", []) + container.get("args", [])
    assert command[-2:] == ["greenlight", "migrate"] or command == ["greenlight", "migrate"]
    assert "GREENLIGHT_DATABASE_URL_FILE" in {e["name"] for e in container["env"]}
    # The Job and the server use the same database and image.
    (deployment,) = _of_kind("Deployment")
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == server["image"]
    by_name = {e["name"]: e for e in server["env"]}
    assert container["env"][0] == by_name[container["env"][0]["name"]]
    assert container["volumeMounts"] == server["volumeMounts"]


def _migrate(database: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    env["GREENLIGHT_DATABASE_URL"] = f"sqlite://{database}"
    return subprocess.run(
        [sys.executable, "-m", "greenlight", "migrate"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_greenlight_migrate_creates_the_tables(tmp_path):
    """`greenlight migrate` on a fresh SQLite file exits 0 with every table; run again, it
    is a no-op that still exits 0 and keeps the data."""
    database = tmp_path / "fresh.sqlite3"
    result = _migrate(database, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "migrations applied" in result.stdout
    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert set(TABLES) <= tables, set(TABLES) - tables
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
        conn.execute(
            "INSERT INTO applications (name, created_at) VALUES ('shop', '2024-01-01T00:00:00+00:00')"
        )
    again = _migrate(database, tmp_path)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT name FROM applications").fetchall() == [("shop",)]


def test_greenlight_migrate_with_bad_configuration_fails(tmp_path):
    """`greenlight migrate` refuses a bad configuration, naming the variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    env["GREENLIGHT_DATABASE_URL"] = "mysql://db/greenlight"
    result = subprocess.run(
        [sys.executable, "-m", "greenlight", "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "GREENLIGHT_DATABASE_URL" in result.stderr
