"""Turns the scopes a user may act on into a SQL filter (R1)."""

from __future__ import annotations

from collections.abc import Iterable

from tortoise.expressions import Q

from greenlight.scopes import Scope


def scope_q(scopes: Iterable[Scope], app_field: str, env_field: str | None = None) -> Q:
    """Rows whose application (and environment, where given) fall in one of the scopes.

    `app_field`/`env_field` are the lookups to the names, e.g. "pipeline__application__name".
    An object with no environment (an image) is covered by any scope on its application.
    """
    parts: list[Q] = []
    for scope in scopes:
        conditions = {}
        if not scope.every_application:
            conditions[app_field] = scope.application
        if env_field is not None and not scope.every_environment:
            conditions[env_field] = scope.environment
        if not conditions:
            return Q()  # one scope covers everything
        parts.append(Q(**conditions))
    if not parts:
        return Q(id__in=[])
    return Q(*parts, join_type="OR")
