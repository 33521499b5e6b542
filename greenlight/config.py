"""Settings, read once from environment variables (documented in the README)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A configuration variable has a value Greenlight cannot use; the message names it."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: dict[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite://greenlight.sqlite3"
    rollout_seconds: float = 90.0
    rollout_poll_seconds: float = 1.0
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    smtp_security: str = "starttls"
    public_url: str = "http://localhost:8000"
    background_jobs: bool = True

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host and self.smtp_from)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        url = env.get("GREENLIGHT_DATABASE_URL") or cls.database_url
        if not url.startswith(("sqlite://", "postgres://", "postgresql://")):
            raise ConfigError(
                "GREENLIGHT_DATABASE_URL must start with sqlite:// or postgres://, "
                f"got {url.split('://')[0]!r}"
            )
        security = env.get("GREENLIGHT_SMTP_SECURITY") or "starttls"
        if security not in ("starttls", "tls", "none"):
            raise ConfigError(f"GREENLIGHT_SMTP_SECURITY must be starttls, tls or none, got {security!r}")
        return cls(
            database_url=url,
            rollout_seconds=_float(env, "GREENLIGHT_ROLLOUT_SECONDS", 90.0),
            rollout_poll_seconds=_float(env, "GREENLIGHT_ROLLOUT_POLL_SECONDS", 1.0, 0.01),
            smtp_host=env.get("GREENLIGHT_SMTP_HOST") or None,
            smtp_port=_int(env, "GREENLIGHT_SMTP_PORT", 587, 1),
            smtp_username=env.get("GREENLIGHT_SMTP_USERNAME") or None,
            smtp_password=env.get("GREENLIGHT_SMTP_PASSWORD") or None,
            smtp_from=env.get("GREENLIGHT_SMTP_FROM") or None,
            smtp_security=security,
            public_url=(env.get("GREENLIGHT_PUBLIC_URL") or "http://localhost:8000").rstrip("/"),
        )
