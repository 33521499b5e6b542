"""Configuration: one typed settings module reading the environment over a `.env`
file; a bad value stops the server at start with a message naming the variable; every
variable the code reads is in the README's table, with the default the code uses."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from greenlight import config
from greenlight.config import ConfigError, Settings, read_env_file

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s" * 40


@pytest.fixture
def clean_env(monkeypatch, tmp_path) -> Path:
    """No GREENLIGHT_* variable in the environment, and the working directory is an empty
    folder (so a developer's own .env is not read)."""
    for name in list(os.environ):
        if name.startswith("GREENLIGHT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_without_environment_or_env_file(clean_env):
    """With nothing set, the documented defaults."""
    settings = Settings.from_env()
    assert settings.database_url == "sqlite://greenlight.sqlite3"
    assert (settings.log_format, settings.log_level) == ("auto", "INFO")
    assert settings.otel_endpoint is None
    assert settings.otel_service_name == "greenlight"
    assert settings.email_enabled is False


def test_env_file_in_working_directory_is_read(clean_env):
    """A .env file in the working directory provides what the environment lacks;
    comments, blank lines, `export` and quotes are understood."""
    (clean_env / ".env").write_text(
        "# Greenlight\n"
        "\n"
        "GREENLIGHT_ROLLOUT_SECONDS=12\n"
        "export GREENLIGHT_LOG_FORMAT=json\n"
        "GREENLIGHT_OTEL_SERVICE_NAME='greenlight-eu'\n"
        'GREENLIGHT_PUBLIC_URL="https://greenlight.example.com/"\n'
        "GREENLIGHT_LOG_LEVEL = warning\n"
    )
    settings = Settings.from_env()
    assert settings.rollout_seconds == 12.0
    assert settings.log_format == "json"
    assert settings.otel_service_name == "greenlight-eu"
    assert settings.public_url == "https://greenlight.example.com"
    assert settings.log_level == "WARNING"


def test_environment_wins_over_env_file(clean_env, monkeypatch):
    """A variable set in both places takes the environment's value."""
    (clean_env / ".env").write_text("GREENLIGHT_ROLLOUT_SECONDS=12\nGREENLIGHT_LOG_LEVEL=DEBUG\n")
    monkeypatch.setenv("GREENLIGHT_ROLLOUT_SECONDS", "3")
    settings = Settings.from_env()
    assert settings.rollout_seconds == 3.0
    assert settings.log_level == "DEBUG"


def test_env_file_named_by_greenlight_env_file(clean_env, monkeypatch, tmp_path_factory):
    """GREENLIGHT_ENV_FILE points at another file; the one in the working
    directory is then not read."""
    (clean_env / ".env").write_text("GREENLIGHT_ROLLOUT_SECONDS=12\n")
    other = tmp_path_factory.mktemp("conf") / "greenlight.env"
    other.write_text("GREENLIGHT_ROLLOUT_SECONDS=7\nGREENLIGHT_SMTP_PORT=2525\n")
    monkeypatch.setenv("GREENLIGHT_ENV_FILE", str(other))
    settings = Settings.from_env()
    assert settings.rollout_seconds == 7.0
    assert settings.smtp_port == 2525
    monkeypatch.setenv("GREENLIGHT_ENV_FILE", str(other.with_name("missing.env")))
    assert Settings.from_env().rollout_seconds == 90.0


def test_bad_value_in_env_file_names_the_variable(clean_env):
    """A bad value from the file is refused like one from the environment."""
    (clean_env / ".env").write_text("GREENLIGHT_SMTP_SECURITY=ssl\n")
    with pytest.raises(ConfigError, match="GREENLIGHT_SMTP_SECURITY"):
        Settings.from_env()


@pytest.mark.parametrize("line", ["this is not a setting", "=value", "GREENLIGHT-LOG-FORMAT=json", "1ABC=2"])
def test_malformed_env_file_line_names_file_and_line(clean_env, line):
    """A line that is not KEY=VALUE is refused with the file and line number."""
    path = clean_env / ".env"
    path.write_text(f"# comment\nGREENLIGHT_LOG_FORMAT=json\n\n{line}\n")
    with pytest.raises(ConfigError) as error:
        read_env_file(str(path))
    assert str(path) in str(error.value)
    assert "line 4" in str(error.value)
    with pytest.raises(ConfigError, match="line 4"):
        Settings.from_env()


BAD = [
    ({"GREENLIGHT_DATABASE_URL": "mysql://root@db/greenlight"}, "GREENLIGHT_DATABASE_URL"),
    ({"GREENLIGHT_ROLLOUT_SECONDS": "abc"}, "GREENLIGHT_ROLLOUT_SECONDS"),
    ({"GREENLIGHT_ROLLOUT_SECONDS": "-5"}, "GREENLIGHT_ROLLOUT_SECONDS"),
    ({"GREENLIGHT_ROLLOUT_POLL_SECONDS": "0"}, "GREENLIGHT_ROLLOUT_POLL_SECONDS"),
    ({"GREENLIGHT_SMTP_SECURITY": "ssl"}, "GREENLIGHT_SMTP_SECURITY"),
    ({"GREENLIGHT_SMTP_PORT": "smtp"}, "GREENLIGHT_SMTP_PORT"),
    ({"GREENLIGHT_SMTP_PORT": "0"}, "GREENLIGHT_SMTP_PORT"),
    ({"GREENLIGHT_LOG_FORMAT": "xml"}, "GREENLIGHT_LOG_FORMAT"),
    ({"GREENLIGHT_LOG_LEVEL": "verbose"}, "GREENLIGHT_LOG_LEVEL"),
    ({"GREENLIGHT_OTEL_ENDPOINT": "otel-collector:4318"}, "GREENLIGHT_OTEL_ENDPOINT"),
    ({"GREENLIGHT_DEPLOYER": "x"}, "GREENLIGHT_DEPLOYER"),
    ({"GREENLIGHT_DEPLOYER": "webhook"}, "GREENLIGHT_DEPLOY_WEBHOOK_URL"),
    (
        {"GREENLIGHT_DEPLOYER": "webhook", "GREENLIGHT_DEPLOY_WEBHOOK_URL": "https://cd.example.com/hook"},
        "GREENLIGHT_DEPLOY_WEBHOOK_SECRET",
    ),
    ({"GREENLIGHT_SIMULATOR_FAILURE_RATE": "1.5"}, "GREENLIGHT_SIMULATOR_FAILURE_RATE"),
    ({"GREENLIGHT_SIMULATOR_FAILURE_RATE": "often"}, "GREENLIGHT_SIMULATOR_FAILURE_RATE"),
    ({"GREENLIGHT_WEBHOOK_MAX_ATTEMPTS": "0"}, "GREENLIGHT_WEBHOOK_MAX_ATTEMPTS"),
    ({"GREENLIGHT_WEBHOOK_TIMEOUT_SECONDS": "0"}, "GREENLIGHT_WEBHOOK_TIMEOUT_SECONDS"),
    ({"GREENLIGHT_EMAIL_MAX_ATTEMPTS": "1.5"}, "GREENLIGHT_EMAIL_MAX_ATTEMPTS"),
    ({"GREENLIGHT_EMAIL_BACKOFF_SECONDS": "soon"}, "GREENLIGHT_EMAIL_BACKOFF_SECONDS"),
    ({"GREENLIGHT_SUBSCRIPTION_RECHECK_SECONDS": "0"}, "GREENLIGHT_SUBSCRIPTION_RECHECK_SECONDS"),
    ({"GREENLIGHT_SMTP_HOST": "smtp.example.com"}, "GREENLIGHT_SMTP_FROM"),
    (
        {"GREENLIGHT_SMTP_HOST": "smtp.example.com", "GREENLIGHT_SMTP_FROM": "g@example.com"},
        "GREENLIGHT_SECRET_KEY",
    ),
    (
        {
            "GREENLIGHT_SMTP_HOST": "smtp.example.com",
            "GREENLIGHT_SMTP_FROM": "g@example.com",
            "GREENLIGHT_SECRET_KEY": "short",
        },
        "GREENLIGHT_SECRET_KEY",
    ),
    ({"GREENLIGHT_REQUEST_URL_TEMPLATE": "{public_url}/r/{id}"}, "GREENLIGHT_REQUEST_URL_TEMPLATE"),
    ({"GREENLIGHT_ROLLOUT_SECONDS": "nan"}, "GREENLIGHT_ROLLOUT_SECONDS"),
    ({"GREENLIGHT_WEBHOOK_BACKOFF_SECONDS": "inf"}, "GREENLIGHT_WEBHOOK_BACKOFF_SECONDS"),
    ({"GREENLIGHT_SIMULATOR_FAILURE_RATE": "nan"}, "GREENLIGHT_SIMULATOR_FAILURE_RATE"),
    ({"GREENLIGHT_AUDIT_WEBHOOK_URL": "siem.example.com/hook"}, "GREENLIGHT_AUDIT_WEBHOOK_URL"),
    ({"GREENLIGHT_AUDIT_WEBHOOK_URL": "https://siem.example.com/hook"}, "GREENLIGHT_AUDIT_WEBHOOK_SECRET"),
]


@pytest.mark.parametrize("env, name", BAD, ids=lambda v: v if isinstance(v, str) else None)
def test_bad_variable_raises_config_error_naming_it(env, name):
    """Each bad value is refused with a ConfigError whose message names the
    variable to fix."""
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    assert name in str(error.value)


def test_secret_values_are_not_in_the_repr():
    """Printing the settings (a log line, a traceback) shows no secret."""
    settings = Settings.from_env(
        {
            "GREENLIGHT_SMTP_HOST": "smtp.example.com",
            "GREENLIGHT_SMTP_FROM": "g@example.com",
            "GREENLIGHT_SMTP_PASSWORD": "smtp-password-123",
            "GREENLIGHT_SECRET_KEY": SECRET,
            "GREENLIGHT_DEPLOYER": "webhook",
            "GREENLIGHT_DEPLOY_WEBHOOK_URL": "https://cd.example.com/hook",
            "GREENLIGHT_DEPLOY_WEBHOOK_SECRET": "hook-secret-456",
        }
    )
    assert settings.email_enabled and settings.deployer == "webhook"
    text = repr(settings)
    for secret in ("smtp-password-123", SECRET, "hook-secret-456"):
        assert secret not in text


def _serve(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    environment.update({"GREENLIGHT_DATABASE_URL": f"sqlite://{tmp_path / 'g.sqlite3'}", **env})
    return subprocess.run(
        [sys.executable, "-m", "greenlight", "serve", "--host", "127.0.0.1", "--port", "1"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("GREENLIGHT_ROLLOUT_SECONDS", "abc"),
        ("GREENLIGHT_LOG_FORMAT", "xml"),
        ("GREENLIGHT_DATABASE_URL", "mysql://root@db/greenlight"),
    ],
)
def test_serve_with_bad_variable_exits_naming_it(tmp_path, name, value):
    """`greenlight serve` refuses to start, with the variable in its message,
    before touching the database."""
    result = _serve(tmp_path, {name: value})
    assert result.returncode != 0
    assert name in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "g.sqlite3").exists()


def test_serve_with_malformed_env_file_exits_naming_file_and_line(tmp_path):
    """A broken .env stops `greenlight serve` with the file and line."""
    (tmp_path / ".env").write_text("GREENLIGHT_LOG_FORMAT=json\nnot a setting\n")
    result = _serve(tmp_path, {})
    assert result.returncode != 0
    assert ".env line 2" in result.stderr
    assert "Traceback" not in result.stderr


# --- the README's table ----------------------------------------------------------------------


def _readme_table() -> dict[str, str]:
    """Variable -> default, from the rows of README.md's configuration table."""
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("| `GREENLIGHT_"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1]
    return rows


def _read_by_code() -> set[str]:
    source = Path(config.__file__).read_text()
    return set(re.findall(r"\bGREENLIGHT_[A-Z0-9_]*[A-Z0-9]\b", source))


def test_every_variable_is_in_the_readme_table():
    """Every GREENLIGHT_* variable that greenlight/config.py reads has a row in
    the README's configuration table."""
    read = _read_by_code()
    assert {"GREENLIGHT_DATABASE_URL", "GREENLIGHT_LOG_FORMAT", "GREENLIGHT_OTEL_ENDPOINT"} <= read
    missing = sorted(read - _readme_table().keys())
    assert not missing, f"not in the README's configuration table: {missing}"


def _as_readme(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def test_readme_defaults_match_the_code(clean_env):
    """The default the README gives for a variable is the one the code uses."""
    defaults = Settings.from_env({})
    fields = {f.name for f in dataclasses.fields(Settings)}
    table = _readme_table()
    checked = 0
    for variable, documented in table.items():
        field = variable.removeprefix("GREENLIGHT_").lower()
        if field not in fields:
            continue
        assert documented == _as_readme(getattr(defaults, field)), variable
        checked += 1
    assert checked >= 20


def test_standard_otel_variables_work_and_greenlight_ones_are_aliases(clean_env):
    """OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME configure traces; the GREENLIGHT_
    names mean the same when the standard ones are unset; OTEL_SDK_DISABLED=true turns
    tracing off; a traces endpoint is used as given."""
    from greenlight.observability import tracing

    standard = Settings.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SERVICE_NAME": "gate"}
    )
    assert (standard.otel_endpoint, standard.otel_service_name) == ("http://collector:4318", "gate")
    assert tracing.traces_endpoint(standard) == "http://collector:4318/v1/traces"
    alias = Settings.from_env(
        {"GREENLIGHT_OTEL_ENDPOINT": "http://old:4318/", "GREENLIGHT_OTEL_SERVICE_NAME": "gate-old"}
    )
    assert (alias.otel_endpoint, alias.otel_service_name) == ("http://old:4318/", "gate-old")
    assert tracing.traces_endpoint(alias) == "http://old:4318/v1/traces"
    both = Settings.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://new:4318", "GREENLIGHT_OTEL_ENDPOINT": "http://old:4318"}
    )
    assert both.otel_endpoint == "http://new:4318"
    given = Settings.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom/path"})
    assert tracing.traces_endpoint(given) == "http://c:4318/custom/path"
    off = Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"})
    assert off.otel_endpoint is None and off.otel_traces_endpoint is None
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
