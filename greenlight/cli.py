"""The `greenlight` command: serve, bootstrap, migrate, export, apply, export-schema, policy, audit, ci."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from greenlight import build, config_commands, db, sqlite
from greenlight.ci import commands as ci
from greenlight.config import ConfigError, Settings
from greenlight.observability import logs


def _settings() -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"greenlight: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    db.configure(settings)
    return settings


def _run_on_database(command: str, settings: Settings, work):
    """Runs `work` (a coroutine); a database that cannot be reached or opened ends the
    command with one line saying what is wrong and what to do, and exit status 1, rather
    than a traceback."""
    try:
        return asyncio.run(work)
    except Exception as error:
        problem = db.start_problem(error, settings.database_url)
        if problem is None:
            raise
        print(f"greenlight {command}: {problem}", file=sys.stderr)
        raise SystemExit(1) from None


def _sqlite_usable(command: str, settings: Settings) -> None:
    """A SQLite file this process cannot write stops the command at once, naming the path."""
    path = sqlite.database_path(settings.database_url) if settings.database_url.startswith("sqlite") else None
    problem = sqlite.unusable(path) if path is not None else None
    if problem is not None:
        print(f"greenlight {command}: {problem}", file=sys.stderr)
        raise SystemExit(1)


def _serve_alone(settings: Settings) -> None:
    """One serving process per SQLite file (greenlight.sqlite.hold_exclusively)."""
    path = sqlite.database_path(settings.database_url) if settings.database_url.startswith("sqlite") else None
    if path is None:
        return
    try:
        sqlite.hold_exclusively(path)
    except sqlite.AlreadyServed as error:
        print(f"greenlight serve: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as error:
        print(
            f"greenlight serve: cannot write the lock file beside {path}: {error.strerror}", file=sys.stderr
        )
        raise SystemExit(1) from None


def _policy_errors() -> bool:
    from greenlight.policies.validate import check

    errors = check()
    for error in errors:
        print(f"greenlight: {error}", file=sys.stderr)
    return bool(errors)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _settings()
    if _policy_errors():
        print("greenlight serve: refusing to start on invalid policy files", file=sys.stderr)
        return 2
    logs.setup(settings.log_format, settings.log_level)
    if args.workers > 1 and settings.database_url.startswith("sqlite"):
        print(
            "greenlight serve: several workers need PostgreSQL (GREENLIGHT_DATABASE_URL=postgres://...)",
            file=sys.stderr,
        )
        return 2
    _sqlite_usable("serve", settings)
    _serve_alone(settings)
    if not _schema_ready(settings, migrate=settings.migrate_on_start and not args.no_migrate):
        return 2
    if args.workers > 1:
        _multiprocess_metrics_dir()
    # uvicorn ends its graceful shutdown by raising the signal it caught again, under the
    # handler that was there before it: make that a clean exit, so SIGTERM exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))
    uvicorn.run(
        "greenlight.app:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        ws_max_size=settings.max_body_bytes,  # WebSocket messages are bound as bodies are
    )
    return 0


def _schema_ready(settings: Settings, migrate: bool) -> bool:
    """Apply pending migrations (today's default), or, when another step is the only migrator
    (--no-migrate, GREENLIGHT_MIGRATE_ON_START=false), refuse to serve on a schema that still
    has migrations pending: the code would meet tables it does not expect."""
    if migrate:
        _run_on_database("serve", settings, db.migrate(settings.database_url))
        return True
    pending = _run_on_database("serve", settings, db.pending_migrations(settings.database_url))
    if pending:
        print(
            f"greenlight serve: refusing to start: {len(pending)} migration(s) not applied "
            f"({', '.join(pending)}) and migrations on start are off (--no-migrate or "
            "GREENLIGHT_MIGRATE_ON_START=false); run `greenlight migrate` first",
            file=sys.stderr,
        )
        return False
    return True


def _multiprocess_metrics_dir() -> None:
    """Several workers count into files of one folder that every scrape sums
    (prometheus_client's multiprocess mode): PROMETHEUS_MULTIPROC_DIR if set, else a fresh
    one; emptied at start, so counts of an earlier run are not added in."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="greenlight-metrics-")
    path = Path(folder)
    if path.exists():
        for entry in path.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


async def _bootstrap(settings: Settings, email: str) -> str:
    from greenlight.workflow.identity import bootstrap

    await db.migrate(settings.database_url)
    await db.connect(settings.database_url)
    try:
        user, token = await bootstrap(email)
    finally:
        await db.close()
    print(f"{user.email} is a super-admin. API token (shown once):")
    return token


def bootstrap_command(args: argparse.Namespace) -> int:
    from greenlight.errors import GreenlightError

    settings = _settings()
    _sqlite_usable("bootstrap", settings)
    try:
        token = _run_on_database("bootstrap", settings, _bootstrap(settings, args.email))
    except GreenlightError as error:
        print(f"greenlight bootstrap: {error.message}", file=sys.stderr)
        return 1
    print(token)
    return 0


def migrate_command(args: argparse.Namespace) -> int:
    settings = _settings()
    _sqlite_usable("migrate", settings)
    _run_on_database("migrate", settings, db.migrate(settings.database_url))
    print("migrations applied")
    return 0


def policy_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from greenlight.policies.authorizer import MODEL_PATH, POLICY_PATH
    from greenlight.policies.validate import check

    errors = check(Path(args.model or MODEL_PATH), Path(args.policy or POLICY_PATH))
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        return 1
    print("policy files are valid")
    return 0


async def _policy_check(settings: Settings, email: str, action: str, app: str, env: str) -> tuple[bool, str]:
    from greenlight.models import User
    from greenlight.policies import Action, Authorizer, Scope
    from greenlight.workflow import validation
    from greenlight.workflow.access import explain_for

    await db.connect(settings.database_url)
    try:
        user = await User.get_or_none(email=validation.email(email))
        if user is None:
            return False, f"no user {email}"
        authorizer = Authorizer()
        await authorizer.refresh()
        explanation = explain_for(authorizer, user, Action(action), Scope(app, env))
        return explanation.allowed, explanation.reason
    finally:
        await db.close()


def policy_check(args: argparse.Namespace) -> int:
    from greenlight.errors import GreenlightError
    from greenlight.policies import Action

    actions = {a.value: a for a in Action} | {a.name: a for a in Action}
    if args.action not in actions:
        print(
            f"unknown action {args.action!r}; one of: {', '.join(a.value for a in Action)}", file=sys.stderr
        )
        return 2
    settings = _settings()
    try:
        allowed, reason = asyncio.run(
            _policy_check(
                settings, args.email, actions[args.action].value, args.application, args.environment
            )
        )
    except GreenlightError as error:
        print(error.message, file=sys.stderr)
        return 2
    print(("ALLOWED: " if allowed else "DENIED: ") + reason)
    return 0 if allowed else 1


async def _audit_export(settings: Settings, since: int) -> int:
    from greenlight import notifications
    from greenlight.notifications import audit_stream

    notifications.configure(settings)  # chat notices fanned out on the way link to the request
    await db.connect(settings.database_url)
    try:
        return await audit_stream.export(since, sys.stdout.write)
    finally:
        sys.stdout.flush()
        await db.close()


def audit_export(args: argparse.Namespace) -> int:
    from greenlight.notifications import audit_stream

    try:
        since = audit_stream.parse_cursor(args.since)
    except ValueError as error:
        print(f"greenlight audit export: {error}", file=sys.stderr)
        return 2
    settings = _settings()
    count = _run_on_database("audit export", settings, _audit_export(settings, since))
    print(f"greenlight audit export: {count} event(s)", file=sys.stderr)
    return 0


def export_schema(args: argparse.Namespace) -> int:
    from greenlight.api import schema

    text = schema.as_str() + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


class _Version(argparse.Action):
    """--version: the package version and the git commit (greenlight.build), looked up only
    when asked for."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(build.describe())
        parser.exit()


def whole_number(low: int, high: int | None = None):
    """An argparse type: a whole number from `low` to `high`; anything else is refused with
    a message naming the option, and exit code 2."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="greenlight", description=__doc__)
    parser.add_argument("--version", action=_Version, help="print the version and git commit, and exit")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser(
        "serve", help="apply pending migrations (unless --no-migrate), then serve the API"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=whole_number(0, 65535), default=8000, help="0 to 65535 (0: any free port)")
    p.add_argument("--workers", type=whole_number(1), default=1, help="server processes (PostgreSQL only)")
    p.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not apply migrations (another step runs `greenlight migrate`); "
        "refuse to start while any is pending",
    )
    p.set_defaults(func=serve)

    p = commands.add_parser("bootstrap", help="make EMAIL the first super-admin and print a new API token")
    p.add_argument("email")
    p.set_defaults(func=bootstrap_command)

    p = commands.add_parser("migrate", help="apply pending migrations and exit")
    p.set_defaults(func=migrate_command)

    p = commands.add_parser("policy", help="check the policy files, or what a user may do")
    policy = p.add_subparsers(dest="policy_command", required=True)
    q = policy.add_parser("validate", help="check policies/model.conf and policies/policy.csv")
    q.add_argument("--model", help="a model.conf to check instead of the packaged one")
    q.add_argument("--policy", help="a policy.csv to check instead of the packaged one")
    q.set_defaults(func=policy_validate)
    q = policy.add_parser("check", help="may EMAIL do ACTION on APP/ENV, and why (exit 0 if allowed)")
    q.add_argument("email")
    q.add_argument("action")
    q.add_argument("application")
    q.add_argument("environment")
    q.set_defaults(func=policy_check)

    p = commands.add_parser("audit", help="the audit log, out of Greenlight")
    audit = p.add_subparsers(dest="audit_command", required=True)
    q = audit.add_parser(
        "export",
        help="write the audit log as JSON lines, in commit order, each with the cursor to resume after it",
    )
    q.add_argument("--since", help="the cursor of the last line already exported; left out: from the start")
    q.set_defaults(func=audit_export)

    config_commands.add_commands(commands, _settings, _run_on_database)

    p = commands.add_parser("export-schema", help="write the GraphQL schema (SDL)")
    p.add_argument("output", nargs="?", default="schema.graphql")
    p.set_defaults(func=export_schema)

    ci.add_to(commands)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
