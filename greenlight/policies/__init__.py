"""Who may do what: the one place that reads role bindings and decides.

Two questions, no more:
- `Actor.may(action, scope)`: may this actor do this action on this scope?
- `Actor.scopes(action)`: on which scopes may this actor do it? (list queries turn the
  answer into a SQL WHERE, see `greenlight.models.visibility`)

plus, for R9, `Authorizer.users_with(action, scope)`: who may do it on a scope.

Casbin decides; each process caches its decisions and, on every request
(`Authorizer.refresh`), applies the changes to role bindings, memberships and users'
active state recorded since (by the database's triggers, see
`greenlight.policies.changes`), forgetting only the decisions they can change.

Modules: `matcher` (Casbin, made to scale), `rules` (who holds what, in memory),
`changes` (the change reader and the change log), `authorizer` (the decision API).
"""

from greenlight.policies.actions import Action
from greenlight.policies.authorizer import Actor, Authorizer, Scope

__all__ = ["Action", "Actor", "Authorizer", "Scope"]
