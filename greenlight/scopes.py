"""A scope: an application and an environment, either of which may be "*", every one.

The meaning of "*" is written here once; every layer asks a `Scope` (does it cover this
application, this environment, that scope?) rather than comparing with "*" itself.
"""

from __future__ import annotations

from dataclasses import dataclass

WILDCARD = "*"


@dataclass(frozen=True)
class Scope:
    """An application name and an environment name, either of which may be '*'."""

    application: str
    environment: str

    @property
    def domain(self) -> str:
        """The scope as Casbin's domain: "<application>/<environment>"."""
        return f"{self.application}/{self.environment}"

    @property
    def every_application(self) -> bool:
        return self.application == WILDCARD

    @property
    def every_environment(self) -> bool:
        return self.environment == WILDCARD

    @property
    def is_everything(self) -> bool:
        return self.every_application and self.every_environment

    def covers_application(self, name: str) -> bool:
        return self.every_application or self.application == name

    def covers_environment(self, name: str) -> bool:
        return self.every_environment or self.environment == name

    def covers(self, other: Scope) -> bool:
        """Whether a role held on this scope holds on `other`."""
        return self.covers_application(other.application) and self.covers_environment(other.environment)

    def covering(self) -> set[Scope]:
        """The scopes whose roles hold on this one: itself, its application's, its
        environment's, and everything."""
        return {
            self,
            Scope(self.application, WILDCARD),
            Scope(WILDCARD, self.environment),
            EVERYTHING,
        }


EVERYTHING = Scope(WILDCARD, WILDCARD)
