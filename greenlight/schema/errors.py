"""The one place where failures become the contract's `extensions.code`."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
)
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType
from tortoise.exceptions import IntegrityError

from greenlight import db
from greenlight.errors import GreenlightError
from greenlight.limits.cost import operation_cost
from greenlight.limits.rates import TokenBucket, retry_after_header
from greenlight.models import RoleBinding
from greenlight.schema import ids

log = logging.getLogger("greenlight.errors")


class Authentication(SchemaExtension):
    """Every operation needs valid credentials (api.graphql: UNAUTHENTICATED), answered
    without running it: no resolver runs for an anonymous caller (see also
    SayNothingBeforeAuthentication). A database that cannot be reached to check them is
    UNAVAILABLE."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context.context
        request = getattr(context, "request", None)
        over_http = getattr(request, "scope", {}).get("type") == "http"
        refusal = _refusal(context)
        if refusal is not None:
            self.execution_context.result = GraphQLExecutionResult(data=None, errors=[refusal])
        elif over_http and self.execution_context.operation_type == OperationType.SUBSCRIPTION:
            error = GraphQLError(
                "subscriptions run over WebSocket (graphql-transport-ws) on /graphql",
                extensions={"code": "BAD_USER_INPUT"},
            )
            self.execution_context.result = GraphQLExecutionResult(data=None, errors=[error])
        yield


class SayNothingBeforeAuthentication(SchemaExtension):
    """Before authentication, nothing is said about the schema: an anonymous caller's
    document is answered UNAUTHENTICATED in place of validation's errors (no "Did you
    mean ...?", no field or type names), whether introspection is on or off. Listed after
    ValidationCache, which sets its errors first; validation then has nothing to add."""

    def on_validate(self) -> Iterator[None]:
        refusal = _refusal(self.execution_context.context)
        if refusal is not None:
            self.execution_context.pre_execution_errors = [refusal]
        yield


def _refusal(context) -> GraphQLError | None:
    """UNAUTHENTICATED (or UNAVAILABLE) for a caller without an actor, else None."""
    if getattr(context, "actor_or_none", None) is not None:
        return None
    unavailable = getattr(context, "unavailable", False)
    return GraphQLError(
        UNAVAILABLE_MESSAGE
        if unavailable
        else (getattr(context, "auth_error", None) or "authentication required"),
        extensions={"code": "UNAVAILABLE" if unavailable else "UNAUTHENTICATED"},
    )


class MutationRateLimit(SchemaExtension):
    """Mutations per credential per minute (GREENLIGHT_MUTATIONS_PER_MINUTE): RATE_LIMITED
    with `retryAfter` seconds (and a Retry-After header) beyond it."""

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context.context
        key = getattr(context, "credential_key", None)
        is_mutation = self.execution_context.operation_type == OperationType.MUTATION
        if key and is_mutation and self.execution_context.result is None:
            wait = self.bucket.take(key, _mutation_fields(self.execution_context))
            if wait > 0:
                retry_after = retry_after_header(wait)
                error = GraphQLError(
                    f"too many mutations; retry in {retry_after} s",
                    extensions={"code": "RATE_LIMITED", "retryAfter": int(retry_after)},
                )
                self.execution_context.result = GraphQLExecutionResult(data=None, errors=[error])
                response = getattr(context, "response", None)
                if response is not None and hasattr(response, "headers"):
                    response.headers["Retry-After"] = retry_after
        yield


class QueryCost(SchemaExtension):
    """The most objects an answer can hold, computed from the document and its variables
    before anything runs (greenlight.limits.cost): over GREENLIGHT_MAX_QUERY_COST it is
    QUERY_TOO_COMPLEX, with the cost and the limit in `extensions`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        if execution.result is None and execution.graphql_document is not None:
            cost = operation_cost(
                execution.schema._schema,
                execution.graphql_document,
                execution.operation_name,
                execution.variables,
            )
            if cost > self.limit:
                error = GraphQLError(
                    f"this operation could return {cost} objects, more than the {self.limit} allowed: "
                    "ask for smaller pages (first) or fewer nested lists",
                    extensions={"code": "QUERY_TOO_COMPLEX", "cost": cost, "limit": self.limit},
                )
                execution.result = GraphQLExecutionResult(data=None, errors=[error])
        yield


class OperationTimedOut(Exception):
    """A query or mutation ran past GREENLIGHT_OPERATION_TIMEOUT_SECONDS and was abandoned."""

    def __init__(self, seconds: float, mutation: bool) -> None:
        message = f"the operation took longer than {seconds:g} s and was abandoned"
        if mutation:  # each mutation is one transaction
            message += "; the mutation running then was rolled back, any before it are done"
        super().__init__(message)
        self.seconds = seconds


class OperationTimeLimit(SchemaExtension):
    """Each query or mutation runs at most `seconds` (0: no limit); then it is cancelled,
    which rolls back the transaction of a mutation in progress, and answered
    OPERATION_TIMEOUT. Subscriptions live as long as their socket, so they are not timed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def on_execute(self) -> AsyncIterator[None]:
        if self.seconds <= 0 or self.execution_context.operation_type == OperationType.SUBSCRIPTION:
            yield
            return
        try:
            async with asyncio.timeout(self.seconds):
                yield
        except TimeoutError:
            mutation = self.execution_context.operation_type == OperationType.MUTATION
            raise OperationTimedOut(self.seconds, mutation) from None


def _mutation_fields(execution_context) -> int:
    """How many mutations one operation runs: each top-level field counts (aliases too)."""
    document = execution_context.graphql_document
    name = execution_context.operation_name
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            name is None or (definition.name and definition.name.value == name)
        ):
            return max(1, _count_fields(definition.selection_set, fragments, set()))
    return 1


def _count_fields(selection_set, fragments, seen: set[str]) -> int:
    count = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            count += selection.name.value != "__typename"
        elif isinstance(selection, InlineFragmentNode):
            count += _count_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                count += _count_fields(fragment.selection_set, fragments, seen | {selection.name.value})
    return count


UNAVAILABLE_MESSAGE = "the database cannot be reached right now; retry shortly"
TOO_COMPLEX = re.compile(
    r"exceeds maximum operation depth|aliases found\. Allowed|Validation aborted|"
    r"Document contains more than \d+ tokens|Source contains more than"
)


# Extensions that list database ids: clients get typed ids ("User:3"), as everywhere else.
TYPED_ID_LISTS = {"ineligibleUserIds": "User"}


def _extensions(error: GreenlightError) -> dict:
    extensions: dict = {"code": error.code}
    for key, value in error.extensions.items():
        if key in TYPED_ID_LISTS:
            extensions[key] = [ids.encode(TYPED_ID_LISTS[key], i) for i in value]
        elif key == "existing":
            group_binding = isinstance(value, RoleBinding) and value.group_id is not None
            extensions["existingId"] = (
                ids.encode("GroupRoleBinding", value.id) if group_binding else ids.encode_model(value)
            )
        else:
            extensions[key] = value
    return extensions


def to_contract(error: GraphQLError, request_id: str) -> GraphQLError:
    if error.extensions and "code" in error.extensions:
        return error
    original = error.original_error
    if original is None and TOO_COMPLEX.search(error.message):
        message, extensions = error.message, {"code": "QUERY_TOO_COMPLEX"}
    elif isinstance(original, GreenlightError):
        message, extensions = original.message, _extensions(original)
    elif isinstance(original, OperationTimedOut):
        message = str(original)
        extensions = {"code": "OPERATION_TIMEOUT", "timeoutSeconds": original.seconds}
    elif db.is_unavailable(original):
        log.warning("database unavailable (request id %s): %s", request_id, original)
        message, extensions = UNAVAILABLE_MESSAGE, {"code": "UNAVAILABLE"}
    elif isinstance(original, IntegrityError):
        # A unique constraint caught a race the workflow's own check could not see.
        message, extensions = "this would duplicate something that exists", {"code": "CONFLICT"}
    elif original is None or isinstance(original, GraphQLError):
        # Syntax, validation and variable-coercion errors: the request itself is wrong.
        message, extensions = error.message, {"code": "BAD_USER_INPUT"}
    else:
        log.error("unexpected error (request id %s)", request_id, exc_info=original)
        message = f"internal error (request id {request_id})"
        extensions = {"code": "INTERNAL", "requestId": request_id}
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


class ErrorCodes(SchemaExtension):
    """Gives every error its contract code; unexpected ones are logged and masked."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            request_id = getattr(self.execution_context.context, "request_id", "-")
            result.errors = [to_contract(e, request_id) for e in result.errors]
