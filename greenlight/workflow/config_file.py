"""Configuration as code: applications, environments, pipelines with their approval
policies, groups with their members, role bindings and deploy freezes as one YAML document.

`export` writes what the database holds; `apply` makes the database match a document, in
one transaction, through the same workflow functions the API calls (so their rules,
validation, audit events and the recording of role changes all happen), acting as a
super-admin. Applying what was exported changes nothing. Nothing the document does not
mention is removed unless `prune` is asked for.

Users are named by email and are never created here: a user is an account a person signs
in with (or is provisioned by single sign-on), so a document naming an unknown email is
refused at that line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import yaml

from greenlight.errors import GreenlightError
from greenlight.models import (
    Application,
    ApprovalException,
    ApprovalPolicyKind,
    DeployFreeze,
    DeploymentStrategy,
    Environment,
    Group,
    GroupMember,
    GroupQuorum,
    Pipeline,
    PolicyApprover,
    Role,
    RoleBinding,
    TriggerType,
    User,
    Weekday,
)
from greenlight.policies import Actor
from greenlight.policies.authorizer import lock_policy
from greenlight.scopes import WILDCARD
from greenlight.tx import transaction
from greenlight.workflow import catalog, freezes, identity, teams, validation
from greenlight.workflow.policy import PolicyChange, Quorum

VERSION = 1
Path = tuple[str | int, ...]

# A pipeline's settings as the document names them, each with its value when left out.
PIPELINE_DEFAULTS: dict[str, Any] = {
    "strategy": DeploymentStrategy.ROLLING.value,
    "trigger": TriggerType.MANUAL.value,
    "minApprovals": None,  # required
    "ttlHours": None,
    "approversCanDeploy": False,
    "policy": ApprovalPolicyKind.ANY.value,
    "approvers": [],
    "groupQuorums": [],
    "countOncePerPerson": True,
    "cancelStaleRequests": False,
    "exceptionUsers": [],
    "exceptionGroups": [],
    "requiredChecks": [],
    "requiresHealthyOn": None,
    "remindAfterHours": None,
    "escalateAfterHours": None,
    "escalateTo": None,
}
# The keys written even at their default value, so a pipeline reads on its own.
ALWAYS_WRITTEN = ("strategy", "trigger", "minApprovals", "policy")

# The workflow names an input field when it refuses one: the document's key for it.
FIELD_KEYS = {
    "requiredApprovals": "minApprovals",
    "ttlHours": "ttlHours",
    "kind": "policy",
    "approverIds": "approvers",
    "groupQuorums": "groupQuorums",
    "groupQuorums.minApprovals": "groupQuorums",
    "exceptionUserIds": "exceptionUsers",
    "exceptionGroupIds": "exceptionGroups",
    "requiredChecks": "requiredChecks",
    "requiresHealthyOn": "requiresHealthyOn",
    "remindAfterHours": "remindAfterHours",
    "escalateAfterHours": "escalateAfterHours",
    "escalateToGroupId": "escalateTo",
    "name": "name",
    "application": "application",
    "environment": "environment",
}


class ConfigRefused(Exception):
    """The document cannot be applied: what is wrong, and where (1-based line and column;
    None when it is not about one place)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def located(self, filename: str) -> str:
        if self.line is None:
            return f"{filename}: {self.message}"
        return f"{filename}:{self.line}:{self.column}: {self.message}"


# --- reading the document, with where each value is ------------------------------------------


@dataclass
class Document:
    data: dict[str, Any]
    marks: dict[Path, yaml.Mark] = field(default_factory=dict)  # where each value starts
    key_marks: dict[Path, yaml.Mark] = field(default_factory=dict)  # where each key is

    def refuse(self, path: Path, message: str, *, at_key: bool = False) -> ConfigRefused:
        """A refusal at the value of `path` (or its key), or else the nearest place above."""
        for length in range(len(path), -1, -1):
            part = path[:length]
            mark = (self.key_marks.get(part) if at_key else None) or self.marks.get(part)
            if mark is not None:
                return ConfigRefused(
                    f"{_shown(path)}: {message}" if path else message, mark.line + 1, mark.column + 1
                )
        return ConfigRefused(message)


def _shown(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def load(text: str) -> Document:
    """The document's values and where each one is, or ConfigRefused at the faulty line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "not YAML"
        if mark is None:
            raise ConfigRefused(f"not a YAML document: {problem}") from None
        raise ConfigRefused(f"not a YAML document: {problem}", mark.line + 1, mark.column + 1) from None
    except yaml.YAMLError as error:
        raise ConfigRefused(f"not a YAML document: {error}") from None
    document = Document({})
    if root is None:
        return document
    constructor = yaml.SafeLoader("")
    inside: set[int] = set()  # the collections being walked: an alias of one is a loop

    def walk(node: yaml.Node, path: Path) -> Any:
        document.marks[path] = node.start_mark
        if isinstance(node, yaml.CollectionNode):
            if node.tag not in PLAIN_TAGS:  # e.g. !!python/object: a document holds values only
                mark = node.start_mark
                raise ConfigRefused(f"not a plain value: tag {node.tag}", mark.line + 1, mark.column + 1)
            if id(node) in inside:
                mark = node.start_mark
                raise ConfigRefused("an alias may not hold itself", mark.line + 1, mark.column + 1)
            inside.add(id(node))
            try:
                return walk_collection(node, path)
            finally:
                inside.discard(id(node))
        return construct(node)

    def construct(node: yaml.Node) -> Any:
        try:
            return constructor.construct_object(node)
        except yaml.YAMLError as error:  # a tag it does not know, a merge key, ...
            mark = node.start_mark
            problem = getattr(error, "problem", None) or str(error)
            raise ConfigRefused(f"not a plain value: {problem}", mark.line + 1, mark.column + 1) from None

    def walk_collection(node: yaml.CollectionNode, path: Path) -> Any:
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    mark = key_node.start_mark
                    raise ConfigRefused("a key must be a plain word", mark.line + 1, mark.column + 1)
                key = construct(key_node)
                if not isinstance(key, str):
                    key = str(key)
                mark = key_node.start_mark
                if key in result:
                    raise ConfigRefused(f"{key}: given twice", mark.line + 1, mark.column + 1)
                document.key_marks[(*path, key)] = mark
                result[key] = walk(value_node, (*path, key))
            return result
        return [walk(item, (*path, index)) for index, item in enumerate(node.value)]

    data = walk(root, ())
    if not isinstance(data, dict):
        raise document.refuse((), "the document must be a mapping of sections (applications: ...)")
    document.data = data
    return document


# --- what the document asks for ---------------------------------------------------------------


@dataclass
class Named:
    name: str
    archived: bool
    path: Path


@dataclass
class GroupSpec:
    name: str
    members: list[tuple[str, Path]]
    path: Path


@dataclass
class PipelineSpec:
    application: str
    environment: str
    settings: dict[str, Any]  # every key of PIPELINE_DEFAULTS, the defaults where left out
    path: Path
    given: frozenset[str] = frozenset()  # the keys the document gives

    def wanted(self, current: dict[str, Any]) -> dict[str, Any]:
        """The settings to hold: those the document gives, and for the others what the
        pipeline holds now (nothing the document does not mention changes)."""
        return {k: self.settings[k] if k in self.given else current[k] for k in PIPELINE_DEFAULTS}

    @property
    def label(self) -> str:
        return f"{self.application}/{self.environment}"


@dataclass(frozen=True)
class BindingKey:
    holder: str  # "user" or "group"
    who: str  # an email or a group name
    role: str
    application: str
    environment: str

    def __str__(self) -> str:
        return f"{self.role} on {self.application}/{self.environment} to {self.holder} {self.who}"


@dataclass(frozen=True)
class FreezeKey:
    name: str
    target: str  # "environment prod" or "pipeline shop/prod"
    window: tuple  # ("once", startsAt, endsAt) or ("weekly", timeZone, from, to)

    def __str__(self) -> str:
        return f"{self.target}: {self.name}"

    @property
    def window_text(self) -> str:
        if self.window[0] == "once":
            return f"{self.window[1]} to {self.window[2]}"
        return f"weekly {self.window[2]} to {self.window[3]} {self.window[1]}"


@dataclass
class Spec:
    applications: list[Named] = field(default_factory=list)
    environments: list[Named] = field(default_factory=list)
    groups: list[GroupSpec] = field(default_factory=list)
    pipelines: list[PipelineSpec] = field(default_factory=list)
    bindings: list[tuple[BindingKey, Path]] = field(default_factory=list)
    freezes: list[tuple[FreezeKey, Path]] = field(default_factory=list)


SECTIONS = ("version", "applications", "environments", "groups", "pipelines", "roleBindings", "freezes")


class _Reader:
    """Checks the document's shape and values, each refusal at its line."""

    def __init__(self, document: Document) -> None:
        self.doc = document

    def refuse(self, path: Path, message: str, *, at_key: bool = False) -> ConfigRefused:
        return self.doc.refuse(path, message, at_key=at_key)

    def mapping(self, value: Any, path: Path, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            raise self.refuse(path, "must be a mapping (key: value)")
        for key in value:
            if key not in allowed:
                raise self.refuse((*path, key), f"unknown key; known here: {', '.join(allowed)}", at_key=True)
        for key in required:
            if key not in value:
                raise self.refuse(path, f"{key} is required")
        return value

    def items(self, value: Any, path: Path) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.refuse(path, "must be a list (- ...)")
        return value

    def name(self, value: Any, path: Path, *, wildcard: bool = False) -> str:
        if wildcard and value == WILDCARD:
            return value
        if not isinstance(value, str):
            raise self.refuse(path, f"must be a name, got {value!r}")
        return self.checked(path, validation.name, path[-1], value)

    def email(self, value: Any, path: Path) -> str:
        if not isinstance(value, str):
            raise self.refuse(path, f"must be an email address, got {value!r}")
        return self.checked(path, validation.email, value)

    def whole(self, value: Any, path: Path, low: int, high: int, *, nullable: bool = False) -> int | None:
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.refuse(path, f"must be a whole number from {low} to {high}, got {value!r}")
        if not low <= value <= high:
            raise self.refuse(path, f"must be from {low} to {high}, got {value}")
        return value

    def flag(self, value: Any, path: Path) -> bool:
        if not isinstance(value, bool):
            raise self.refuse(path, f"must be true or false, got {value!r}")
        return value

    def choice(self, value: Any, path: Path, choices: list[str]) -> str:
        if value not in choices:
            raise self.refuse(path, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def unique(self, values: list, path: Path, shown: Callable[[Any], str] = str) -> None:
        seen: set = set()
        for index, value in enumerate(values):
            if value in seen:
                raise self.refuse((*path, index), f"{shown(value)} is listed twice")
            seen.add(value)

    def checked(self, path: Path, check: Callable, *args: Any, **kwargs: Any) -> Any:
        try:
            return check(*args, **kwargs)
        except GreenlightError as error:
            raise self.refuse(path, _without_field(error.message)) from None

    # -- the sections --

    def spec(self) -> Spec:
        data = self.mapping(self.doc.data, (), SECTIONS, ())
        version = data.get("version", VERSION)
        if isinstance(version, bool) or version != VERSION:
            raise self.refuse(
                ("version",), f"this Greenlight reads version {VERSION}, got {data['version']!r}"
            )
        spec = Spec()
        spec.applications = self.named("applications", data.get("applications"))
        spec.environments = self.named("environments", data.get("environments"))
        spec.groups = self.groups(data.get("groups"))
        spec.pipelines = self.pipelines(data.get("pipelines"))
        spec.bindings = self.bindings(data.get("roleBindings"))
        spec.freezes = self.freezes(data.get("freezes"))
        return spec

    def named(self, section: str, value: Any) -> list[Named]:
        found = []
        for index, item in enumerate(self.items(value, (section,))):
            path = (section, index)
            item = self.mapping(item, path, ("name", "archived"), ("name",))
            name = self.name(item["name"], (*path, "name"))
            archived = self.flag(item.get("archived", False), (*path, "archived"))
            found.append(Named(name, archived, path))
        self.unique([n.name for n in found], (section,))
        return found

    def groups(self, value: Any) -> list[GroupSpec]:
        found = []
        for index, item in enumerate(self.items(value, ("groups",))):
            path = ("groups", index)
            item = self.mapping(item, path, ("name", "members"), ("name",))
            name = self.name(item["name"], (*path, "name"))
            members_path = (*path, "members")
            emails = [
                self.email(e, (*members_path, i))
                for i, e in enumerate(self.items(item.get("members"), members_path))
            ]
            self.unique(emails, members_path)
            found.append(GroupSpec(name, [(e, (*members_path, i)) for i, e in enumerate(emails)], path))
        self.unique([g.name for g in found], ("groups",))
        return found

    def pipelines(self, value: Any) -> list[PipelineSpec]:
        found = []
        allowed = ("application", "environment", *PIPELINE_DEFAULTS)
        for index, item in enumerate(self.items(value, ("pipelines",))):
            path = ("pipelines", index)
            item = self.mapping(item, path, allowed, ("application", "environment", "minApprovals"))
            settings = dict(PIPELINE_DEFAULTS) | {k: v for k, v in item.items() if k in PIPELINE_DEFAULTS}
            at = lambda key, p=path: (*p, key)  # noqa: E731
            s = settings
            s["strategy"] = self.choice(s["strategy"], at("strategy"), [x.value for x in DeploymentStrategy])
            s["trigger"] = self.choice(s["trigger"], at("trigger"), [x.value for x in TriggerType])
            s["minApprovals"] = self.whole(
                s["minApprovals"], at("minApprovals"), 0, validation.MAX_REQUIRED_APPROVALS
            )
            s["ttlHours"] = self.whole(
                s["ttlHours"], at("ttlHours"), 1, validation.MAX_TTL_HOURS, nullable=True
            )
            s["approversCanDeploy"] = self.flag(s["approversCanDeploy"], at("approversCanDeploy"))
            s["policy"] = self.choice(s["policy"], at("policy"), [x.value for x in ApprovalPolicyKind])
            s["countOncePerPerson"] = self.flag(s["countOncePerPerson"], at("countOncePerPerson"))
            s["cancelStaleRequests"] = self.flag(s["cancelStaleRequests"], at("cancelStaleRequests"))
            for key in ("approvers", "exceptionUsers"):
                emails = [self.email(e, (*at(key), i)) for i, e in enumerate(self.items(s[key], at(key)))]
                self.unique(emails, at(key))
                s[key] = sorted(emails)
            names = [
                self.name(g, (*at("exceptionGroups"), i))
                for i, g in enumerate(self.items(s["exceptionGroups"], at("exceptionGroups")))
            ]
            self.unique(names, at("exceptionGroups"))
            s["exceptionGroups"] = sorted(names)
            quorums = []
            for i, quorum in enumerate(self.items(s["groupQuorums"], at("groupQuorums"))):
                q_path = (*at("groupQuorums"), i)
                quorum = self.mapping(quorum, q_path, ("group", "minApprovals"), ("group", "minApprovals"))
                group = self.name(quorum["group"], (*q_path, "group"))
                count = self.whole(
                    quorum["minApprovals"], (*q_path, "minApprovals"), 1, validation.MAX_REQUIRED_APPROVALS
                )
                quorums.append({"group": group, "minApprovals": count})
            self.unique([q["group"] for q in quorums], at("groupQuorums"))
            s["groupQuorums"] = sorted(quorums, key=lambda q: q["group"])
            checks_path = at("requiredChecks")
            check_names = self.items(s["requiredChecks"], checks_path)
            for i, check in enumerate(check_names):
                if not isinstance(check, str):
                    raise self.refuse((*checks_path, i), f"must be a check name, got {check!r}")
            self.unique(check_names, checks_path)
            s["requiredChecks"] = sorted(check_names)
            for key in ("requiresHealthyOn", "escalateTo"):
                if s[key] is not None:
                    s[key] = self.name(s[key], at(key))
            for key in ("remindAfterHours", "escalateAfterHours"):
                s[key] = self.whole(s[key], at(key), 1, validation.MAX_TTL_HOURS, nullable=True)
            self.policy_shape(s, at)
            application = self.name(item["application"], at("application"))
            environment = self.name(item["environment"], at("environment"))
            given = frozenset(k for k in item if k in PIPELINE_DEFAULTS)
            found.append(PipelineSpec(application, environment, settings, path, given))
        self.unique([p.label for p in found], ("pipelines",))
        return found

    def policy_shape(self, s: dict[str, Any], at: Callable[[str], Path]) -> None:
        """Each policy with the list it needs, and no other."""
        policy = s["policy"]
        if policy != ApprovalPolicyKind.ANY.value and s["minApprovals"] == 0:
            raise self.refuse(at("minApprovals"), f"policy {policy} needs minApprovals of at least 1")
        if policy != ApprovalPolicyKind.SPECIFIC_USERS.value and s["approvers"]:
            raise self.refuse(at("approvers"), "only policy SPECIFIC_USERS takes approvers")
        if policy != ApprovalPolicyKind.GROUP_QUORUMS.value and s["groupQuorums"]:
            raise self.refuse(at("groupQuorums"), "only policy GROUP_QUORUMS takes groupQuorums")
        if policy == ApprovalPolicyKind.SPECIFIC_USERS.value and not s["approvers"]:
            raise self.refuse(at("policy"), "policy SPECIFIC_USERS needs approvers")
        if policy == ApprovalPolicyKind.GROUP_QUORUMS.value and not s["groupQuorums"]:
            raise self.refuse(at("policy"), "policy GROUP_QUORUMS needs groupQuorums")

    def bindings(self, value: Any) -> list[tuple[BindingKey, Path]]:
        found = []
        roles = [r.value for r in Role]
        for index, item in enumerate(self.items(value, ("roleBindings",))):
            path = ("roleBindings", index)
            item = self.mapping(
                item,
                path,
                ("user", "group", "role", "application", "environment"),
                ("role", "application", "environment"),
            )
            if ("user" in item) == ("group" in item):
                raise self.refuse(path, "give exactly one of user and group")
            holder = "user" if "user" in item else "group"
            who = (
                self.email(item["user"], (*path, "user"))
                if holder == "user"
                else self.name(item["group"], (*path, "group"))
            )
            role = self.choice(item["role"], (*path, "role"), roles)
            application = self.name(item["application"], (*path, "application"), wildcard=True)
            environment = self.name(item["environment"], (*path, "environment"), wildcard=True)
            if role == Role.SUPER_ADMIN.value and (application, environment) != (WILDCARD, WILDCARD):
                raise self.refuse(
                    (*path, "role"), "super-admin is global: give application and environment '*'"
                )
            found.append((BindingKey(holder, who, role, application, environment), path))
        self.unique([key for key, _ in found], ("roleBindings",))
        return found

    def freezes(self, value: Any) -> list[tuple[FreezeKey, Path]]:
        found = []
        for index, item in enumerate(self.items(value, ("freezes",))):
            path = ("freezes", index)
            item = self.mapping(
                item, path, ("name", "environment", "pipeline", "startsAt", "endsAt", "weekly"), ("name",)
            )
            name = item["name"]
            if not isinstance(name, str):
                raise self.refuse((*path, "name"), f"must be a text, got {name!r}")
            name = self.checked((*path, "name"), validation.text, "name", name, required=True, limit=200)
            if ("environment" in item) == ("pipeline" in item):
                raise self.refuse(path, "give exactly one of environment and pipeline")
            if "environment" in item:
                target = "environment " + self.name(item["environment"], (*path, "environment"))
            else:
                target = "pipeline " + self.pipeline_label(item["pipeline"], (*path, "pipeline"))
            if "weekly" in item:
                if "startsAt" in item or "endsAt" in item:
                    raise self.refuse((*path, "weekly"), "give either startsAt and endsAt, or weekly")
                window = self.weekly(item["weekly"], (*path, "weekly"))
            else:
                if "startsAt" not in item or "endsAt" not in item:
                    raise self.refuse(path, "give startsAt and endsAt, or weekly")
                starts = self.instant(item["startsAt"], (*path, "startsAt"))
                ends = self.instant(item["endsAt"], (*path, "endsAt"))
                if starts >= ends:
                    raise self.refuse((*path, "endsAt"), "must be after startsAt")
                window = ("once", _instant_text(starts), _instant_text(ends))
            found.append((FreezeKey(name, target, window), path))
        # Identical freezes are allowed (the API allows them): apply matches them by count.
        return found

    def pipeline_label(self, value: Any, path: Path) -> str:
        if not isinstance(value, str) or value.count("/") != 1:
            raise self.refuse(path, f"must be APPLICATION/ENVIRONMENT, got {value!r}")
        application, environment = value.split("/")
        self.name(application, path)
        self.name(environment, path)
        return value

    def instant(self, value: Any, path: Path) -> datetime:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise self.refuse(
                    path, f"{value!r} is not a date and time (2026-12-24T18:00:00+00:00)"
                ) from None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise self.refuse(path, "must be a date and time with its offset (2026-12-24T18:00:00+00:00)")
        return value.astimezone(UTC)

    def weekly(self, value: Any, path: Path) -> tuple:
        item = self.mapping(value, path, ("timeZone", "from", "to"), ("timeZone", "from", "to"))
        parts = []
        for key in ("from", "to"):
            text = item[key]
            day, _, at = text.partition(" ") if isinstance(text, str) else ("", "", "")
            if day not in Weekday.__members__ or not freezes.TIME_RE.fullmatch(at):
                raise self.refuse((*path, key), f"must be a day and HH:MM (FRIDAY 18:00), got {text!r}")
            parts.append((Weekday(day), at))
        zone = item["timeZone"]
        if not isinstance(zone, str):
            raise self.refuse((*path, "timeZone"), f"must be a time zone name, got {zone!r}")
        window = freezes.WeeklyWindow(zone, parts[0][0], parts[0][1], parts[1][0], parts[1][1])
        self.checked(path, freezes.validate_window, None, None, window)
        return ("weekly", zone, item["from"], item["to"])


def _without_field(message: str) -> str:
    """A workflow message names its input field first ("name: ..."); the refusal names the
    document's place instead."""
    head, sep, rest = message.partition(": ")
    return rest if sep and " " not in head else message


def _instant_text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def parse(document: Document) -> Spec:
    return _Reader(document).spec()


# --- what the database holds, in the document's terms ------------------------------------------


async def _emails() -> dict[int, str]:
    return dict(await User.all().values_list("id", "email"))


async def _group_names() -> dict[int, str]:
    return dict(await Group.all().values_list("id", "name"))


async def _environment_names() -> dict[int, str]:
    return dict(await Environment.all().values_list("id", "name"))


async def pipeline_settings(
    pipeline: Pipeline, emails: dict[int, str], groups: dict[int, str], environments: dict[int, str]
) -> dict[str, Any]:
    """Every setting of the pipeline, as the document writes it (users, groups and
    environments by name, from the maps read once for all pipelines)."""
    approvers = await PolicyApprover.filter(pipeline_id=pipeline.id).values_list("user_id", flat=True)
    quorums = await GroupQuorum.filter(pipeline_id=pipeline.id).values_list("group_id", "min_approvals")
    exceptions = await ApprovalException.filter(pipeline_id=pipeline.id).values_list("user_id", "group_id")
    return {
        "strategy": DeploymentStrategy(pipeline.strategy).value,
        "trigger": TriggerType(pipeline.trigger_type).value,
        "minApprovals": pipeline.required_approvals,
        "ttlHours": pipeline.ttl_hours,
        "approversCanDeploy": pipeline.approvers_can_deploy,
        "policy": ApprovalPolicyKind(pipeline.policy_kind).value,
        "approvers": sorted(emails[u] for u in approvers),
        "groupQuorums": sorted(
            ({"group": groups[g], "minApprovals": k} for g, k in quorums), key=lambda q: q["group"]
        ),
        "countOncePerPerson": pipeline.count_once_per_person,
        "cancelStaleRequests": pipeline.cancel_stale_requests,
        "exceptionUsers": sorted(emails[u] for u, _ in exceptions if u is not None),
        "exceptionGroups": sorted(groups[g] for _, g in exceptions if g is not None),
        "requiredChecks": sorted(pipeline.required_checks or ()),
        "requiresHealthyOn": environments.get(pipeline.requires_healthy_on_id),
        "remindAfterHours": pipeline.remind_after_hours,
        "escalateAfterHours": pipeline.escalate_after_hours,
        "escalateTo": groups.get(pipeline.escalate_group_id),
    }


async def _current_bindings(emails: dict[int, str], groups: dict[int, str]) -> dict[BindingKey, int]:
    found = {}
    for binding in await RoleBinding.all().order_by("id"):
        holder, who = (
            ("user", emails[binding.user_id]) if binding.user_id else ("group", groups[binding.group_id])
        )
        key = BindingKey(holder, who, Role(binding.role).value, binding.application, binding.environment)
        found[key] = binding.id
    return found


def _freeze_key(freeze: DeployFreeze) -> FreezeKey:
    if freeze.pipeline_id is not None:
        target = f"pipeline {freeze.pipeline.application.name}/{freeze.pipeline.environment.name}"
    else:
        target = f"environment {freeze.environment.name}"
    if freeze.time_zone is None:
        window = ("once", _instant_text(freeze.starts_at), _instant_text(freeze.ends_at))
    else:
        days = list(Weekday)
        window = (
            "weekly",
            freeze.time_zone,
            f"{days[freeze.start_day].value} {freeze.start_time}",
            f"{days[freeze.end_day].value} {freeze.end_time}",
        )
    return FreezeKey(freeze.name, target, window)


async def _current_freezes() -> list[tuple[FreezeKey, DeployFreeze]]:
    rows = (
        await DeployFreeze.all()
        .order_by("id")
        .prefetch_related("environment", "pipeline__application", "pipeline__environment")
    )
    return [(_freeze_key(f), f) for f in rows]


# --- export ------------------------------------------------------------------------------------


async def document() -> dict[str, Any]:
    """The database's configuration as the document writes it, in a stable order."""
    emails, groups, environments = await _emails(), await _group_names(), await _environment_names()

    def named(rows) -> list[dict]:
        return [{"name": r.name} | ({"archived": True} if r.archived_at else {}) for r in rows]

    members: dict[int, list[str]] = {}
    for group_id, user_id in await GroupMember.all().values_list("group_id", "user_id"):
        members.setdefault(group_id, []).append(emails[user_id])
    pipelines = []
    for pipeline in await Pipeline.all().prefetch_related("application", "environment"):
        settings = await pipeline_settings(pipeline, emails, groups, environments)
        written = {k: v for k, v in settings.items() if k in ALWAYS_WRITTEN or v != PIPELINE_DEFAULTS[k]}
        pipelines.append(
            {"application": pipeline.application.name, "environment": pipeline.environment.name} | written
        )
    pipelines.sort(key=lambda p: (p["application"], p["environment"]))
    bindings = sorted(
        await _current_bindings(emails, groups),
        key=lambda k: (k.holder, k.who, k.role, k.application, k.environment),
    )
    freeze_list = sorted(
        (key for key, _ in await _current_freezes()), key=lambda k: (k.target, k.name, k.window)
    )
    return {
        "version": VERSION,
        "applications": named(await Application.all().order_by("name")),
        "environments": named(await Environment.all().order_by("name")),
        "groups": [
            {"name": name, "members": sorted(members.get(group_id, []))}
            for group_id, name in sorted(groups.items(), key=lambda g: g[1])
        ],
        "pipelines": pipelines,
        "roleBindings": [
            {k.holder: k.who, "role": k.role, "application": k.application, "environment": k.environment}
            for k in bindings
        ],
        "freezes": [_freeze_entry(k) for k in freeze_list],
    }


def _freeze_entry(key: FreezeKey) -> dict[str, Any]:
    kind, _, target = key.target.partition(" ")
    entry: dict[str, Any] = {"name": key.name, kind: target}
    if key.window[0] == "once":
        entry |= {"startsAt": key.window[1], "endsAt": key.window[2]}
    else:
        entry["weekly"] = {"timeZone": key.window[1], "from": key.window[2], "to": key.window[3]}
    return entry


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)


async def export() -> str:
    return dump(await document())


# --- apply ---------------------------------------------------------------------------------------


class _DryRun(Exception):
    """Raised at the end of a dry run, so its one transaction rolls back."""


async def actor_for(authorizer, email: str | None) -> Actor:
    """The super-admin apply acts as: `email`, or the only active super-admin."""
    await authorizer.refresh()
    if email is not None:
        try:
            email = validation.email(email)
        except GreenlightError:
            raise ConfigRefused(f"--as {email!r}: not an email address") from None
        user = await User.get_or_none(email=email)
        if user is None or not user.is_active or not authorizer.is_super_admin(user.id):
            raise ConfigRefused(f"--as {email}: not an active super-admin")
        return Actor(user=user, authorizer=authorizer)
    ids = await RoleBinding.filter(role=Role.SUPER_ADMIN, user__is_active=True).values_list(
        "user_id", flat=True
    )
    admins = sorted(set(ids))
    if len(admins) != 1:
        raise ConfigRefused(
            f"there are {len(admins)} active super-admins: name the one to act as with --as EMAIL"
        )
    return Actor(user=await User.get(id=admins[0]), authorizer=authorizer)


async def apply(actor: Actor, document: Document, *, prune: bool = False, dry_run: bool = False) -> list[str]:
    """Make the database match the document, in one transaction, and say what changed (one
    line a change; none when it matched). A dry run makes the same changes and rolls them
    back. ConfigRefused, and nothing changed, on the first change that is refused."""
    spec = parse(document)
    changes: list[str] = []
    try:
        async with transaction():
            # First, as every change to who may do what takes it: the document's grants,
            # renames and memberships then never wait on a lock another writer holds.
            await lock_policy()
            await _Applier(actor, document, spec, prune, changes).run()
            if dry_run:
                raise _DryRun
    except _DryRun:
        await _forget_rolled_back(actor)
    except Exception:
        await _forget_rolled_back(actor)
        raise
    return changes


async def _forget_rolled_back(actor: Actor) -> None:
    """The actor's rules took in the bindings of the transaction (so the checks after a
    grant saw it): once it is rolled back, they are read again. The refusal being reported
    matters more than a failure to read them."""
    with contextlib.suppress(Exception):
        await actor.authorizer.reload()


class _Applier:
    def __init__(self, actor: Actor, document: Document, spec: Spec, prune: bool, changes: list[str]) -> None:
        self.actor, self.doc, self.spec, self.prune, self.changes = actor, document, spec, prune, changes
        # Pruning touches only the sections the document holds: a file of role bindings
        # alone, applied with prune, leaves freezes and applications as they are.
        self.sections = set(document.data)
        self.own_revocations: list[tuple[BindingKey, int]] = []

    def prunes(self, section: str) -> bool:
        return self.prune and section in self.sections

    async def step(self, path: Path, work) -> Any:
        """One workflow call; its refusal is the document's, at the line of `path`."""
        try:
            return await work
        except GreenlightError as error:
            field_name = error.extensions.get("field", "")
            key = FIELD_KEYS.get(field_name)
            place = (*path, key) if key and (*path, key) in self.doc.marks else path
            message = error.message
            if key and message.startswith(f"{field_name}: "):  # the place names the key already
                message = message[len(field_name) + 2 :]
            raise self.doc.refuse(place, message) from None

    async def run(self) -> None:
        await self.named(
            Application,
            "application",
            "applications",
            self.spec.applications,
            catalog.create_application,
            catalog.update_application,
        )
        await self.named(
            Environment,
            "environment",
            "environments",
            self.spec.environments,
            catalog.create_environment,
            catalog.update_environment,
        )
        self.users = {u.email: u for u in await User.all()}
        await self.groups()
        await self.bindings()
        await self.pipelines()
        await self.freezes()
        # The acting super-admin's own bindings go last of all: revoked earlier, they would
        # leave it unable to make the document's other changes.
        for key, binding_id in self.own_revocations:
            await self.step(("roleBindings",), identity.delete_binding(self.actor, key.holder, binding_id))
            self.changes.append(f"revoke {key} (not in the file)")

    def user(self, email: str, path: Path) -> User:
        user = self.users.get(email)
        if user is None:
            raise self.doc.refuse(path, f"no user {email}; users are not created by apply: create them first")
        return user

    async def named(self, model, kind: str, section: str, wanted: list[Named], create, update) -> None:
        rows = {r.name: r for r in await model.all()}
        for item in wanted:
            row = rows.get(item.name)
            if row is None:
                row = await self.step(item.path, create(self.actor, item.name))
                self.changes.append(f"create {kind} {item.name}")
                if item.archived:
                    await self.step(item.path, update(self.actor, row.id, None, True))
                    self.changes.append(f"archive {kind} {item.name}")
            elif item.archived != (row.archived_at is not None):
                await self.step(item.path, update(self.actor, row.id, None, item.archived))
                self.changes.append(f"{'archive' if item.archived else 'restore'} {kind} {item.name}")
        if self.prunes(section):
            listed = {item.name for item in wanted}
            for name, row in sorted(rows.items()):
                if name not in listed and row.archived_at is None:
                    await self.step((), update(self.actor, row.id, None, True))
                    self.changes.append(f"archive {kind} {name} (not in the file)")

    async def groups(self) -> None:
        rows = {g.name: g for g in await Group.all()}
        for item in self.spec.groups:
            group = rows.get(item.name)
            if group is None:
                group = await self.step(item.path, teams.create_group(self.actor, item.name))
                rows[item.name] = group
                self.changes.append(f"create group {item.name}")
            current = set(await GroupMember.filter(group_id=group.id).values_list("user__email", flat=True))
            for email, path in item.members:
                if email not in current:
                    user = self.user(email, path)
                    await self.step(path, teams.add_member(self.actor, group.id, user.id))
                    self.changes.append(f"add {email} to group {item.name}")
            if self.prunes("groups"):
                listed = {email for email, _ in item.members}
                for email in sorted(current - listed):
                    await self.step(
                        item.path, teams.remove_member(self.actor, group.id, self.users[email].id)
                    )
                    self.changes.append(f"remove {email} from group {item.name} (not in the file)")
        self.group_ids = {name: g.id for name, g in rows.items()}

    def group(self, name: str, path: Path) -> int:
        group_id = self.group_ids.get(name)
        if group_id is None:
            raise self.doc.refuse(path, f"no group {name}: list it under groups")
        return group_id

    async def bindings(self) -> None:
        current = await _current_bindings(await _emails(), await _group_names())
        applications = set(await Application.all().values_list("name", flat=True))
        environments = set(await Environment.all().values_list("name", flat=True))
        for key, path in self.spec.bindings:
            if key in current:
                continue
            holder_path = (*path, key.holder)
            holder_id = (
                self.user(key.who, holder_path).id
                if key.holder == "user"
                else self.group(key.who, holder_path)
            )
            if key.application != WILDCARD and key.application not in applications:
                raise self.doc.refuse((*path, "application"), f"no application {key.application}")
            if key.environment != WILDCARD and key.environment not in environments:
                raise self.doc.refuse((*path, "environment"), f"no environment {key.environment}")
            role = Role(key.role)
            await self.step(
                path,
                identity.create_binding(
                    self.actor, key.holder, holder_id, role, key.application, key.environment
                ),
            )
            self.changes.append(f"grant {key}")
        if self.prunes("roleBindings"):
            listed = {key for key, _ in self.spec.bindings}
            own = ("user", self.actor.user.email)
            for key, binding_id in current.items():
                if key in listed:
                    continue
                if (key.holder, key.who) == own:
                    self.own_revocations.append((key, binding_id))  # at the very end of run()
                    continue
                await self.step(
                    ("roleBindings",), identity.delete_binding(self.actor, key.holder, binding_id)
                )
                self.changes.append(f"revoke {key} (not in the file)")

    async def pipelines(self) -> None:
        applications = {a.name: a for a in await Application.all()}
        environments = {e.name: e for e in await Environment.all()}
        rows = {
            (p.application.name, p.environment.name): p
            for p in await Pipeline.all().prefetch_related("application", "environment")
        }
        # Every pipeline exists before any is updated: requiresHealthyOn names another one.
        created = set()
        for item in self.spec.pipelines:
            if (item.application, item.environment) in rows:
                continue
            application = applications.get(item.application)
            if application is None:
                raise self.doc.refuse((*item.path, "application"), f"no application {item.application}")
            environment = environments.get(item.environment)
            if environment is None:
                raise self.doc.refuse((*item.path, "environment"), f"no environment {item.environment}")
            s = item.settings
            new = await self.step(
                item.path,
                catalog.create_pipeline(
                    self.actor,
                    application.id,
                    environment.id,
                    DeploymentStrategy(s["strategy"]),
                    TriggerType(s["trigger"]),
                    s["minApprovals"],
                    s["ttlHours"],
                    s["approversCanDeploy"],
                ),
            )
            rows[(item.application, item.environment)] = new
            created.add(item.label)
            self.changes.append(f"create pipeline {item.label}")
        emails, groups = await _emails(), await _group_names()
        names = {e.id: name for name, e in environments.items()}
        for item in self.spec.pipelines:
            pipeline = await Pipeline.get(id=rows[(item.application, item.environment)].id)
            before = await pipeline_settings(pipeline, emails, groups, names)
            # A new pipeline takes the defaults for what is left out; one that exists keeps
            # what it holds (a key left out is not a request to reset it).
            wanted = item.settings if item.label in created else item.wanted(before)
            changed = [k for k in PIPELINE_DEFAULTS if before[k] != wanted[k]]
            if not changed:
                continue
            edit, change = self.edit(replace(item, settings=wanted), environments)
            await self.step(item.path, catalog.update_pipeline(self.actor, pipeline.id, edit, change))
            shown = ", ".join(f"{k} {_value(before[k])} -> {_value(wanted[k])}" for k in changed)
            self.changes.append(f"update pipeline {item.label}: {shown}")

    def edit(self, item: PipelineSpec, environments: dict) -> tuple[catalog.PipelineEdit, PolicyChange]:
        s, path = item.settings, item.path
        users = {
            key: [self.user(e, (*path, key)).id for e in s[key]] for key in ("approvers", "exceptionUsers")
        }
        kind = ApprovalPolicyKind(s["policy"])
        healthy_on = None
        if s["requiresHealthyOn"] is not None:
            environment = environments.get(s["requiresHealthyOn"])
            if environment is None:
                raise self.doc.refuse(
                    (*path, "requiresHealthyOn"), f"no environment {s['requiresHealthyOn']}"
                )
            healthy_on = environment.id
        edit = catalog.PipelineEdit(
            strategy=DeploymentStrategy(s["strategy"]),
            trigger_type=TriggerType(s["trigger"]),
            required_approvals=s["minApprovals"],
            ttl_hours=s["ttlHours"],
            clear_ttl_hours=s["ttlHours"] is None,
            approvers_can_deploy=s["approversCanDeploy"],
            remind_after_hours=s["remindAfterHours"],
            clear_remind_after_hours=s["remindAfterHours"] is None,
            escalate_after_hours=s["escalateAfterHours"],
            clear_escalate_after_hours=s["escalateAfterHours"] is None,
            escalate_to_group_id=self.group(s["escalateTo"], (*path, "escalateTo"))
            if s["escalateTo"]
            else None,
            clear_escalate_to_group=s["escalateTo"] is None,
        )
        change = PolicyChange(
            kind=kind,
            approver_ids=users["approvers"] if kind == ApprovalPolicyKind.SPECIFIC_USERS else None,
            group_quorums=[
                Quorum(self.group(q["group"], (*path, "groupQuorums")), q["minApprovals"])
                for q in s["groupQuorums"]
            ]
            if kind == ApprovalPolicyKind.GROUP_QUORUMS
            else None,
            count_once_per_person=s["countOncePerPerson"],
            exception_user_ids=users["exceptionUsers"],
            exception_group_ids=[self.group(g, (*path, "exceptionGroups")) for g in s["exceptionGroups"]],
            cancel_stale_requests=s["cancelStaleRequests"],
            required_checks=s["requiredChecks"],
            requires_healthy_on_id=healthy_on,
            clear_requires_healthy_on=healthy_on is None,
        )
        return edit, change

    async def freezes(self) -> None:
        """A freeze is known by its name and where it applies; its window is what may
        change. Several of one name and place (the API allows it) are matched in window
        order, so a document written by export matches the database it came from."""
        current = await _current_freezes()
        unmatched = list(current)
        fresh: list[tuple[FreezeKey, Path]] = []
        for key, path in self.spec.freezes:
            same = next((pair for pair in unmatched if pair[0] == key), None)
            if same is None:
                fresh.append((key, path))
            else:
                unmatched.remove(same)
        for key, path in fresh:
            await self.create_freeze(key, path)
            replaced = next(
                (pair for pair in unmatched if (pair[0].target, pair[0].name) == (key.target, key.name)), None
            )
            if replaced is None:
                self.changes.append(f"create freeze {key}")
                continue
            # The same name on the same target with another window: that freeze, changed.
            unmatched.remove(replaced)
            await self.step(path, freezes.delete_freeze(self.actor, replaced[1].id))
            self.changes.append(f"update freeze {key}: {replaced[0].window_text} -> {key.window_text}")
        if self.prunes("freezes"):
            for key, row in unmatched:
                await self.step(("freezes",), freezes.delete_freeze(self.actor, row.id))
                self.changes.append(f"remove freeze {key} (not in the file)")

    async def create_freeze(self, key: FreezeKey, path: Path) -> None:
        kind, _, target = key.target.partition(" ")
        environment_id = pipeline_id = None
        if kind == "environment":
            environment = await Environment.get_or_none(name=target)
            if environment is None:
                raise self.doc.refuse((*path, "environment"), f"no environment {target}")
            environment_id = environment.id
        else:
            application, environment = target.split("/")
            pipeline = await Pipeline.get_or_none(
                application__name=application, environment__name=environment
            )
            if pipeline is None:
                raise self.doc.refuse((*path, "pipeline"), f"no pipeline {target}")
            pipeline_id = pipeline.id
        starts = ends = weekly = None
        if key.window[0] == "once":
            starts, ends = datetime.fromisoformat(key.window[1]), datetime.fromisoformat(key.window[2])
        else:
            (start_day, start_time), (end_day, end_time) = (part.split(" ") for part in key.window[2:])
            weekly = freezes.WeeklyWindow(
                key.window[1], Weekday(start_day), start_time, Weekday(end_day), end_time
            )
        await self.step(
            path,
            freezes.create_freeze(self.actor, key.name, environment_id, pipeline_id, starts, ends, weekly),
        )


def _value(value: Any) -> str:
    if value is None or value == []:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return (
            "["
            + ", ".join(
                f"{v['group']}: {v['minApprovals']}" if isinstance(v, dict) else str(v) for v in value
            )
            + "]"
        )
    return str(value)
