"""Checks the policy files: model.conf must load as a Casbin model with the sections and
the request shape Greenlight uses, and every policy.csv line must name a known role and
action. Errors name the file and the line."""

from __future__ import annotations

import configparser
from pathlib import Path

from greenlight.models import Role
from greenlight.policies.actions import Action
from greenlight.policies.authorizer import MODEL_PATH, POLICY_PATH

REQUIRED = {
    "request_definition": ("r", "sub, app, env, act"),
    "policy_definition": ("p", "role, act"),
    "role_definition": ("g", "_, _, _"),
    "policy_effect": ("e", None),
    "matchers": ("m", None),
}


class PolicyError(ValueError):
    pass


def check_model(path: Path = MODEL_PATH) -> list[str]:
    errors: list[str] = []
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(), source=str(path))
    except configparser.Error as error:
        return [f"{path.name}: {error}"]
    lines = path.read_text().splitlines()

    def line_of(text: str) -> int:
        return next((i for i, line in enumerate(lines, 1) if line.strip().startswith(text)), 0)

    for section, (key, shape) in REQUIRED.items():
        if not parser.has_section(section):
            errors.append(f"{path.name}: missing section [{section}]")
            continue
        if not parser.has_option(section, key):
            errors.append(f"{path.name} line {line_of('[' + section)}: [{section}] needs '{key} = ...'")
            continue
        value = " ".join(parser.get(section, key).split())
        if shape is not None and value != shape:
            errors.append(f"{path.name} line {line_of(key)}: '{key} = {value}' should be '{key} = {shape}'")
    if errors:
        return errors
    try:
        import casbin

        casbin.Enforcer(str(path))
    except Exception as error:  # casbin raises assorted errors on a bad model
        errors.append(f"{path.name}: Casbin cannot load it: {error}")
    return errors


def check_policy(path: Path = POLICY_PATH) -> list[str]:
    errors: list[str] = []
    roles = {role.value for role in Role}
    actions = {action.value for action in Action}
    seen = set()
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [part.strip() for part in line.split(",")]
        where = f"{path.name} line {number}"
        if len(parts) != 3 or parts[0] != "p":
            errors.append(f"{where}: expected 'p, <role>, <action>', got {line!r}")
            continue
        _, role, action = parts
        if role not in roles:
            errors.append(f"{where}: unknown role {role!r} (known: {', '.join(sorted(roles))})")
        if action not in actions:
            errors.append(f"{where}: unknown action {action!r} (known: {', '.join(sorted(actions))})")
        if (role, action) in seen:
            errors.append(f"{where}: {role}, {action} is listed twice")
        seen.add((role, action))
    if not seen:
        errors.append(f"{path.name}: no rules")
    return errors


def check(model_path: Path = MODEL_PATH, policy_path: Path = POLICY_PATH) -> list[str]:
    return check_model(model_path) + check_policy(policy_path)


def require_valid() -> None:
    errors = check()
    if errors:
        raise PolicyError("invalid policy files:\n" + "\n".join(f"  {e}" for e in errors))
