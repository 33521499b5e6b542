"""Settings: the one typed place where configuration is read and validated.

Values come from environment variables, and from a `.env` file in the working directory
(or the file named by GREENLIGHT_ENV_FILE) for variables the environment does not set.
Every variable is in the README's table with its default; a bad value stops the server
at start with a message naming the variable. A secret may instead be read from a file named
by its `_FILE` twin (SECRET_VARIABLES).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A configuration variable has a value Greenlight cannot use; the message names it."""


# The settings that hold a secret. Each has a twin, NAME_FILE, naming a file whose content is
# NAME's value (trailing newlines stripped), as Grafana and the PostgreSQL image allow, so a
# Kubernetes or Docker secret mounted as a file never passes through the environment.
SECRET_VARIABLES = (
    "GREENLIGHT_DATABASE_URL",  # postgres://USER:PASSWORD@HOST/DB holds a password
    "GREENLIGHT_SMTP_PASSWORD",
    "GREENLIGHT_SECRET_KEY",
    "GREENLIGHT_SECRET_KEY_PREVIOUS",
    "GREENLIGHT_DEPLOY_WEBHOOK_SECRET",
    "GREENLIGHT_JWT_SECRET",
    "GREENLIGHT_AUDIT_WEBHOOK_SECRET",
)


def _secrets_from_files(env: dict[str, str]) -> None:
    """Put the content of each secret's NAME_FILE into env[NAME]; setting both is an error,
    since which one wins would be a guess."""
    for name in SECRET_VARIABLES:
        twin = f"{name}_FILE"
        path = env.get(twin)
        if not path:
            continue
        if env.get(name):
            raise ConfigError(f"set {name} or {twin}, not both")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{twin}: cannot read {path!r}: {error.strerror or error}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{twin}: {path!r} is not UTF-8 text") from None
        value = text.rstrip("\r\n")
        if not value:
            raise ConfigError(f"{twin}: {path!r} is empty")
        env[name] = value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or str(default)).lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return raw in ("true", "1", "yes")


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
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite://greenlight.sqlite3"
    database_connect_timeout_seconds: float = 5.0
    database_statement_timeout_seconds: float = 15.0
    ready_timeout_seconds: float = 2.0
    rollout_seconds: float = 90.0
    rollout_poll_seconds: float = 1.0
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    smtp_security: str = "starttls"
    smtp_timeout_seconds: float = 10.0
    public_url: str = "http://localhost:8000"
    request_url_template: str = "{public_url}/requests/{request_id}"
    secret_key: str | None = field(default=None, repr=False)
    secret_key_previous: str | None = field(default=None, repr=False)
    email_max_attempts: int = 8
    email_backoff_seconds: float = 5.0
    deployer: str = "simulator"
    simulator_failure_rate: float = 0.0
    deploy_webhook_url: str | None = None
    deploy_webhook_secret: str | None = field(default=None, repr=False)
    webhook_max_attempts: int = 8
    webhook_timeout_seconds: float = 10.0
    webhook_backoff_seconds: float = 2.0
    subscription_recheck_seconds: float = 30.0
    # The audit sink: every audit event, in order, to one signed webhook (a SIEM).
    audit_webhook_url: str | None = None
    audit_webhook_secret: str | None = field(default=None, repr=False)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_scopes: str = "openid email profile"
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_email_claim: str = "email"
    jwt_groups_claim: str | None = None
    jwt_auto_provision: bool = False
    jwks_refresh_seconds: float = 300.0
    max_query_depth: int = 10
    max_query_tokens: int = 2000
    max_aliases: int = 15
    max_query_cost: int = 25000
    operation_timeout_seconds: float = 20.0
    max_body_bytes: int = 1_048_576
    introspection: bool = True
    mutations_per_minute: int = 120
    max_subscriptions_per_token: int = 10
    shutdown_grace_seconds: float = 30.0
    log_format: str = "auto"
    log_level: str = "INFO"
    otel_endpoint: str | None = None
    otel_traces_endpoint: str | None = None
    otel_service_name: str = "greenlight"
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    metrics_cache_seconds: float = 5.0
    cors_origins: tuple[str, ...] | None = None
    background_jobs: bool = True
    migrate_on_start: bool = True

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host and self.smtp_from)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """From `env` (default: the process environment over the `.env` file)."""
        if env is None:
            env = {**read_env_file(os.environ.get("GREENLIGHT_ENV_FILE", ".env")), **os.environ}
        env = dict(env)
        _secrets_from_files(env)
        log_format = (env.get("GREENLIGHT_LOG_FORMAT") or "auto").lower()
        if log_format not in ("auto", "json", "text"):
            raise ConfigError(f"GREENLIGHT_LOG_FORMAT must be auto, json or text, got {log_format!r}")
        log_level = (env.get("GREENLIGHT_LOG_LEVEL") or "INFO").upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"GREENLIGHT_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}"
            )
        # The standard OpenTelemetry variables first; Greenlight's own names are their aliases.
        otel_disabled = (env.get("OTEL_SDK_DISABLED") or "").lower() == "true"
        otel_endpoint, otel_traces_endpoint = None, None
        for name in (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "GREENLIGHT_OTEL_ENDPOINT",
        ):
            value = env.get(name) or None
            if value and not value.startswith(("http://", "https://")):
                raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
        if not otel_disabled:
            otel_traces_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
            otel_endpoint = (
                env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("GREENLIGHT_OTEL_ENDPOINT") or None
            )
        metrics_port = _int(env, "GREENLIGHT_METRICS_PORT", 0, 0) or None
        if metrics_port is not None and metrics_port > 65535:
            raise ConfigError(f"GREENLIGHT_METRICS_PORT must be a TCP port (1 to 65535), got {metrics_port}")
        cors_origins = tuple(
            o.strip().rstrip("/") for o in (env.get("GREENLIGHT_CORS_ORIGINS") or "").split(",")
        )
        cors_origins = tuple(o for o in cors_origins if o)
        for origin in cors_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ConfigError(
                    f"GREENLIGHT_CORS_ORIGINS must list origins like https://app.example.com, got {origin!r}"
                )
        url = env.get("GREENLIGHT_DATABASE_URL") or cls.database_url
        if not url.startswith(("sqlite://", "postgres://", "postgresql://")):
            raise ConfigError(
                "GREENLIGHT_DATABASE_URL must start with sqlite:// or postgres://, "
                f"got {url.split('://')[0]!r}"
            )
        security = env.get("GREENLIGHT_SMTP_SECURITY") or "starttls"
        if security not in ("starttls", "tls", "none"):
            raise ConfigError(f"GREENLIGHT_SMTP_SECURITY must be starttls, tls or none, got {security!r}")
        deployer = env.get("GREENLIGHT_DEPLOYER") or "simulator"
        if deployer not in ("simulator", "webhook"):
            raise ConfigError(f"GREENLIGHT_DEPLOYER must be simulator or webhook, got {deployer!r}")
        failure_rate = _float(env, "GREENLIGHT_SIMULATOR_FAILURE_RATE", 0.0)
        if failure_rate > 1:
            raise ConfigError(
                f"GREENLIGHT_SIMULATOR_FAILURE_RATE must be between 0 and 1, got {failure_rate}"
            )
        webhook_url = env.get("GREENLIGHT_DEPLOY_WEBHOOK_URL") or None
        webhook_secret = env.get("GREENLIGHT_DEPLOY_WEBHOOK_SECRET") or None
        if deployer == "webhook":
            if not webhook_url or not webhook_url.startswith(("http://", "https://")):
                raise ConfigError(
                    "GREENLIGHT_DEPLOY_WEBHOOK_URL must be an http(s) URL when GREENLIGHT_DEPLOYER=webhook"
                )
            if not webhook_secret:
                raise ConfigError(
                    "GREENLIGHT_DEPLOY_WEBHOOK_SECRET must be set when GREENLIGHT_DEPLOYER=webhook"
                )
        audit_url = env.get("GREENLIGHT_AUDIT_WEBHOOK_URL") or None
        audit_secret = env.get("GREENLIGHT_AUDIT_WEBHOOK_SECRET") or None
        if audit_url and not audit_url.startswith(("http://", "https://")):
            raise ConfigError(f"GREENLIGHT_AUDIT_WEBHOOK_URL must be an http(s) URL, got {audit_url!r}")
        if bool(audit_url) != bool(audit_secret):
            raise ConfigError(
                "GREENLIGHT_AUDIT_WEBHOOK_URL and GREENLIGHT_AUDIT_WEBHOOK_SECRET must be set together"
            )
        smtp_host = env.get("GREENLIGHT_SMTP_HOST") or None
        smtp_from = env.get("GREENLIGHT_SMTP_FROM") or None
        secret_key = env.get("GREENLIGHT_SECRET_KEY") or None
        secret_key_previous = env.get("GREENLIGHT_SECRET_KEY_PREVIOUS") or None
        if secret_key_previous and len(secret_key_previous) < 32:
            raise ConfigError("GREENLIGHT_SECRET_KEY_PREVIOUS must be 32 characters or more")
        if bool(smtp_host) != bool(smtp_from):
            raise ConfigError("GREENLIGHT_SMTP_HOST and GREENLIGHT_SMTP_FROM must be set together")
        if smtp_host and (not secret_key or len(secret_key) < 32):
            raise ConfigError(
                "GREENLIGHT_SECRET_KEY must be set (32 characters or more) when email is on: "
                "it signs the one-click approve links"
            )
        public_url = (env.get("GREENLIGHT_PUBLIC_URL") or "http://localhost:8000").rstrip("/")
        template = env.get("GREENLIGHT_REQUEST_URL_TEMPLATE") or "{public_url}/requests/{request_id}"
        try:
            template.format(public_url=public_url, request_id="ApprovalRequest:1")
        except (KeyError, IndexError, ValueError):
            raise ConfigError(
                "GREENLIGHT_REQUEST_URL_TEMPLATE may use only {public_url} and {request_id}"
            ) from None
        jwt_issuer = env.get("GREENLIGHT_JWT_ISSUER") or None
        jwt_audience = env.get("GREENLIGHT_JWT_AUDIENCE") or None
        jwks_url = env.get("GREENLIGHT_JWT_JWKS_URL") or None
        jwt_secret = env.get("GREENLIGHT_JWT_SECRET") or None
        oidc_issuer = env.get("GREENLIGHT_OIDC_ISSUER") or None
        if sum(bool(source) for source in (jwks_url, jwt_secret, oidc_issuer)) > 1:
            raise ConfigError(
                "set one of GREENLIGHT_OIDC_ISSUER, GREENLIGHT_JWT_JWKS_URL or GREENLIGHT_JWT_SECRET"
            )
        if oidc_issuer and not oidc_issuer.startswith(("http://", "https://")):
            raise ConfigError(f"GREENLIGHT_OIDC_ISSUER must be an http(s) URL, got {oidc_issuer!r}")
        if oidc_issuer and not jwt_audience:
            raise ConfigError("GREENLIGHT_JWT_AUDIENCE must be set to accept JWTs")
        # The console signs in through the provider it discovers from the issuer.
        oidc_client_id = env.get("GREENLIGHT_OIDC_CLIENT_ID") or None
        if oidc_client_id and not oidc_issuer:
            raise ConfigError(
                "GREENLIGHT_OIDC_CLIENT_ID needs GREENLIGHT_OIDC_ISSUER (the console discovers the provider)"
            )
        oidc_scopes = " ".join((env.get("GREENLIGHT_OIDC_SCOPES") or "openid email profile").split())
        if "openid" not in oidc_scopes.split():
            raise ConfigError(f"GREENLIGHT_OIDC_SCOPES must include openid, got {oidc_scopes!r}")
        if (jwks_url or jwt_secret) and not (jwt_issuer and jwt_audience):
            raise ConfigError("GREENLIGHT_JWT_ISSUER and GREENLIGHT_JWT_AUDIENCE must be set to accept JWTs")
        if jwks_url and not jwks_url.startswith(("http://", "https://")):
            raise ConfigError(f"GREENLIGHT_JWT_JWKS_URL must be an http(s) URL, got {jwks_url!r}")
        if jwt_secret and len(jwt_secret) < 32:
            raise ConfigError("GREENLIGHT_JWT_SECRET must be at least 32 characters")
        auto_provision = (env.get("GREENLIGHT_JWT_AUTO_PROVISION") or "false").lower()
        if auto_provision not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"GREENLIGHT_JWT_AUTO_PROVISION must be true or false, got {auto_provision!r}")
        introspection = (env.get("GREENLIGHT_INTROSPECTION") or "true").lower()
        if introspection not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"GREENLIGHT_INTROSPECTION must be true or false, got {introspection!r}")
        return cls(
            database_url=url,
            database_connect_timeout_seconds=_float(
                env, "GREENLIGHT_DATABASE_CONNECT_TIMEOUT_SECONDS", 5.0, 0.1
            ),
            database_statement_timeout_seconds=_float(
                env, "GREENLIGHT_DATABASE_STATEMENT_TIMEOUT_SECONDS", 15.0, 0.1
            ),
            ready_timeout_seconds=_float(env, "GREENLIGHT_READY_TIMEOUT_SECONDS", 2.0, 0.1),
            max_query_depth=_int(env, "GREENLIGHT_MAX_QUERY_DEPTH", 10, 1),
            max_query_tokens=_int(env, "GREENLIGHT_MAX_QUERY_TOKENS", 2000, 10),
            max_aliases=_int(env, "GREENLIGHT_MAX_ALIASES", 15, 0),
            max_query_cost=_int(env, "GREENLIGHT_MAX_QUERY_COST", 25000, 1),
            operation_timeout_seconds=_float(env, "GREENLIGHT_OPERATION_TIMEOUT_SECONDS", 20.0, 0.0),
            max_body_bytes=_int(env, "GREENLIGHT_MAX_BODY_BYTES", 1_048_576, 1024),
            introspection=introspection in ("true", "1", "yes"),
            migrate_on_start=_bool(env, "GREENLIGHT_MIGRATE_ON_START", True),
            mutations_per_minute=_int(env, "GREENLIGHT_MUTATIONS_PER_MINUTE", 120, 0),
            max_subscriptions_per_token=_int(env, "GREENLIGHT_MAX_SUBSCRIPTIONS_PER_TOKEN", 10, 1),
            shutdown_grace_seconds=_float(env, "GREENLIGHT_SHUTDOWN_GRACE_SECONDS", 30.0, 0.0),
            jwt_issuer=jwt_issuer,
            jwt_audience=jwt_audience,
            jwt_jwks_url=jwks_url,
            oidc_issuer=oidc_issuer,
            oidc_client_id=oidc_client_id,
            oidc_scopes=oidc_scopes,
            jwt_secret=jwt_secret,
            jwt_email_claim=env.get("GREENLIGHT_JWT_EMAIL_CLAIM") or "email",
            jwt_groups_claim=env.get("GREENLIGHT_JWT_GROUPS_CLAIM") or None,
            jwt_auto_provision=auto_provision in ("true", "1", "yes"),
            jwks_refresh_seconds=_float(env, "GREENLIGHT_JWKS_REFRESH_SECONDS", 300.0, 1.0),
            log_format=log_format,
            log_level=log_level,
            otel_endpoint=otel_endpoint,
            otel_traces_endpoint=otel_traces_endpoint,
            otel_service_name=(
                env.get("OTEL_SERVICE_NAME") or env.get("GREENLIGHT_OTEL_SERVICE_NAME") or "greenlight"
            ),
            metrics_port=metrics_port,
            metrics_host=env.get("GREENLIGHT_METRICS_HOST") or "0.0.0.0",
            metrics_cache_seconds=_float(env, "GREENLIGHT_METRICS_CACHE_SECONDS", 5.0, 0.0),
            cors_origins=cors_origins or None,
            request_url_template=template,
            secret_key=secret_key,
            secret_key_previous=secret_key_previous,
            email_max_attempts=_int(env, "GREENLIGHT_EMAIL_MAX_ATTEMPTS", 8, 1),
            email_backoff_seconds=_float(env, "GREENLIGHT_EMAIL_BACKOFF_SECONDS", 5.0),
            deployer=deployer,
            simulator_failure_rate=failure_rate,
            deploy_webhook_url=webhook_url,
            deploy_webhook_secret=webhook_secret,
            webhook_max_attempts=_int(env, "GREENLIGHT_WEBHOOK_MAX_ATTEMPTS", 8, 1),
            webhook_timeout_seconds=_float(env, "GREENLIGHT_WEBHOOK_TIMEOUT_SECONDS", 10.0, 0.1),
            webhook_backoff_seconds=_float(env, "GREENLIGHT_WEBHOOK_BACKOFF_SECONDS", 2.0, 0.0),
            audit_webhook_url=audit_url,
            audit_webhook_secret=audit_secret,
            subscription_recheck_seconds=_float(env, "GREENLIGHT_SUBSCRIPTION_RECHECK_SECONDS", 30.0, 0.05),
            rollout_seconds=_float(env, "GREENLIGHT_ROLLOUT_SECONDS", 90.0),
            rollout_poll_seconds=_float(env, "GREENLIGHT_ROLLOUT_POLL_SECONDS", 1.0, 0.01),
            smtp_host=smtp_host,
            smtp_port=_int(env, "GREENLIGHT_SMTP_PORT", 587, 1),
            smtp_username=env.get("GREENLIGHT_SMTP_USERNAME") or None,
            smtp_password=env.get("GREENLIGHT_SMTP_PASSWORD") or None,
            smtp_from=smtp_from,
            smtp_security=security,
            smtp_timeout_seconds=_float(env, "GREENLIGHT_SMTP_TIMEOUT_SECONDS", 10.0, 0.1),
            public_url=public_url,
        )


def read_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments, blank lines, `export` and quotes allowed);
    {} when there is no such file."""
    if not path or not os.path.isfile(path):
        return {}
    values = {}
    with open(path, encoding="utf-8") as env_file:
        for number, raw in enumerate(env_file, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            line = line.removeprefix("export ").strip()
            key, sep, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key.isidentifier():
                raise ConfigError(f"{path} line {number}: expected KEY=VALUE")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key] = value
    return values
