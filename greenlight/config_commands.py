"""`greenlight export` and `greenlight apply`: the configuration as one YAML document
(greenlight.workflow.config_file), out of the database and into it."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path


def add_commands(commands, settings, run_on_database) -> None:
    """Registers both; `settings` and `run_on_database` are greenlight.cli's: the settings
    from the environment, and a database problem as one line and exit status 1."""
    p = commands.add_parser(
        "export",
        help="write applications, environments, pipelines, groups, role bindings and freezes as YAML",
    )
    p.add_argument("-o", "--output", default="-", help="a file to write instead of standard output")
    p.set_defaults(func=partial(export_command, read_settings=settings, run=run_on_database))

    p = commands.add_parser("apply", help="make the database match a YAML document of `greenlight export`")
    p.add_argument("-f", "--file", required=True, help="the document (- for standard input)")
    p.add_argument("--dry-run", action="store_true", help="print the changes it would make; change nothing")
    p.add_argument(
        "--prune",
        action="store_true",
        help="also archive applications and environments, and remove role bindings, group members "
        "and freezes, that the file does not list",
    )
    p.add_argument("--as", dest="as_email", metavar="EMAIL", help="the super-admin to act as")
    p.set_defaults(func=partial(apply_command, read_settings=settings, run=run_on_database))


def export_command(args: argparse.Namespace, read_settings, run) -> int:
    from greenlight import db
    from greenlight.workflow import config_file

    settings = read_settings()

    async def work() -> str:
        await db.connect(settings.database_url)
        try:
            return await config_file.export()
        finally:
            await db.close()

    text = run("export", settings, work())
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


def apply_command(args: argparse.Namespace, read_settings, run) -> int:
    from greenlight import db, notifications
    from greenlight.errors import GreenlightError
    from greenlight.policies import Authorizer
    from greenlight.workflow import config_file

    name = "<stdin>" if args.file == "-" else args.file
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as error:
        print(f"greenlight apply: cannot read {name}: {error}", file=sys.stderr)
        return 2
    try:
        document = config_file.load(text)
        config_file.parse(document)  # the file's own faults, before the database is opened
    except config_file.ConfigRefused as refused:
        print(f"greenlight apply: {refused.located(name)}", file=sys.stderr)
        return 1
    settings = read_settings()
    notifications.configure(settings)

    async def work() -> list[str]:
        await db.connect(settings.database_url)
        try:
            actor = await config_file.actor_for(Authorizer(), args.as_email)
            return await config_file.apply(actor, document, prune=args.prune, dry_run=args.dry_run)
        finally:
            await db.close()

    try:
        changes = run("apply", settings, work())
    except config_file.ConfigRefused as refused:
        print(f"greenlight apply: {refused.located(name)}; nothing was changed", file=sys.stderr)
        return 1
    except GreenlightError as error:  # such as a COMMIT whose outcome is unknown
        print(f"greenlight apply: {error.message}", file=sys.stderr)
        return 1
    for change in changes:
        print(change)
    if not changes:
        print("no changes")
    elif args.dry_run:
        print(f"dry run: {len(changes)} change(s) not made")
    return 0
