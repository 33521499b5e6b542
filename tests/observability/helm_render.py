"""A small renderer for the subset of Helm's Go templates that deploy/helm/greenlight uses, so
the chart's manifests can be checked where the `helm` binary cannot be installed (neither
Debian nor PyPI ship it).

Supported: `{{ expr }}`, `{{ if expr }}`/`{{ else }}`/`{{ end }}`, `{{ range $k, $v := expr }}`
(a map in key order, or a list with its indices), `{{/* comments */}}`, `{{-`/`-}}` trimming;
terms `.Values.a.b`, `.Release.Name`, `.Release.Namespace`, `.Chart.Name`, `.Chart.Version`,
`.Chart.AppVersion`, `$var`, `$var.field`, "strings" and integers; functions (called first
or piped) `quote`, `toYaml`, `nindent N`, `indent N`, `required "message"`, `default VALUE`,
`not`, `printf "%s..." ARGS`. Anything else raises, so the chart cannot silently drift past
what is checked here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


class TemplateError(Exception):
    pass


def _tokens(source: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", s) in order, with the trimming markers applied."""
    out: list[tuple[str, str]] = []
    position = 0
    trim_next = False
    for match in _ACTION.finditer(source):
        text = source[position : match.start()]
        if trim_next:
            text = text.lstrip()
        if match[1]:
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", match[2]))
        trim_next = bool(match[3])
        position = match.end()
    text = source[position:]
    out.append(("text", text.lstrip() if trim_next else text))
    return out


def _parse(
    tokens: list[tuple[str, str]], index: int = 0, until: tuple[str, ...] = ()
) -> tuple[list, int, str]:
    """A tree of nodes up to an action in `until` ("end", "else"); returns (nodes, next, stop)."""
    nodes: list = []
    while index < len(tokens):
        kind, value = tokens[index]
        index += 1
        if kind == "text":
            nodes.append(("text", value))
            continue
        if value.startswith("/*"):
            continue
        word = value.split(None, 1)[0] if value else ""
        if word in until:
            return nodes, index, word
        if word == "if":
            body, index, stop = _parse(tokens, index, ("else", "end"))
            other: list = []
            if stop == "else":
                other, index, stop = _parse(tokens, index, ("end",))
            nodes.append(("if", value[2:].strip(), body, other))
        elif word == "range":
            match = re.fullmatch(r"range\s+\$(\w+)\s*,\s*\$(\w+)\s*:=\s*(.+)", value)
            if not match:
                raise TemplateError(f"unsupported range: {value}")
            body, index, _ = _parse(tokens, index, ("end",))
            nodes.append(("range", match[1], match[2], match[3], body))
        elif word in ("end", "else"):
            raise TemplateError(f"unexpected {word}")
        else:
            nodes.append(("expr", value))
    if until:
        raise TemplateError(f"missing {{{{ end }}}} (wanted one of {until})")
    return nodes, index, ""


def _truthy(value: Any) -> bool:
    return bool(value)


def _to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")


def _quote(value: Any) -> str:
    if value is None:
        value = ""
    if isinstance(value, bool):
        value = str(value).lower()
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Renderer:
    def __init__(self, context: dict[str, Any]) -> None:
        self.context = context

    def _term(self, word: str, variables: dict[str, Any]) -> Any:
        if word.startswith('"'):
            return shlex.split(word)[0]
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        if word in ("true", "false"):
            return word == "true"
        if word.startswith("$"):
            name, *path = word[1:].split(".")
            if name not in variables:
                raise TemplateError(f"undefined variable ${name}")
            value = variables[name]
        elif word.startswith("."):
            path = word[1:].split(".")
            value = self.context
        else:
            raise TemplateError(f"unsupported term {word!r}")
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def _call(self, name: str, args: list[Any], piped: list[Any]) -> Any:
        args = args + piped
        if name == "quote":
            return " ".join(_quote(a) for a in args)
        if name == "toYaml":
            return _to_yaml(args[0])
        if name in ("nindent", "indent"):
            width, text = args
            padded = "\n".join((" " * width + line) if line else line for line in str(text).split("\n"))
            return ("\n" + padded) if name == "nindent" else padded
        if name == "required":
            message, value = args
            if value is None or value == "":
                raise TemplateError(message)
            return value
        if name == "default":
            fallback, *value = args
            return value[0] if value and _truthy(value[0]) else fallback
        if name == "not":
            return not _truthy(args[0])
        if name == "printf":
            return args[0] % tuple(args[1:])
        raise TemplateError(f"unsupported function {name!r}")

    def _evaluate(self, expression: str, variables: dict[str, Any]) -> Any:
        value: list[Any] = []
        for stage in expression.split("|"):
            words = shlex.split(stage, posix=False)
            if not words:
                raise TemplateError(f"empty pipeline stage in {expression!r}")
            head, rest = words[0], [self._term(w, variables) for w in words[1:]]
            if head[0] in '."$' or re.fullmatch(r"-?\d+|true|false", head):
                if rest or value:
                    raise TemplateError(f"unsupported expression {expression!r}")
                value = [self._term(head, variables)]
            else:
                value = [self._call(head, rest, value)]
        return value[0]

    def render_nodes(self, nodes: list, variables: dict[str, Any]) -> str:
        out = []
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "expr":
                value = self._evaluate(node[1], variables)
                out.append(
                    "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
                )
            elif kind == "if":
                _, condition, body, other = node
                chosen = body if _truthy(self._evaluate(condition, variables)) else other
                out.append(self.render_nodes(chosen, variables))
            elif kind == "range":
                _, key_name, value_name, expression, body = node
                collection = self._evaluate(expression, variables) or {}
                items = sorted(collection.items()) if isinstance(collection, dict) else enumerate(collection)
                for key, value in items:
                    out.append(self.render_nodes(body, {**variables, key_name: key, value_name: value}))
        return "".join(out)

    def render(self, source: str) -> str:
        nodes, _, _ = _parse(_tokens(source))
        return self.render_nodes(nodes, {})


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in override.items()}}
    return override


def render_chart(
    chart: Path,
    values: dict[str, Any] | None = None,
    release: str = "greenlight",
    namespace: str = "greenlight",
) -> dict[str, str]:
    """Template file name -> rendered YAML, over values.yaml with `values` merged in (as
    `helm template RELEASE CHART --namespace NAMESPACE -f values`)."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    merged = _merge(yaml.safe_load((chart / "values.yaml").read_text()), values or {})
    renderer = Renderer(
        {
            "Values": merged,
            "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
            "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta.get("appVersion")},
        }
    )
    return {
        path.name: renderer.render(path.read_text()) for path in sorted((chart / "templates").glob("*.yaml"))
    }
