"""Configuration as code (greenlight.workflow.config_file): the configuration exported as
one YAML document, and a document applied to the database in one transaction, through the
workflow, as a super-admin."""

from __future__ import annotations

import shutil
import uuid

import pytest
import yaml

from greenlight import db
from greenlight.models import Application, AuditEvent, DeployFreeze, GroupMember, Pipeline, RoleBinding, User
from greenlight.policies import Authorizer
from greenlight.workflow import config_file
from greenlight.workflow.config_file import ConfigRefused
from greenlight.workflow.identity import bootstrap
from tests.conftest import RUN_ID, _pg_admin, _pg_server_url, snapshot

RICH = """\
version: 1
applications:
  - name: shop
  - name: billing
  - name: legacy
    archived: true
environments:
  - name: staging
  - name: prod
groups:
  - name: sre
    members: [approver1@example.com, approver2@example.com]
  - name: oncall
    members: [dev@example.com]
pipelines:
  - application: shop
    environment: staging
    minApprovals: 0
  - application: shop
    environment: prod
    strategy: CANARY
    trigger: MANUAL
    minApprovals: 2
    ttlHours: 24
    policy: GROUP_QUORUMS
    groupQuorums:
      - group: sre
        minApprovals: 1
    countOncePerPerson: false
    cancelStaleRequests: true
    exceptionUsers: [dev@example.com]
    exceptionGroups: [oncall]
    requiredChecks: [unit-tests, scan]
    requiresHealthyOn: staging
    remindAfterHours: 4
    escalateAfterHours: 24
    escalateTo: sre
  - application: billing
    environment: prod
    trigger: AUTOMATIC
    minApprovals: 1
    policy: SPECIFIC_USERS
    approvers: [billing_approver@example.com]
    approversCanDeploy: true
roleBindings:
  - group: sre
    role: image-approver
    application: shop
    environment: "*"
freezes:
  - name: weekend
    environment: prod
    weekly: {timeZone: Europe/Berlin, from: FRIDAY 18:00, to: MONDAY 08:00}
  - name: christmas
    pipeline: shop/prod
    startsAt: "2026-12-24T00:00:00+00:00"
    endsAt: "2026-12-27T00:00:00+00:00"
"""


async def as_admin(email: str = "admin@example.com") -> config_file.Actor:
    return await config_file.actor_for(Authorizer(), email)


async def apply(text: str, *, prune: bool = False, dry_run: bool = False, who: str = "admin@example.com"):
    return await config_file.apply(await as_admin(who), config_file.load(text), prune=prune, dry_run=dry_run)


async def refused(text: str, **options) -> ConfigRefused:
    with pytest.raises(ConfigRefused) as caught:
        await apply(text, **options)
    return caught.value


def line_of(text: str, fragment: str, occurrence: int = 1) -> int:
    """The 1-based line of the `occurrence`-th line containing `fragment`."""
    found = [n for n, line in enumerate(text.splitlines(), 1) if fragment in line]
    return found[occurrence - 1]


@pytest.fixture
def empty_database_url(backend, templates, tmp_path):
    """A second database of the test's own, migrated and empty."""
    if backend == "sqlite":
        path = tmp_path / "empty.sqlite3"
        shutil.copy(templates.empty, path)
        yield f"sqlite://{path}"
        return
    import asyncio

    name = f"greenlight_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{templates.empty}"'))
    try:
        yield _pg_server_url(name)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- export and round trip ---------------------------------------------------------------------


async def test_export_then_apply_into_an_empty_database_then_export_gives_the_same_document(
    world, empty_database_url
):
    await apply(RICH)
    exported = await config_file.export()
    emails = await User.all().values_list("email", flat=True)

    await db.close()
    await db.connect(empty_database_url)
    await bootstrap("admin@example.com")
    for email in emails:
        if email != "admin@example.com":
            await User.create(email=email, name=email.split("@")[0])
    changes = await apply(exported)
    assert "create pipeline shop/prod" in changes
    assert await config_file.export() == exported


async def test_export_writes_every_setting_of_a_pipeline_and_users_by_email(world):
    await apply(RICH)
    document = yaml.safe_load(await config_file.export())
    prod = next(p for p in document["pipelines"] if (p["application"], p["environment"]) == ("shop", "prod"))
    assert prod == {
        "application": "shop",
        "environment": "prod",
        "strategy": "CANARY",
        "trigger": "MANUAL",
        "minApprovals": 2,
        "ttlHours": 24,
        "policy": "GROUP_QUORUMS",
        "groupQuorums": [{"group": "sre", "minApprovals": 1}],
        "countOncePerPerson": False,
        "cancelStaleRequests": True,
        "exceptionUsers": ["dev@example.com"],
        "exceptionGroups": ["oncall"],
        "requiredChecks": ["scan", "unit-tests"],
        "requiresHealthyOn": "staging",
        "remindAfterHours": 4,
        "escalateAfterHours": 24,
        "escalateTo": "sre",
    }
    assert {"name": "legacy", "archived": True} in document["applications"]
    assert {"name": "sre", "members": ["approver1@example.com", "approver2@example.com"]} in document[
        "groups"
    ]
    assert {
        "user": "dev@example.com",
        "role": "build-and-deploy",
        "application": "shop",
        "environment": "*",
    } in (document["roleBindings"])
    assert {
        "name": "weekend",
        "environment": "prod",
        "weekly": {"timeZone": "Europe/Berlin", "from": "FRIDAY 18:00", "to": "MONDAY 08:00"},
    } in document["freezes"]


# --- idempotence, dry run, reporting ---------------------------------------------------------------


async def test_applying_the_same_file_twice_reports_no_change_the_second_time(world):
    first = await apply(RICH)
    assert "create group sre" in first and "create freeze environment prod: weekend" in first
    before = await snapshot()
    assert await apply(RICH) == []
    assert await snapshot() == before


async def test_apply_goes_through_the_workflow_audited_as_the_acting_super_admin(world):
    admin2 = await User.get(email="admin2@example.com")
    await apply(RICH, who="admin2@example.com")
    actions = set(await AuditEvent.filter(actor_id=admin2.id).values_list("action", flat=True))
    assert {
        "create_application",
        "update_application",
        "create_group",
        "add_group_member",
        "grant_role",
        "update_pipeline",
        "create_deploy_freeze",
    } <= actions


async def test_applying_an_export_of_the_database_changes_nothing(world):
    before = await snapshot()
    assert await apply(await config_file.export()) == []
    assert await snapshot() == before


async def test_dry_run_prints_the_changes_and_changes_nothing(world):
    before = await snapshot()
    planned = await apply(RICH, dry_run=True)
    assert await snapshot() == before
    assert planned == await apply(RICH)


async def test_a_changed_setting_is_reported_from_old_to_new_value(world):
    exported = await config_file.export()
    changed = exported.replace("minApprovals: 2\n  ttlHours: 24", "minApprovals: 3\n  ttlHours: 48")
    assert changed != exported
    assert await apply(changed) == ["update pipeline shop/prod: minApprovals 2 -> 3, ttlHours 24 -> 48"]
    pipeline = await Pipeline.get(application__name="shop", environment__name="prod")
    assert (pipeline.required_approvals, pipeline.ttl_hours) == (3, 48)


async def test_a_freeze_given_another_window_is_reported_as_updated(world):
    await apply(RICH)
    moved = RICH.replace("to: MONDAY 08:00", "to: MONDAY 06:00")
    assert await apply(moved) == [
        "update freeze environment prod: weekend: weekly FRIDAY 18:00 to MONDAY 08:00 Europe/Berlin "
        "-> weekly FRIDAY 18:00 to MONDAY 06:00 Europe/Berlin"
    ]
    assert await DeployFreeze.filter(name="weekend").values_list("end_time", flat=True) == ["06:00"]


async def test_freezes_of_one_name_and_place_round_trip(world):
    """The API allows two freezes of one name on one environment: an export of them applies
    as no change."""
    second = RICH + (
        "  - name: weekend\n"
        "    environment: prod\n"
        "    weekly: {timeZone: UTC, from: SATURDAY 00:00, to: SUNDAY 00:00}\n"
    )
    changes = await apply(second)
    assert changes.count("create freeze environment prod: weekend") == 2
    assert await apply(await config_file.export()) == []
    assert await apply(second) == []


# --- refusals: where, and nothing changed ---------------------------------------------------------


async def test_an_unknown_key_is_refused_with_its_line_and_nothing_changes(world):
    text = RICH.replace("    ttlHours: 24\n", "    ttlHours: 24\n    colour: blue\n")
    before = await snapshot()
    error = await refused(text)
    assert (error.line, error.column) == (line_of(text, "colour: blue"), 5)
    assert "colour" in error.message and "unknown key" in error.message
    assert await snapshot() == before


@pytest.mark.parametrize(
    ("old", "new", "where", "says"),
    [
        ("minApprovals: 2", "minApprovals: two", "minApprovals: two", "whole number"),
        ("minApprovals: 2", "minApprovals: 7", "minApprovals: 7", "from 0 to 6"),
        ("        minApprovals: 1", "        minApprovals: 0", "        minApprovals: 0", "from 1 to 6"),
        ("trigger: AUTOMATIC", "trigger: SOMETIMES", "SOMETIMES", "MANUAL, AUTOMATIC"),
        ("    environment: staging\n", "    environment: qa\n", "environment: qa", "no environment qa"),
        ("[dev@example.com]", "[ghost@example.com]", "ghost@example.com", "no user ghost@example.com"),
        ("role: image-approver", "role: owner", "role: owner", "super-admin"),
        ("to: MONDAY 08:00", "to: MOONDAY 08:00", "MOONDAY", "FRIDAY 18:00"),
        ("    approvers: [billing_approver@example.com]\n", "", "policy: SPECIFIC_USERS", "needs approvers"),
        (
            "    exceptionUsers:",
            "    approvers: [dev@example.com]\n    exceptionUsers:",
            "approvers: [dev",
            "only policy",
        ),
        (
            "escalateAfterHours: 24",
            "escalateAfterHours: 2",
            "escalateAfterHours: 2",
            "more than remindAfterHours",
        ),
        (
            "requiresHealthyOn: staging",
            "requiresHealthyOn: prod",
            "requiresHealthyOn: prod",
            "own environment",
        ),
        (
            'application: shop\n    environment: "*"',
            'application: shoe\n    environment: "*"',
            "shoe",
            "no application shoe",
        ),
    ],
)
async def test_an_invalid_value_is_refused_with_its_line_and_nothing_changes(world, old, new, where, says):
    text = RICH.replace(old, new, 1)
    assert text != RICH
    before = await snapshot()
    error = await refused(text)
    assert error.line == line_of(text, where), error.message
    assert says in error.message
    assert await snapshot() == before


async def test_a_refusal_in_the_middle_leaves_nothing_half_applied(world):
    """Applications, groups and bindings come first; a pipeline naming an approver who may not
    approve there is refused by the workflow after them, and all of it rolls back."""
    text = RICH.replace("[billing_approver@example.com]", "[viewer@example.com]")
    before = await snapshot()
    error = await refused(text)
    assert error.line == line_of(text, "approvers: [viewer@example.com]")
    assert "may not approve" in error.message and "approverIds" not in error.message
    assert await snapshot() == before
    assert not await Application.exists(name="legacy")


async def test_apply_acts_as_a_named_active_super_admin_only(world):
    with pytest.raises(ConfigRefused, match="name the one to act as"):
        await config_file.actor_for(Authorizer(), None)  # admin and admin2
    with pytest.raises(ConfigRefused, match="not an active super-admin"):
        await config_file.actor_for(Authorizer(), "viewer@example.com")
    actor = await config_file.actor_for(Authorizer(), "admin2@example.com")
    assert actor.user.email == "admin2@example.com"


# --- what the file leaves out ----------------------------------------------------------------------


async def test_what_the_file_leaves_out_is_kept_without_prune(world):
    await apply(RICH)
    before = await snapshot()
    assert await apply("applications:\n  - name: shop\n") == []
    assert await snapshot() == before


async def test_prune_archives_and_removes_what_the_file_leaves_out_and_keeps_pipelines(world):
    await apply(RICH)
    exported = yaml.safe_load(await config_file.export())
    exported["applications"] = [a for a in exported["applications"] if a["name"] != "billing"]
    exported["groups"] = [{"name": "sre", "members": ["approver1@example.com"]}]
    exported["roleBindings"] = [b for b in exported["roleBindings"] if b.get("user") != "viewer@example.com"]
    exported["freezes"] = [f for f in exported["freezes"] if f["name"] != "christmas"]
    changes = await apply(config_file.dump(exported), prune=True)
    assert sorted(changes) == sorted(
        [
            "archive application billing (not in the file)",
            "remove approver2@example.com from group sre (not in the file)",
            "revoke viewer on shop/* to user viewer@example.com (not in the file)",
            "remove freeze pipeline shop/prod: christmas (not in the file)",
        ]
    )
    assert (await Application.get(name="billing")).archived_at is not None
    assert await Pipeline.exists(application__name="billing", environment__name="prod")
    assert not await RoleBinding.exists(user__email="viewer@example.com")
    assert await GroupMember.filter(group__name="sre").count() == 1
    assert await GroupMember.filter(group__name="oncall").count() == 1  # not in the file: kept
    assert not await DeployFreeze.exists(name="christmas")


async def test_prune_of_every_super_admin_is_refused_and_changes_nothing(world):
    exported = yaml.safe_load(await config_file.export())
    exported["roleBindings"] = [b for b in exported["roleBindings"] if b["role"] != "super-admin"]
    before = await snapshot()
    error = await refused(config_file.dump(exported), prune=True)
    assert "last super-admin" in error.message
    assert await snapshot() == before


# --- role bindings take effect -----------------------------------------------------------------------


async def test_a_user_granted_a_role_by_the_file_can_act_at_once(world):
    register = """mutation($i: RegisterImageInput!) { registerImage(input: $i) { id } }"""
    image = {
        "application": "billing",
        "repository": "registry.example.com/acme/billing",
        "tag": "v1",
        "digest": "sha256:" + "a" * 64,
    }
    assert await world["nobody"].code(register, {"i": image}) in ("FORBIDDEN", "NOT_FOUND")
    granted = (
        "roleBindings:\n"
        "  - user: nobody@example.com\n"
        "    role: build-and-deploy\n"
        "    application: billing\n"
        '    environment: "*"\n'
    )
    assert await apply(granted) == ["grant build-and-deploy on billing/* to user nobody@example.com"]
    assert await world["nobody"].ok(register, {"i": image})


async def test_a_role_granted_and_a_policy_naming_its_holder_apply_together(world):
    """The workflow checks that a named approver may approve: a binding granted earlier in
    the same file counts."""
    text = (
        "roleBindings:\n"
        "  - user: nobody@example.com\n"
        "    role: image-approver\n"
        "    application: billing\n"
        "    environment: prod\n"
        "pipelines:\n"
        "  - application: billing\n"
        "    environment: prod\n"
        "    minApprovals: 1\n"
        "    policy: SPECIFIC_USERS\n"
        "    approvers: [nobody@example.com]\n"
    )
    changes = await apply(text)
    assert changes[0] == "grant image-approver on billing/prod to user nobody@example.com"
    assert changes[1].startswith("update pipeline billing/prod: policy ANY -> SPECIFIC_USERS")


# --- the README's example ------------------------------------------------------------------------


def readme_example() -> tuple[str, list[str]]:
    """The README's example document, and the changes its dry run prints."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## Configuration as code", 1)[1]
    document = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    shown = section.split("--dry-run\n", 1)[1].split("```", 1)[0].splitlines()
    return document, [line for line in shown if not line.startswith("dry run:")]


async def test_the_readme_example_applies_and_its_dry_run_prints_what_the_readme_shows(world):
    document, shown = readme_example()
    without_sre = yaml.safe_load(document)
    without_sre["groups"] = []
    without_sre["roleBindings"] = [b for b in without_sre["roleBindings"] if b.get("group") != "sre"]
    prod = without_sre["pipelines"][0]
    prod["policy"] = "ANY"
    del prod["groupQuorums"], prod["escalateTo"]
    await apply(config_file.dump(without_sre))
    assert await apply(document, dry_run=True) == shown
    await apply(document)
    assert await apply(document) == []


# --- what a partial file leaves alone ---------------------------------------------------------------


async def test_prune_leaves_alone_the_sections_the_file_does_not_hold(world):
    """A file of role bindings alone, applied with prune, never unfreezes production nor
    archives applications: prune works within the sections the file holds."""
    await apply(RICH)
    exported = yaml.safe_load(await config_file.export())
    only_bindings = config_file.dump({"version": 1, "roleBindings": exported["roleBindings"]})
    before = await snapshot()
    assert await apply(only_bindings, prune=True) == []
    assert await snapshot() == before
    assert await DeployFreeze.filter(name__in=["weekend", "christmas"]).count() == 2


async def test_a_pipeline_key_left_out_keeps_the_value_the_pipeline_holds(world):
    """An entry naming only minApprovals changes that: the required checks, the expiry and
    the promotion rule of the pipeline stay (nothing the file does not mention changes)."""
    await apply(RICH)
    text = "pipelines:\n  - application: shop\n    environment: prod\n    minApprovals: 3\n"
    assert await apply(text) == ["update pipeline shop/prod: minApprovals 2 -> 3"]
    pipeline = await Pipeline.get(application__name="shop", environment__name="prod")
    assert (pipeline.required_approvals, pipeline.ttl_hours) == (3, 24)
    exported = yaml.safe_load(await config_file.export())
    (prod,) = [p for p in exported["pipelines"] if (p["application"], p["environment"]) == ("shop", "prod")]
    assert prod["requiredChecks"] == ["scan", "unit-tests"]
    assert prod["requiresHealthyOn"] == "staging"
    assert await apply(text) == []


async def test_identical_freezes_round_trip(world):
    """The API allows two freezes alike in name, place and window: the file may list both."""
    twice = RICH + (
        "  - name: christmas\n"
        "    pipeline: shop/prod\n"
        '    startsAt: "2026-12-24T00:00:00+00:00"\n'
        '    endsAt: "2026-12-27T00:00:00+00:00"\n'
    )
    assert (await apply(twice)).count("create freeze pipeline shop/prod: christmas") == 2
    assert await DeployFreeze.filter(name="christmas").count() == 2
    assert await apply(await config_file.export()) == []


async def test_super_admin_handed_over_with_prune_alongside_other_changes(world):
    """The acting super-admin's own binding is revoked after every other change of the
    file, which it still has the right to make."""
    exported = yaml.safe_load(await config_file.export())
    exported["roleBindings"] = [
        *(b for b in exported["roleBindings"] if b.get("user") != "admin@example.com"),
        {"user": "approver1@example.com", "role": "super-admin", "application": "*", "environment": "*"},
    ]
    exported["freezes"] = [
        {
            "name": "audit",
            "environment": "prod",
            "startsAt": "2027-01-04T00:00:00+00:00",
            "endsAt": "2027-01-05T00:00:00+00:00",
        }
    ]
    changes = await apply(config_file.dump(exported), prune=True)
    assert changes[-1] == "revoke super-admin on */* to user admin@example.com (not in the file)"
    assert "create freeze environment prod: audit" in changes
    assert not await RoleBinding.exists(user__email="admin@example.com", role="super-admin")
    assert await RoleBinding.exists(user__email="approver1@example.com", role="super-admin")


@pytest.mark.parametrize(
    "text, where",
    [
        ("applications:\n  - !!python/object:os.system {name: shop}\n", 2),
        ("base: &b {name: shop}\napplications:\n  - <<: *b\n", 3),
        ("applications:\n  - name: !secret shop\n", 2),
    ],
)
async def test_yaml_beyond_plain_values_is_refused_at_its_line(world, text, where):
    before = await snapshot()
    with pytest.raises(ConfigRefused) as caught:
        await apply(text)
    assert caught.value.line == where
    assert await snapshot() == before
