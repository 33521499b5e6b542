"""What an API token may do: its owner's rights now, within the token's own limits.

A token may be limited to some actions (names of policy.csv), some applications and some
environments. The limits only ever take away: every decision asks the owner's roles as
they are at that moment (so revoking the owner's role takes it from the token at once)
and then the token's limits. Seeing (`view`) stays within the application and
environment limits whatever the action limits say, so a token limited to registering
images still reads back what it registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from greenlight.policies.actions import Action

WILDCARD = "*"

# The action names a token may be limited to: those of policy.csv.
ACTION_NAMES = tuple(action.value for action in Action)


@dataclass(frozen=True)
class TokenScope:
    """A token's limits, by name; None in a field: no limit there."""

    actions: frozenset[str] | None = None
    applications: frozenset[str] | None = None
    environments: frozenset[str] | None = None
    expires_at: datetime | None = None  # the token's own expiry (a token it issues ends by then)

    @property
    def limited(self) -> bool:
        return self.actions is not None or self.applications is not None or self.environments is not None

    def allows_action(self, action: Action) -> bool:
        return self.actions is None or action.value in self.actions or action == Action.VIEW

    def covers(self, application: str, environment: str) -> bool:
        """The whole scope lies within the limits: a wildcard is covered only without a limit."""
        return (self.applications is None or application in self.applications) and (
            self.environments is None or environment in self.environments
        )

    def permits(self, action: Action, application: str, environment: str) -> bool:
        return self.allows_action(action) and self.covers(application, environment)

    def narrow(self, application: str, environment: str) -> list[tuple[str, str]]:
        """The part of an owner's scope that lies within the limits (for list filters)."""
        apps = _within(application, self.applications)
        envs = _within(environment, self.environments)
        return [(app, env) for app in apps for env in envs]

    def refusal(self, action: Action, application: str, environment: str) -> str | None:
        """Why the limits refuse, in words for a person; None when they allow."""
        if not self.allows_action(action):
            allowed = ", ".join(sorted(self.actions or ())) or "no action"
            return f"This API token is limited to {allowed}; it may not {action.value}"
        if not self.covers(application, environment):
            return f"This API token is not valid for {application}/{environment}"
        return None

    def within(self, other: TokenScope) -> bool:
        """These limits allow nothing that `other` refuses (a token issued by a token)."""
        return all(
            theirs is None or (mine is not None and mine <= theirs)
            for mine, theirs in (
                (self.actions, other.actions),
                (self.applications, other.applications),
                (self.environments, other.environments),
            )
        )


UNLIMITED = TokenScope()


def _within(name: str, limit: frozenset[str] | None) -> list[str]:
    if limit is None:
        return [name]
    if name == WILDCARD:
        return sorted(limit)
    return [name] if name in limit else []
