"""Querysets whose SQL Tortoise builds once, for the statements on the path of every
request (authentication) and of `approveRequest` (its locked reads), where building the
SQL and its joins costs more than running it.

`Prepared(Model, lambda value: Model.filter(...=value)...)` builds the queryset once per
database dialect with a marker in the value's place, keeps the SQL Tortoise made and
where the marker went among its parameters, and from then on runs that same SQL with the
value in the marker's place, through Tortoise's own executor: rows become models, and
their `select_related` objects, as Tortoise makes them. A queryset whose SQL does not
carry the marker once as a parameter (Tortoise inlined it, or the builder ignored it) is
never prepared: it is built again on every call. What this reads of Tortoise's private
parts is in greenlight.internals; without them, every call builds its queryset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tortoise.models import Model
from tortoise.queryset import QuerySet

from greenlight import internals

MODEL = TypeVar("MODEL", bound=Model)

MARKER = -7_294_015_836_431  # a value no query is ever asked for


@dataclass(frozen=True)
class _Statement:
    sql: str
    values: tuple
    at: int  # the marker's place among the values
    select_related_idx: list
    for_update: bool


class Prepared(Generic[MODEL]):
    """`build(value)` is a queryset of `model` (no annotations, no prefetching) whose SQL
    differs from one value to another only in that value."""

    def __init__(self, model: type[MODEL], build: Callable[[Any], QuerySet[MODEL]]) -> None:
        self.model = model
        self._build = build
        self._statements: dict[tuple[str, str], _Statement | None] = {}

    def _prepare(self) -> _Statement | None:
        queryset = self._build(MARKER)
        if queryset.model is not self.model:
            return None
        preparable, select_related_idx, for_update = internals.queryset_parts(queryset)
        if not preparable:
            return None
        sql, values = queryset.query.get_parameterized_sql()
        places = [n for n, value in enumerate(values) if value in (MARKER, str(MARKER))]
        if len(places) != 1 or str(MARKER) in sql:
            return None
        return _Statement(
            sql,
            tuple(values),
            places[0],
            select_related_idx,
            for_update,
        )

    async def all(self, value: Any) -> list[MODEL]:
        """What `await build(value)` gives, as a list."""
        if not internals.private_ok():
            return list(await self._build(value))
        db = internals.database_of(self.model)
        key = (db.connection_name, db.capabilities.dialect)
        if key not in self._statements:
            self._statements[key] = self._prepare()
        statement = self._statements[key]
        if statement is None:
            return list(await self._build(value))
        if statement.for_update:
            db = internals.database_of(self.model, for_write=True)
        values = list(statement.values)
        values[statement.at] = value
        return await internals.run_select(self.model, db, statement.sql, values, statement.select_related_idx)

    async def first(self, value: Any) -> MODEL | None:
        found = await self.all(value)
        return found[0] if found else None
