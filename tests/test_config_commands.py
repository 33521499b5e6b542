"""`greenlight export` and `greenlight apply` (greenlight.config_commands): what they print
and their exit codes, on the database of the usual settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import snapshot


def greenlight(
    database_url: str, cwd: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    env["GREENLIGHT_ENV_FILE"] = str(cwd / "no.env")
    env["GREENLIGHT_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "greenlight", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_export_writes_the_document_to_stdout_or_to_a_file(world, database_url, tmp_path):
    shown = greenlight(database_url, tmp_path, "export")
    assert shown.returncode == 0, shown.stderr
    document = yaml.safe_load(shown.stdout)
    assert [a["name"] for a in document["applications"]] == ["billing", "shop"]
    assert {"application": "shop", "environment": "prod", "minApprovals": 2, "ttlHours": 24}.items() <= next(
        p for p in document["pipelines"] if p["environment"] == "prod" and p["application"] == "shop"
    ).items()
    written = greenlight(database_url, tmp_path, "export", "-o", str(tmp_path / "greenlight.yaml"))
    assert written.returncode == 0 and written.stdout == ""
    assert (tmp_path / "greenlight.yaml").read_text() == shown.stdout


async def test_apply_prints_one_line_a_change_then_no_changes_the_second_time(world, database_url, tmp_path):
    exported = greenlight(database_url, tmp_path, "export").stdout
    changed = exported.replace("minApprovals: 2\n  ttlHours: 24", "minApprovals: 3\n  ttlHours: 24")
    changed = changed.replace("environments:\n", "environments:\n- name: qa\n")
    (tmp_path / "greenlight.yaml").write_text(changed)

    planned = greenlight(
        database_url, tmp_path, "apply", "-f", "greenlight.yaml", "--dry-run", "--as", "admin@example.com"
    )
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.splitlines() == [
        "create environment qa",
        "update pipeline shop/prod: minApprovals 2 -> 3",
        "dry run: 2 change(s) not made",
    ]
    assert "- name: qa" not in greenlight(database_url, tmp_path, "export").stdout

    done = greenlight(database_url, tmp_path, "apply", "-f", "greenlight.yaml", "--as", "admin@example.com")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "create environment qa",
        "update pipeline shop/prod: minApprovals 2 -> 3",
    ]
    again = greenlight(database_url, tmp_path, "apply", "-f", "-", "--as", "admin@example.com", stdin=changed)
    assert (again.returncode, again.stdout) == (0, "no changes\n")


async def test_apply_refuses_a_faulty_file_naming_file_and_line_with_exit_1(world, database_url, tmp_path):
    text = "applications:\n  - name: shop\n    owner: me\n"
    (tmp_path / "bad.yaml").write_text(text)
    before = await snapshot()
    refused = greenlight(database_url, tmp_path, "apply", "-f", "bad.yaml", "--as", "admin@example.com")
    assert refused.returncode == 1
    assert refused.stderr.startswith("greenlight apply: bad.yaml:3:5: applications[0].owner: unknown key")
    assert refused.stdout == ""
    (tmp_path / "bad.yaml").write_text(
        "pipelines:\n  - application: shop\n    environment: moon\n    minApprovals: 1\n"
    )
    refused = greenlight(database_url, tmp_path, "apply", "-f", "bad.yaml", "--as", "admin@example.com")
    assert refused.returncode == 1
    assert "bad.yaml:3:18:" in refused.stderr and "no environment moon" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert await snapshot() == before


async def test_apply_refuses_to_guess_the_super_admin_and_bad_arguments_exit_2(world, database_url, tmp_path):
    (tmp_path / "ok.yaml").write_text("applications:\n  - name: shop\n")
    two_admins = greenlight(database_url, tmp_path, "apply", "-f", "ok.yaml")
    assert two_admins.returncode == 1 and "--as EMAIL" in two_admins.stderr
    not_admin = greenlight(database_url, tmp_path, "apply", "-f", "ok.yaml", "--as", "viewer@example.com")
    assert not_admin.returncode == 1 and "not an active super-admin" in not_admin.stderr
    malformed = greenlight(database_url, tmp_path, "apply", "-f", "ok.yaml", "--as", "admin")
    assert malformed.returncode == 1 and "not an email address" in malformed.stderr
    assert greenlight(database_url, tmp_path, "apply").returncode == 2
    missing = greenlight(database_url, tmp_path, "apply", "-f", "missing.yaml")
    assert missing.returncode == 2 and "cannot read missing.yaml" in missing.stderr
