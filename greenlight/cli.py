"""The `greenlight` command: serve, bootstrap, migrate, export-schema."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from greenlight import db
from greenlight.config import ConfigError, Settings
from greenlight.observability import logs


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as error:
        print(f"greenlight: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


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
    if args.workers < 1:
        print("greenlight serve: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1 and settings.database_url.startswith("sqlite"):
        print(
            "greenlight serve: several workers need PostgreSQL (GREENLIGHT_DATABASE_URL=postgres://...)",
            file=sys.stderr,
        )
        return 2
    asyncio.run(db.migrate(settings.database_url))
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
    from greenlight.workflow.errors import GreenlightError

    settings = _settings()
    try:
        token = asyncio.run(_bootstrap(settings, args.email))
    except GreenlightError as error:
        print(f"greenlight bootstrap: {error.message}", file=sys.stderr)
        return 1
    print(token)
    return 0


def migrate_command(args: argparse.Namespace) -> int:
    settings = _settings()
    asyncio.run(db.migrate(settings.database_url))
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
    from greenlight.policies import Action
    from greenlight.workflow.errors import GreenlightError

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


def export_schema(args: argparse.Namespace) -> int:
    from greenlight.schema import schema

    text = schema.as_str() + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="greenlight", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="apply pending migrations, then serve the API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="server processes (PostgreSQL only)")
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

    p = commands.add_parser("export-schema", help="write the GraphQL schema (SDL)")
    p.add_argument("output", nargs="?", default="schema.graphql")
    p.set_defaults(func=export_schema)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
