"""Temporary: `greenlight.errors` under its old name, for branches that still import it here."""

from greenlight.errors import (  # noqa: F401
    ApproverCannotDeploy,
    BadUserInput,
    Conflict,
    DeployFrozen,
    Forbidden,
    GreenlightError,
    InvalidState,
    NotApproved,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    SelfApproval,
    StaleImage,
    Unauthenticated,
    not_found,
)

__all__ = [
    "GreenlightError",
    "Unauthenticated",
    "Forbidden",
    "NotFound",
    "BadUserInput",
    "SelfApproval",
    "ApproverCannotDeploy",
    "NotApproved",
    "DeployFrozen",
    "StaleImage",
    "InvalidState",
    "Conflict",
    "OutcomeUnknown",
    "RateLimited",
    "not_found",
]
