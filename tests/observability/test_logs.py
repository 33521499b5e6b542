"""Logs: with JSON logging on, every line a request produces is one JSON object
carrying the request id (an incoming valid X-Request-ID is honoured and echoed, a bad one
replaced), and GraphQL lines carry the operation name and the acting user; no line ever
holds a bearer token, an API token (glt_...) or a one-click token from a query string.
`auto` means text on a terminal and JSON otherwise."""

from __future__ import annotations

import gc
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator

import pytest

from greenlight.observability import logs
from greenlight.workflow import reads

WHO_AM_I = "query WhoAmI { me { email } }"
HEX_ID = re.compile(r"[0-9a-f]{32}")


class LogCapture(io.StringIO):
    def lines(self) -> list[dict]:
        """Every line written so far, each of which must be one JSON object."""
        parsed = []
        for line in self.getvalue().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"log line is not JSON: {line!r}")
            assert isinstance(record, dict), line
            assert {"time", "level", "logger", "message"} <= record.keys(), record
            parsed.append(record)
        return parsed

    def of(self, request_id: str) -> list[dict]:
        return [line for line in self.lines() if line.get("request_id") == request_id]


LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "tortoise")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """logs.setup replaces the root logger's handlers (pytest's own among them): put
    everything back afterwards."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved = {
        name: (
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).propagate,
            logging.getLogger(name).level,
        )
        for name in LOGGERS
    }
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_root[0]:
            root.addHandler(handler)
        root.setLevel(saved_root[1])
        for name, (handlers, propagate, level) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers = handlers
            logger.propagate = propagate
            logger.setLevel(level)


@pytest.fixture
def json_logs(restore_logging) -> LogCapture:
    stream = LogCapture()
    logs.setup("json", "INFO", stream=stream)
    return stream


async def post(world, query: str, token: str | None = None, variables: dict | None = None, **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = await world.http.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response


async def test_graphql_lines_are_json_with_request_id_operation_and_user(world, json_logs):
    """An incoming X-Request-ID is echoed and is on every line of the request;
    the GraphQL line names the operation, its outcome and the acting user's email."""
    request_id = f"edge-{uuid.uuid4().hex[:12]}.retry:1"
    response = await post(world, WHO_AM_I, world["dev"].token, **{"X-Request-ID": request_id})
    assert response.json() == {"data": {"me": {"email": "dev@example.com"}}}
    assert response.headers["x-request-id"] == request_id

    lines = json_logs.of(request_id)
    graphql = [line for line in lines if line["logger"] == "greenlight.graphql"]
    assert len(graphql) == 1, lines
    assert graphql[0]["operation"] == "WhoAmI"
    assert graphql[0]["user"] == "dev@example.com"
    assert graphql[0]["outcome"] == "OK"
    assert graphql[0]["level"] == "INFO"
    access = [line for line in lines if line["logger"] == "greenlight.access"]
    assert len(access) == 1, lines
    assert (access[0]["method"], access[0]["path"], access[0]["status"]) == ("POST", "/graphql", 200)
    # Nothing of this request went out without its id.
    assert all(
        line.get("request_id") for line in json_logs.lines() if line["logger"].startswith("greenlight.")
    )


async def test_failed_operation_line_has_outcome_code_and_user(world, json_logs):
    """A refused operation is logged with its contract code and who asked."""
    response = await post(world, "query AllUsers { users { id } }", world["viewer"].token)
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    request_id = response.headers["x-request-id"]
    graphql = [line for line in json_logs.of(request_id) if line["logger"] == "greenlight.graphql"]
    assert len(graphql) == 1
    assert (graphql[0]["operation"], graphql[0]["outcome"], graphql[0]["user"]) == (
        "AllUsers",
        "FORBIDDEN",
        "viewer@example.com",
    )


async def test_request_id_is_generated_when_absent(world, json_logs):
    """Without an X-Request-ID each request gets a fresh one, echoed and logged."""
    first = await post(world, WHO_AM_I, world["dev"].token)
    second = await post(world, WHO_AM_I, world["dev"].token)
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(HEX_ID.fullmatch(i) for i in ids), ids
    assert ids[0] != ids[1]
    for request_id in ids:
        assert [line["logger"] for line in json_logs.of(request_id)].count("greenlight.graphql") == 1


@pytest.mark.parametrize(
    "bad",
    [
        "x" * 129,  # too long
        "abc def",  # a space
        "<script>alert(1)</script>",
        'id"},"user":"admin@example.com',  # tries to forge JSON fields
    ],
)
async def test_invalid_request_id_is_replaced(world, json_logs, bad):
    """An X-Request-ID that is too long or has other characters than
    letters, digits and . _ : - is not trusted: a generated one replaces it."""
    response = await post(world, WHO_AM_I, world["dev"].token, **{"X-Request-ID": bad})
    request_id = response.headers["x-request-id"]
    assert request_id != bad
    assert HEX_ID.fullmatch(request_id), request_id
    assert json_logs.of(request_id), "the generated id is on the request's lines"
    assert bad not in json_logs.getvalue()
    assert all(line.get("request_id") != bad for line in json_logs.lines())


async def test_no_line_holds_a_token(world, json_logs, monkeypatch):
    """Bearer tokens, API tokens (glt_...), one-click tokens in query strings and
    secrets in exceptions never reach a log line, whatever path they come in by."""
    dev_token = world["dev"].token
    assert dev_token.startswith("glt_")
    one_click = "v1." + uuid.uuid4().hex + "." + uuid.uuid4().hex
    unknown = "glt_" + uuid.uuid4().hex
    secrets = [dev_token, world["admin"].token, one_click, unknown, dev_token.removeprefix("glt_")]

    await post(world, WHO_AM_I, dev_token)
    await post(world, WHO_AM_I, unknown)  # UNAUTHENTICATED: invalid token
    await post(world, WHO_AM_I, None, Authorization=f"Token {dev_token}")  # malformed header
    # A token pasted into an argument of a refused operation.
    await post(
        world,
        "query Leak($t: String!) { pipelineFor(application: $t, environment: $t) { id } }",
        dev_token,
        {"t": dev_token},
    )
    issued = await post(
        world,
        "mutation Issue($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }",
        world["admin"].token,
        {"i": {"userId": world["dev"].user_id, "name": "ci"}},
    )
    new_token = issued.json()["data"]["issueApiToken"]["token"]
    secrets.append(new_token)
    page = await world.http.get(f"/one-click/approve?token={one_click}&x=1")
    assert page.status_code in (200, 400, 403, 404, 409)

    # An unexpected error whose message and traceback carry the token.
    async def broken(actor, *args, **kwargs):
        raise RuntimeError(f"upstream refused Authorization: Bearer {dev_token} (token={one_click})")

    monkeypatch.setattr(reads, "applications", broken)
    response = await post(world, "query Apps { applications { id } }", dev_token)
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "INTERNAL"
    request_id = response.headers["x-request-id"]
    internal = [line for line in json_logs.of(request_id) if "exception" in line]
    assert len(internal) == 1, json_logs.of(request_id)
    assert "RuntimeError" in internal[0]["exception"]
    assert "[redacted]" in internal[0]["exception"]

    # And what code of ours, or a library, might log directly.
    other = logging.getLogger("greenlight.test")
    other.info("calling with Authorization: Bearer %s", dev_token)
    other.warning("token %s rejected", new_token)
    other.info("GET /one-click/approve?token=%s", one_click)
    other.info('payload {"password": "hunter2-%s", "secret": "s3cr3t-%s"}', one_click, one_click)

    text = json_logs.getvalue()
    json_logs.lines()  # every line still valid JSON
    for secret in secrets:
        assert secret not in text
    assert "hunter2" not in text and "s3cr3t" not in text
    access = [line for line in json_logs.lines() if line["logger"] == "greenlight.access"]
    assert any(line["path"] == "/one-click/approve" for line in access)
    assert all("?" not in line["message"] for line in access)


async def test_unauthenticated_operation_line(world, json_logs):
    """A request without credentials gets its own graphql line, with its request
    id and outcome UNAUTHENTICATED."""
    response = await post(world, "query Anyone { me { email } }", None)
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    gc.collect()
    request_id = response.headers["x-request-id"]
    graphql = [line for line in json_logs.of(request_id) if line["logger"] == "greenlight.graphql"]
    assert len(graphql) == 1, json_logs.lines()
    assert graphql[0]["outcome"] == "UNAUTHENTICATED"
    assert "user" not in graphql[0]
    assert not any(line.get("outcome") == "INTERNAL" for line in json_logs.lines())


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_is_text_on_a_terminal(restore_logging):
    """`auto` writes plain text lines to a terminal (still redacted)."""
    stream = FakeTerminal()
    handler = logs.setup("auto", "INFO", stream=stream)
    assert isinstance(handler.formatter, logs.TextFormatter)
    token = logs.request_id.set("req-tty")
    try:
        logging.getLogger("greenlight.test").info("hello Bearer glt_abcdef123")
    finally:
        logs.request_id.reset(token)
    line = stream.getvalue().strip()
    assert line.endswith("INFO greenlight.test [req-tty] hello Bearer [redacted]"), line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_auto_format_is_json_elsewhere(restore_logging):
    """`auto` writes JSON when the stream is not a terminal (a pipe, a file)."""
    stream = LogCapture()
    handler = logs.setup("auto", "INFO", stream=stream)
    assert isinstance(handler.formatter, logs.JsonFormatter)
    logging.getLogger("greenlight.test").info("hello %s", "world")
    logging.getLogger("greenlight.test").debug("below the level")
    (line,) = stream.lines()
    assert (line["logger"], line["message"], line["level"]) == ("greenlight.test", "hello world", "INFO")


def test_setup_installs_exactly_one_root_handler(restore_logging):
    """Setting up twice leaves one handler, so no line is written twice."""
    stream = LogCapture()
    logs.setup("json", "INFO", stream=io.StringIO())
    logs.setup("json", "WARNING", stream=stream)
    assert len(logging.getLogger().handlers) == 1
    logging.getLogger("greenlight.test").warning("once")
    logging.getLogger("greenlight.test").info("dropped")
    assert [line["message"] for line in stream.lines()] == ["once"]


SPAN_HEX = re.compile(r"[0-9a-f]{16}")


async def test_every_json_line_of_a_request_carries_trace_and_span_ids(world, json_logs):
    """Beside request_id, each line of a request has trace_id and span_id, with tracing
    off too; with an incoming traceparent the trace id is the caller's."""
    caller_trace = uuid.uuid4().hex
    for headers in ({}, {"traceparent": f"00-{caller_trace}-b7ad6b7169203331-01"}):
        response = await post(world, WHO_AM_I, world["dev"].token, **headers)
        lines = json_logs.of(response.headers["x-request-id"])
        assert {line["logger"] for line in lines} >= {"greenlight.access", "greenlight.graphql"}, lines
        for line in lines:
            assert HEX_ID.fullmatch(line["trace_id"]), line
            assert SPAN_HEX.fullmatch(line["span_id"]), line
        assert len({line["trace_id"] for line in lines}) == 1
        if headers:
            assert lines[0]["trace_id"] == caller_trace
            assert all(line["span_id"] != "b7ad6b7169203331" for line in lines)
    # Two requests without a traceparent are two traces.
    first = await post(world, WHO_AM_I, world["dev"].token)
    second = await post(world, WHO_AM_I, world["dev"].token)
    traces = {json_logs.of(r.headers["x-request-id"])[0]["trace_id"] for r in (first, second)}
    assert len(traces) == 2


def test_text_lines_outside_a_request_print_no_none(restore_logging):
    """Outside a request there is no request id: the text line has no `[None]`, no brackets."""
    stream = FakeTerminal()
    logs.setup("text", "INFO", stream=stream)
    logging.getLogger("greenlight.test").info("started")
    line = stream.getvalue().strip()
    assert "None" not in line
    assert line.endswith("INFO greenlight.test started"), line
