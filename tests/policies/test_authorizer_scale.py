"""The Authorizer at scale decides as plain Casbin does, and applying changes one by one
leaves it as a full load would. Correctness only: the benchmark
(bench/authorization.py) measures the time.

A world of some thousands of role bindings (direct and through groups, on exact and
wildcard scopes, some users deactivated) is written in bulk; the oracle is an unmodified
`casbin.Enforcer` on model.conf and policy.csv with its default role manager, fed with `g`
rules built here from the rows. Then random grants, revocations, group bindings,
memberships and (de)activations go through the workflow, and authorizers that applied
them change by change, in one batch, by full reloads, and a fresh one all agree with the
oracle, decision cache included.
"""

from __future__ import annotations

import random
from collections import defaultdict

import casbin
import pytest
from casbin.rbac import default_role_manager

from greenlight.errors import GreenlightError
from greenlight.models import Application, Environment, Group, GroupMember, Role, RoleBinding, User
from greenlight.policies import Action, Actor, Authorizer, Scope
from greenlight.policies import authorizer as authorizer_module
from greenlight.policies.authorizer import (
    MODEL_PATH,
    POLICY_PATH,
    DomainRoleManager,
    GroupingRules,
    changes_since,
    group_subject,
    subject,
)
from greenlight.workflow import identity, teams

USERS = 300
GROUPS = 12
APPS = [f"app-{i}" for i in range(25)]
ENVS = [f"env-{i}" for i in range(6)]
DIRECT = 3000
THROUGH_GROUPS = 120
ROLES = [Role.VIEWER, Role.BUILD_AND_DEPLOY, Role.IMAGE_APPROVER, Role.DEPLOY_AGENT]
ADMIN_ID = 1


def random_scope(rng: random.Random) -> tuple[str, str]:
    kind = rng.random()
    if kind < 0.5:
        return rng.choice(APPS), rng.choice(ENVS)
    if kind < 0.8:
        return rng.choice(APPS), "*"
    if kind < 0.97:
        return "*", rng.choice(ENVS)
    return "*", "*"


async def build_world(rng: random.Random) -> None:
    await Application.bulk_create([Application(name=name) for name in APPS])
    await Environment.bulk_create([Environment(name=name) for name in ENVS])
    await User.bulk_create(
        [
            User(
                id=i, email=f"u{i}@example.com", name=f"u{i}", is_active=i == ADMIN_ID or rng.random() > 0.05
            )
            for i in range(1, USERS + 1)
        ]
    )
    await Group.bulk_create([Group(id=g, name=f"team-{g}") for g in range(1, GROUPS + 1)])
    seen: set[tuple] = set()
    rows = [RoleBinding(user_id=ADMIN_ID, role=Role.SUPER_ADMIN, application="*", environment="*")]
    rows.append(RoleBinding(user_id=2, role=Role.SUPER_ADMIN, application="*", environment="*"))
    while len(rows) < DIRECT:
        key = (rng.randint(3, USERS), rng.choice(ROLES), *random_scope(rng))
        if key not in seen:
            seen.add(key)
            rows.append(RoleBinding(user_id=key[0], role=key[1], application=key[2], environment=key[3]))
    while len(rows) < DIRECT + THROUGH_GROUPS:
        key = ("g", rng.randint(1, GROUPS), rng.choice(ROLES), *random_scope(rng))
        if key not in seen:
            seen.add(key)
            rows.append(RoleBinding(group_id=key[1], role=key[2], application=key[3], environment=key[4]))
    await RoleBinding.bulk_create(rows)
    members = {(rng.randint(1, GROUPS), u) for u in range(3, USERS + 1) for _ in range(rng.choice((0, 1, 2)))}
    await GroupMember.bulk_create([GroupMember(group_id=g, user_id=u) for g, u in sorted(members)])


async def oracle() -> casbin.Enforcer:
    """Plain Casbin: model.conf, policy.csv, its default domain role manager, and the `g`
    rules of the stored rows (a membership links the member to the group on every scope the
    group holds a role on)."""
    enforcer = casbin.Enforcer(str(MODEL_PATH), str(POLICY_PATH))
    active = set(await User.filter(is_active=True).values_list("id", flat=True))
    rules = []
    domains = defaultdict(set)
    for user_id, group_id, role, app, env in await RoleBinding.all().values_list(
        "user_id", "group_id", "role", "application", "environment"
    ):
        if group_id is not None:
            rules.append([group_subject(group_id), str(role), f"{app}/{env}"])
            domains[group_id].add(f"{app}/{env}")
        elif user_id in active:
            rules.append([subject(user_id), str(role), f"{app}/{env}"])
    for group_id, user_id in await GroupMember.all().values_list("group_id", "user_id"):
        if user_id in active:
            rules.extend([subject(user_id), group_subject(group_id), domain] for domain in domains[group_id])
    enforcer.get_model().model["g"]["g"].policy = rules
    enforcer.build_role_links()
    return enforcer


def requests(rng: random.Random, count: int) -> list[tuple[int, Action, Scope]]:
    found = []
    for _ in range(count):
        app = rng.choice([*APPS, "*"]) if rng.random() < 0.9 else "*"
        env = rng.choice([*ENVS, "*"]) if rng.random() < 0.9 else "*"
        found.append((rng.randint(1, USERS), rng.choice(list(Action)), Scope(app, env)))
    return found


def disagreements(authorizer: Authorizer, plain: casbin.Enforcer, sample) -> list[str]:
    wrong = []
    for user, action, scope in sample:
        expected = plain.enforce(subject(user), scope.application, scope.environment, action.value)
        if authorizer.may(user, action, scope) != expected:
            wrong.append(f"user {user} {action.value} on {scope.domain}: expected {expected}")
    return wrong


def same_state(one: Authorizer, other: Authorizer, sample) -> None:
    """Rules, role links, grants and answers of two authorizers are the same."""
    a, b = one._rules, other._rules
    assert set(map(tuple, a.enforcer.get_grouping_policy())) == set(
        map(tuple, b.enforcer.get_grouping_policy())
    )
    assert a.enforcer.role_manager._roles == b.enforcer.role_manager._roles
    assert a.enforcer.role_manager._users == b.enforcer.role_manager._users
    for user in range(1, USERS + 1):
        assert sorted(a.grants(user), key=repr) == sorted(b.grants(user), key=repr), user
    for action in Action:
        for user in range(1, USERS + 1, 7):
            assert sorted(one.scopes(user, action), key=repr) == sorted(other.scopes(user, action), key=repr)
    for _, action, scope in sample[:60]:
        assert one.users_with(action, scope) == other.users_with(action, scope), (action, scope)


async def random_change(rng: random.Random, actor: Actor) -> str:
    """One change through the workflow, as a super-admin's mutation makes it."""
    kind = rng.choice(["grant", "revoke", "group grant", "group revoke", "join", "leave", "deactivate"])
    user = rng.randint(3, USERS)
    group = rng.randint(1, GROUPS)
    try:
        if kind == "grant":
            await identity.grant_role(actor, user, rng.choice(ROLES), *random_scope(rng))
        elif kind == "revoke":
            ids = await RoleBinding.filter(user_id=user).values_list("id", flat=True)
            if ids:
                await identity.revoke_role(actor, rng.choice(ids))
        elif kind == "group grant":
            await teams.grant_group_role(actor, group, rng.choice(ROLES), *random_scope(rng))
        elif kind == "group revoke":
            ids = await RoleBinding.filter(group_id=group).values_list("id", flat=True)
            if ids:
                await teams.revoke_group_role(actor, rng.choice(ids))
        elif kind == "join":
            await teams.add_member(actor, group, user)
        elif kind == "leave":
            await teams.remove_member(actor, group, user)
        elif (await User.get(id=user)).is_active:
            await identity.deactivate_user(actor, user)
        else:
            await identity.reactivate_user(actor, user)
    except GreenlightError:  # a duplicate, no such membership: refused, nothing changed
        pass
    return kind


async def test_decisions_at_scale_match_plain_casbin(database):
    rng = random.Random(8)
    await build_world(rng)
    authorizer = Authorizer()
    await authorizer.refresh()
    plain = await oracle()
    sample = requests(rng, 3000)
    # and requests covered by bindings, mostly for an action of the role, so many are allowed
    actions_of = defaultdict(list)
    for _, role, action in authorizer_module._role_action_lines():
        actions_of[role].append(Action(action))
    bindings = RoleBinding.filter(user_id__isnull=False).limit(600)
    for user, role, app, env in await bindings.values_list("user_id", "role", "application", "environment"):
        app = rng.choice(APPS) if app == "*" and rng.random() < 0.7 else app
        env = rng.choice(ENVS) if env == "*" and rng.random() < 0.7 else env
        action = rng.choice(actions_of[str(role)]) if rng.random() < 0.7 else rng.choice(list(Action))
        sample.append((user, action, Scope(app, env)))
    wrong = disagreements(authorizer, plain, sample)
    allowed = sum(authorizer.may(u, a, s) for u, a, s in sample)
    assert 300 < allowed < len(sample) - 300, allowed  # a mixture
    assert not wrong, f"{len(wrong)} of {len(sample)}:\n" + "\n".join(wrong[:20])
    # cached answers are the same as Casbin's fresh ones
    assert all(authorizer.may(u, a, s) == authorizer.decide(u, a, s) for u, a, s in sample)
    # users_with agrees with the oracle too
    for _, action, scope in sample[:25]:
        expected = {
            user
            for user in range(1, USERS + 1)
            if plain.enforce(subject(user), scope.application, scope.environment, action.value)
        }
        assert authorizer.users_with(action, scope) == expected, (action, scope)


async def test_changes_applied_one_by_one_or_in_a_batch_equal_a_full_load(database, monkeypatch):
    rng = random.Random(5)
    await build_world(rng)
    writer, stepwise, batch, reloading = Authorizer(), Authorizer(), Authorizer(), Authorizer()
    for one in (writer, stepwise, batch, reloading):
        await one.refresh()
    sample = requests(rng, 2500)
    for one in (stepwise, batch):  # every answer cached before the changes
        for user, action, scope in sample:
            one.may(user, action, scope)
    admin = await User.get(id=ADMIN_ID)
    kinds = defaultdict(int)
    for _ in range(150):
        await writer.refresh()
        kinds[await random_change(rng, Actor(admin, writer))] += 1
        await stepwise.refresh()
    await writer.refresh()
    assert min(kinds.values()) >= 10, kinds

    latest, changes = await changes_since(batch.version)
    assert 100 < len(changes) < authorizer_module.FULL_RELOAD_AFTER
    await batch.refresh()  # every change at once, incrementally
    monkeypatch.setattr(authorizer_module, "FULL_RELOAD_AFTER", 10)
    await reloading.refresh()  # too far behind: a full reload
    monkeypatch.undo()
    fresh = Authorizer()
    await fresh.refresh()
    for one in (stepwise, batch, reloading, writer, fresh):
        assert one.version == latest

    plain = await oracle()
    for name, one in {
        "one by one": stepwise,
        "in a batch": batch,
        "reloaded": reloading,
        "fresh": fresh,
    }.items():
        wrong = disagreements(one, plain, sample)
        assert not wrong, f"{name}: {len(wrong)} wrong:\n" + "\n".join(wrong[:20])
        if one is not fresh:
            same_state(one, fresh, sample)


async def test_a_database_behind_the_applied_version_is_loaded_afresh(database):
    """A change log that went back (a database restored from a backup) is not trusted: the
    next refresh loads everything."""
    rng = random.Random(3)
    await build_world(rng)
    authorizer = Authorizer()
    await authorizer.refresh()
    admin = await User.get(id=ADMIN_ID)
    await identity.grant_role(Actor(admin, authorizer), 7, Role.VIEWER, "app-1", "env-1")
    await authorizer.refresh()
    assert authorizer.may(7, Action.VIEW, Scope("app-1", "env-1"))
    authorizer._version += 100  # as if it had applied changes the database no longer has
    await authorizer.refresh()
    assert authorizer.version == (await changes_since(None))[0]
    assert authorizer.may(7, Action.VIEW, Scope("app-1", "env-1"))


# --- the parts -------------------------------------------------------------------------------------


def test_domain_role_manager_follows_casbins_link_semantics():
    manager = DomainRoleManager(max_hierarchy_level=3)
    manager.add_link("user:1", "group:1", "a/b")
    manager.add_link("group:1", "viewer", "a/b")
    manager.add_link("user:2", "viewer", "a/*")
    assert manager.has_link("user:1", "viewer", "a/b")  # through the group
    assert not manager.has_link("user:1", "viewer", "a/*")  # links are per domain
    assert manager.has_link("viewer", "viewer", "x/y")  # a name holds itself
    assert sorted(manager.get_users("viewer", "a/b")) == ["group:1"]
    assert manager.get_roles("user:1", "a/b") == ["group:1"]
    # inheritance is followed as far as Casbin's own role manager follows it
    chain = ["user:1", "group:1", "viewer", "deep", "deeper"]
    casbins = default_role_manager.RoleManager(3)
    for name1, name2 in zip(chain, chain[1:], strict=False):
        manager.add_link(name1, name2, "a/b")
        casbins.add_link(name1, name2)
    for name in chain:
        assert manager.has_link("user:1", name, "a/b") == casbins.has_link("user:1", name), name
    assert not manager.has_link("user:1", "deep", "a/b")  # beyond max_hierarchy_level
    manager.add_link("user:1", "group:1", "a/b")  # twice: still one link
    manager.delete_link("group:1", "viewer", "a/b")
    assert not manager.has_link("user:1", "viewer", "a/b")
    assert manager.get_users("viewer", "a/b") == []
    manager.delete_link("nobody", "viewer", "a/b")  # absent: nothing to do
    with pytest.raises(RuntimeError):
        manager.has_link("user:1", "viewer", "a", "b")


def test_grouping_rules_behave_as_casbins_list():
    rules = GroupingRules([["user:1", "viewer", "a/b"]])
    assert ["user:1", "viewer", "a/b"] in rules
    rules.append(["user:2", "viewer", "a/b"])
    assert len(rules) == 2
    assert list(rules) == [["user:1", "viewer", "a/b"], ["user:2", "viewer", "a/b"]]
    assert rules[1] == ["user:2", "viewer", "a/b"]
    rules.remove(["user:1", "viewer", "a/b"])
    assert ["user:1", "viewer", "a/b"] not in rules
    with pytest.raises(ValueError):
        rules.remove(["user:1", "viewer", "a/b"])


async def test_direct_evaluation_decides_as_casbins_enforce_ex(database):
    """R1-R5: the enforcer's own evaluation of model.conf's matcher (what every decision
    uses) answers as Casbin's `enforce_ex` does on the same rules, for every action, on
    exact and wildcard scopes, and for an action no role allows."""
    rng = random.Random(11)
    await build_world(rng)
    authorizer = Authorizer()
    await authorizer.refresh()
    enforcer = authorizer._rules.enforcer
    assert enforcer._matcher is not None  # the direct path is the one in use
    sample = [(subject(u), s.application, s.environment, a.value) for u, a, s in requests(rng, 3000)]
    sample += [(subject(u), "app-1", "env-1", "no-such-action") for u in range(1, 20)]
    sample += [(subject(u), s.application, s.environment, "view") for u, _, s in requests(rng, 1000)]
    answers = [enforcer.enforce(*request) for request in sample]
    assert 100 < sum(answers) < len(sample) - 100, sum(answers)  # a mixture
    wrong = [r for r, answer in zip(sample, answers, strict=True) if answer != enforcer.enforce_casbin(*r)]
    assert not wrong, wrong[:20]


def test_a_model_it_cannot_evaluate_directly_is_left_to_enforce_ex(monkeypatch):
    """A model.conf whose effect is not "some allow" (here: deny overrides) is decided by
    Casbin's `enforce_ex`, never by the direct evaluation, which knows only "some allow"."""
    enforcer = authorizer_module.RoleEnforcer()
    enforcer.role_manager.add_link("user:1", "viewer", "a/b")
    assert enforcer._matcher is not None and enforcer.enforce("user:1", "a", "b", "view")
    enforcer.model.model["e"]["e"].value = "!some(where (p_eft == deny))"
    assert enforcer._direct_matcher() is None
    enforcer._matcher = enforcer._direct_matcher()
    calls = []
    monkeypatch.setattr(enforcer, "enforce_ex", lambda *rvals: calls.append(rvals) or [False, []])
    assert not enforcer.enforce("user:1", "a", "b", "view")
    assert calls == [("user:1", "a", "b", "view")]
