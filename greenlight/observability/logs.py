"""Structured logs: one JSON object a line (plain text on a terminal), each carrying the
request id, the trace and span ids, the GraphQL operation and the acting user of the
request it belongs to.
Tokens and secrets never reach a log line: a filter redacts anything that looks like
one (bearer tokens, API tokens, one-click approve tokens)."""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

from opentelemetry import trace

request_id: ContextVar[str | None] = ContextVar("greenlight_request_id", default=None)
operation: ContextVar[str | None] = ContextVar("greenlight_operation", default=None)
user: ContextVar[str | None] = ContextVar("greenlight_user", default=None)

SECRETS = (
    (re.compile(r"(?i)(bearer\s+)[^\s\"',]+"), r"\1[redacted]"),
    (re.compile(r"glt_[A-Za-z0-9_\-]+"), "glt_[redacted]"),
    (re.compile(r"(?i)(token=)[^&\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)(\"?(?:password|secret|token)\"?\s*[:=]\s*\"?)[^\s\"',}]+"), r"\1[redacted]"),
)


def redact(text: str) -> str:
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return text


class ContextFilter(logging.Filter):
    """Adds the request's context to each record and redacts secrets from its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.operation = operation.get()
        record.user = user.get()
        span = trace.get_current_span().get_span_context()
        record.trace_id = format(span.trace_id, "032x") if span.is_valid else None
        record.span_id = format(span.span_id, "016x") if span.is_valid else None
        message = redact(record.getMessage())
        record.msg, record.args = message, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "trace_id": getattr(record, "trace_id", None),
            "span_id": getattr(record, "span_id", None),
            "operation": getattr(record, "operation", None),
            "user": getattr(record, "user", None),
        }
        for key in ("outcome", "duration_ms", "status", "path", "method"):
            if hasattr(record, key):
                line[key] = getattr(record, key)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps({k: v for k, v in line.items() if v is not None}, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger [request id] message`; outside a request, no brackets."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request_tag)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request = getattr(record, "request_id", None)
        record.request_tag = f" [{request}]" if request else ""
        text = super().format(record)
        return redact(text) if record.exc_info else text


def setup(log_format: str = "auto", level: str = "INFO", stream=None) -> logging.Handler:
    """Send every log record (ours, uvicorn's, the libraries') through one handler."""
    stream = stream or sys.stderr
    if log_format == "auto":
        log_format = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # Greenlight writes its own access lines (greenlight.access), without query strings.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
    logging.getLogger("tortoise").setLevel(max(logging.getLevelName(level), logging.INFO))
    return handler
