"""The `greenlight` command: serve, bootstrap, migrate, export-schema."""

from __future__ import annotations

import argparse
import asyncio
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


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _settings()
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
    uvicorn.run(
        "greenlight.app:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
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

    p = commands.add_parser("export-schema", help="write the GraphQL schema (SDL)")
    p.add_argument("output", nargs="?", default="schema.graphql")
    p.set_defaults(func=export_schema)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
