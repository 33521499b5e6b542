"""Who may do what: the one place that reads role bindings and decides.

Two questions, no more:
- `Actor.may(action, scope)`: may this actor do this action on this scope?
- `Actor.scopes(action)`: on which scopes may this actor do it? (list queries turn the
  answer into a SQL WHERE, see `greenlight.models.visibility`)

plus, for R9, `Authorizer.users_with(action, scope)`: who may do it on a scope.
"""

from greenlight.policies.actions import Action
from greenlight.policies.authorizer import Actor, Authorizer, Scope

__all__ = ["Action", "Actor", "Authorizer", "Scope"]
