"""Secrets from files: every setting that holds a secret has a NAME_FILE twin naming a file
(a mounted Kubernetes or Docker secret) whose content is the value, trailing newline
stripped; setting both is a clear error; a twin that cannot be read stops the start."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from greenlight.config import SECRET_VARIABLES, ConfigError, Settings
from tests.observability.test_config import _readme_table

SECRET = "k" * 40


def _base() -> dict[str, str]:
    """Settings under which every secret is read: webhook deployer, email and HS256 JWTs."""
    return {
        "GREENLIGHT_DEPLOYER": "webhook",
        "GREENLIGHT_DEPLOY_WEBHOOK_URL": "https://cd.example.com/hook",
        "GREENLIGHT_AUDIT_WEBHOOK_URL": "https://siem.example.com/greenlight",
        "GREENLIGHT_SMTP_HOST": "smtp.example.com",
        "GREENLIGHT_SMTP_FROM": "greenlight@example.com",
        "GREENLIGHT_JWT_ISSUER": "https://id.example.com",
        "GREENLIGHT_JWT_AUDIENCE": "greenlight",
    }


FIELDS = {
    "GREENLIGHT_DATABASE_URL": ("database_url", "postgres://greenlight:p4ss@db:5432/greenlight"),
    "GREENLIGHT_SMTP_PASSWORD": ("smtp_password", "smtp password with spaces "),
    "GREENLIGHT_SECRET_KEY": ("secret_key", SECRET),
    "GREENLIGHT_SECRET_KEY_PREVIOUS": ("secret_key_previous", "p" * 40),
    "GREENLIGHT_DEPLOY_WEBHOOK_SECRET": ("deploy_webhook_secret", "w" * 40),
    "GREENLIGHT_JWT_SECRET": ("jwt_secret", "j" * 40),
    "GREENLIGHT_AUDIT_WEBHOOK_SECRET": ("audit_webhook_secret", "a" * 40),
}


def _required(env: dict[str, str]) -> dict[str, str]:
    """The secrets that _base() makes required, for those not given another way."""
    for name in (
        "GREENLIGHT_SECRET_KEY",
        "GREENLIGHT_DEPLOY_WEBHOOK_SECRET",
        "GREENLIGHT_JWT_SECRET",
        "GREENLIGHT_AUDIT_WEBHOOK_SECRET",
    ):
        if name not in env and f"{name}_FILE" not in env:
            env[name] = FIELDS[name][1]
    return env


@pytest.mark.parametrize("variable", sorted(FIELDS))
def test_secret_is_read_from_its_file_twin_without_the_trailing_newline(variable, tmp_path):
    """NAME_FILE's content becomes NAME's value; the newline an editor or `echo` adds at the
    end is not part of it (trailing spaces are)."""
    field, value = FIELDS[variable]
    secret = tmp_path / "secret"
    secret.write_text(value + "\n")
    settings = Settings.from_env(_required({**_base(), f"{variable}_FILE": str(secret)}))
    assert getattr(settings, field) == value


@pytest.mark.parametrize("variable", sorted(FIELDS))
def test_secret_set_both_directly_and_from_a_file_is_refused(variable, tmp_path):
    """NAME and NAME_FILE both set: an error naming both, rather than a silent winner."""
    field, value = FIELDS[variable]
    secret = tmp_path / "secret"
    secret.write_text(value)
    env = _required({**_base(), variable: value, f"{variable}_FILE": str(secret)})
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert variable in str(raised.value) and f"{variable}_FILE" in str(raised.value)
    assert "not both" in str(raised.value)


def test_secret_file_that_does_not_exist_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-file"
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(_required({**_base(), "GREENLIGHT_SMTP_PASSWORD_FILE": str(missing)}))
    assert "GREENLIGHT_SMTP_PASSWORD_FILE" in str(raised.value)
    assert str(missing) in str(raised.value)


def test_secret_file_that_is_empty_is_a_clear_error(tmp_path):
    """An empty file (a secret mounted before it was filled in) is not an empty password."""
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(_required({**_base(), "GREENLIGHT_JWT_SECRET_FILE": str(empty)}))
    assert "GREENLIGHT_JWT_SECRET_FILE" in str(raised.value) and "empty" in str(raised.value)


def test_secret_from_a_file_is_checked_like_the_variable(tmp_path):
    """A value from a file meets the same rules: a short JWT secret is refused either way."""
    short = tmp_path / "short"
    short.write_text("too short\n")
    with pytest.raises(ConfigError, match="GREENLIGHT_JWT_SECRET must be at least 32"):
        Settings.from_env(_required({**_base(), "GREENLIGHT_JWT_SECRET_FILE": str(short)}))


def test_every_secret_setting_has_a_file_twin():
    """Each setting kept out of repr (a secret) is in SECRET_VARIABLES, so a secret added later
    gets its _FILE twin too; and every twin has a row in the README's table."""
    hidden = {f"GREENLIGHT_{f.name.upper()}" for f in dataclasses.fields(Settings) if not f.repr}
    assert hidden, "no secret settings found"
    assert hidden <= set(SECRET_VARIABLES), hidden - set(SECRET_VARIABLES)
    assert set(FIELDS) == set(SECRET_VARIABLES)
    table = _readme_table()
    assert not [f"{name}_FILE" for name in SECRET_VARIABLES if f"{name}_FILE" not in table]


def test_greenlight_migrate_reads_the_database_url_from_a_file(tmp_path):
    """The command a migration Job runs takes the URL from a mounted secret file."""
    database = tmp_path / "from-file.sqlite3"
    url_file = tmp_path / "database-url"
    url_file.write_text(f"sqlite://{database}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    env["GREENLIGHT_DATABASE_URL_FILE"] = str(url_file)
    result = subprocess.run(
        [sys.executable, "-m", "greenlight", "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert database.exists()
    assert not Path(tmp_path / "greenlight.sqlite3").exists()
