"""Library internals fenced: every use of a private part of Tortoise's ORM, in one module.

Three speed-ups reach below Tortoise's public API (pinned: tortoise-orm 1.1.9):

- prepared statements (greenlight.models.prepared): a queryset's SQL, built once, and
  run again through Tortoise's executor;
- a relation filled with rows already read (`keep_fetched`), so that reading it again
  costs no query;
- a related object Tortoise has already fetched (`fetched_related`), without the query
  that reading the attribute would build.

`check()` looks, once, at start-up (greenlight.db.connect), for every private part these
use. When one is missing (a dependency changed under them), each use takes the public
path instead, slower and with the same answers, and the fallback is logged once.
`greenlight.sqlite` fences its own (aiosqlite's and Tortoise's SQLite client's) alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from tortoise.backends.base.executor import BaseExecutor
from tortoise.fields.relational import ReverseRelation
from tortoise.models import Model
from tortoise.queryset import QuerySet

log = logging.getLogger("greenlight.internals")

# What each use reads or calls, by the class it expects it on.
EXPECTED: dict[type, tuple[str, ...]] = {
    QuerySet: ("_make_query", "_annotations", "_prefetch_map", "_select_related_idx", "_select_for_update"),
    Model: ("_choose_db",),
    BaseExecutor: ("execute_select",),
    ReverseRelation: ("_set_result_for_query",),
}

_private_ok: bool | None = None  # None until checked


def _missing() -> list[str]:
    """The private parts this module uses that the installed Tortoise lacks."""
    missing = []
    for cls, names in EXPECTED.items():
        # Instance attributes are set in __init__: they are looked for in its code.
        code = getattr(cls.__init__, "__code__", None)
        init_names = set(code.co_names) if code is not None else set()
        for name in names:
            if not hasattr(cls, name) and name not in init_names:
                missing.append(f"{cls.__qualname__}.{name}")
    return missing


def check() -> bool:
    """Whether the private parts are all there (looked at once; a fallback logged once)."""
    global _private_ok
    if _private_ok is None:
        missing = _missing()
        _private_ok = not missing
        if missing:
            log.warning(
                "Tortoise lacks %s: prepared statements and kept relations are off, "
                "every query is built by Tortoise's public API (slower, same answers)",
                ", ".join(missing),
            )
    return _private_ok


def private_ok() -> bool:
    return _private_ok if _private_ok is not None else check()


# --- prepared statements ---------------------------------------------------------------------


def queryset_parts(queryset: QuerySet) -> tuple[bool, list, bool]:
    """Builds the queryset's SQL; returns whether it annotates or prefetches (then it is
    not prepared), its select_related layout and whether it locks rows."""
    if queryset._annotations or queryset._prefetch_map:
        return False, [], False
    queryset._make_query()
    return True, list(queryset._select_related_idx), bool(queryset._select_for_update)


def database_of(model: type[Model], for_write: bool = False) -> Any:
    """The client a model's queries run on (the transaction's, inside one)."""
    return model._choose_db(for_write) if for_write else model._choose_db()


async def run_select(model: type[Model], db: Any, sql: str, values: list, select_related_idx: list) -> list:
    """Rows of `sql` as models (and their select_related objects), as Tortoise makes them."""
    executor = db.executor_class(model=model, db=db, select_related_idx=select_related_idx)
    return await executor.execute_select(sql, values)


# --- relations already read --------------------------------------------------------------------


async def keep_fetched(instance: Model, relation: str, rows: Iterable[Model], *lookups: str) -> None:
    """`instance.<relation>` holds `rows` from now on (rows already read, current in this
    transaction), so iterating it costs no query. On the public path the relation is
    fetched again, with `lookups` (e.g. "approvals__user"; the relation alone by default):
    the same rows (their users are loaded by id where they are not fetched)."""
    if private_ok():
        getattr(instance, relation)._set_result_for_query(list(rows))
        return
    await instance.fetch_related(*(lookups or (relation,)))


def fetched_related(instance: Model, name: str) -> Any:
    """The related object `name` of `instance` if Tortoise has fetched it already (with
    select_related or fetch_related), else None; never a query."""
    if not private_ok():
        return None
    return getattr(instance, f"_{name}", None)
