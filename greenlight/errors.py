"""The refusals, each carrying its contract code (api.graphql): raised by the workflow where
a rule is decided, and by the adapters beneath it; schema/errors.py turns them into
`extensions.code`."""

from __future__ import annotations

from typing import Any


class GreenlightError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class Unauthenticated(GreenlightError):
    code = "UNAUTHENTICATED"


class Forbidden(GreenlightError):
    code = "FORBIDDEN"


class TokenScopeRefused(GreenlightError):
    """The token's owner may, but the API token in use is limited to less."""

    code = "TOKEN_SCOPE"


class ApplicationArchived(GreenlightError):
    code = "APPLICATION_ARCHIVED"


class EnvironmentArchived(GreenlightError):
    code = "ENVIRONMENT_ARCHIVED"


class NotFound(GreenlightError):
    code = "NOT_FOUND"


class BadUserInput(GreenlightError):
    code = "BAD_USER_INPUT"


class SelfApproval(GreenlightError):
    code = "SELF_APPROVAL"


class ApproverCannotDeploy(GreenlightError):
    code = "APPROVER_CANNOT_DEPLOY"


class NotApproved(GreenlightError):
    code = "NOT_APPROVED"


class DeployFrozen(GreenlightError):
    code = "DEPLOY_FROZEN"


class StaleImage(GreenlightError):
    code = "STALE_IMAGE"


class ChecksNotPassed(GreenlightError):
    """A required image check has not PASSED (missing, FAILED or PENDING)."""

    code = "CHECKS_NOT_PASSED"


class PromotionRequired(GreenlightError):
    """The image has not been HEALTHY on the environment the pipeline promotes from."""

    code = "PROMOTION_REQUIRED"


class InvalidState(GreenlightError):
    code = "INVALID_STATE"


class Conflict(GreenlightError):
    code = "CONFLICT"


class OutcomeUnknown(GreenlightError):
    """The connection to the database failed while the COMMIT was on its way or its answer
    was: the change may or may not have been made. A client reads back before retrying."""

    code = "OUTCOME_UNKNOWN"


class RateLimited(GreenlightError):
    code = "RATE_LIMITED"


def not_found(kind: str) -> NotFound:
    """The same words whether the object does not exist or the caller cannot see it (R1)."""
    return NotFound(f"{kind} not found")
