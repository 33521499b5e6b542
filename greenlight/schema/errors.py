"""The one place where failures become the contract's `extensions.code`."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from tortoise.exceptions import IntegrityError

from greenlight.schema import ids
from greenlight.workflow.errors import GreenlightError

log = logging.getLogger("greenlight.errors")


class Authentication(SchemaExtension):
    """Every operation needs valid credentials (api.graphql: UNAUTHENTICATED).

    Checked once the document is parsed and validated, by answering the operation
    without running it: no resolver runs for an anonymous caller.
    """

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context.context
        if getattr(context, "actor_or_none", None) is None:
            error = GraphQLError(
                getattr(context, "auth_error", None) or "authentication required",
                extensions={"code": "UNAUTHENTICATED"},
            )
            self.execution_context.result = GraphQLExecutionResult(data=None, errors=[error])
        yield


def _extensions(error: GreenlightError) -> dict:
    extensions: dict = {"code": error.code}
    for key, value in error.extensions.items():
        if key == "existing":
            extensions["existingId"] = ids.encode_model(value)
        else:
            extensions[key] = value
    return extensions


def to_contract(error: GraphQLError, request_id: str) -> GraphQLError:
    if error.extensions and "code" in error.extensions:
        return error
    original = error.original_error
    if isinstance(original, GreenlightError):
        message, extensions = original.message, _extensions(original)
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
