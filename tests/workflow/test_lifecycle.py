"""One request lifecycle (R12 to R18): the table of moves, refused where it is kept, and
every state change of a request going through it."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from greenlight.errors import InvalidState
from greenlight.models import ApprovalRequest, ApprovalState
from greenlight.workflow import lifecycle

S = ApprovalState
ROOT = Path(__file__).resolve().parents[2] / "greenlight"


def _request(state: ApprovalState, expires_at: datetime | None = None) -> ApprovalRequest:
    return ApprovalRequest(id=1, state=state, expires_at=expires_at)


def test_r16_the_table_holds_exactly_the_moves_of_the_rules():
    moves = lifecycle.MOVES
    assert moves == {
        S.PENDING: {S.APPROVED, S.REJECTED, S.CANCELLED, S.EXPIRED},
        S.APPROVED: {S.REJECTED, S.CANCELLED, S.EXPIRED, S.CONSUMED},  # R13: rejected before use
        S.REJECTED: set(),
        S.CANCELLED: set(),
        S.EXPIRED: set(),
        S.CONSUMED: set(),
    }
    final = lifecycle.FINAL
    assert final == {S.REJECTED, S.CANCELLED, S.EXPIRED, S.CONSUMED}


@pytest.mark.parametrize("old", list(S))
@pytest.mark.parametrize("new", list(S))
def test_r16_a_move_outside_the_table_is_refused(old, new):
    request = _request(old)
    if new in lifecycle.MOVES[old]:
        lifecycle.check_move(request, new)
    else:
        with pytest.raises(InvalidState):
            lifecycle.check_move(request, new)


@pytest.mark.parametrize("old", [S.PENDING, S.APPROVED])
@pytest.mark.parametrize("new", [S.APPROVED, S.REJECTED, S.CANCELLED, S.CONSUMED])
def test_r15_a_request_past_its_expiry_can_only_be_written_expired(old, new):
    request = _request(old, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(InvalidState, match="EXPIRED"):
        lifecycle.check_move(request, new)
    lifecycle.check_move(request, S.EXPIRED)


async def test_r16_closing_into_a_live_state_is_a_programming_error(database):
    with pytest.raises(ValueError):
        await lifecycle.close(_request(S.PENDING), S.APPROVED, actor_id=None, scope=None)


def _writes_of_state(tree: ast.AST) -> list[int]:
    """Lines that assign `<something>.state = ...` or update(state=...) on a request."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr == "state":
                    lines.append(node.lineno)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "update"
            and any(k.arg == "state" for k in node.keywords)
        ):
            lines.append(node.lineno)
    return lines


def test_r16_no_module_but_the_lifecycle_writes_a_request_state():
    """A new writer that sets `request.state` itself skips the table: this fails."""
    writers = {}
    for path in ROOT.rglob("*.py"):
        # greenlight/ci is a client of the API, with no database (tests/ci/test_layering.py).
        if path.name == "lifecycle.py" or {"migrations", "ci"} & set(path.relative_to(ROOT).parts):
            continue
        text = path.read_text()
        if "ApprovalRequest" not in text and "request" not in text:
            continue
        # Deployments have a state of their own (`status`); only requests have `state`.
        if found := _writes_of_state(ast.parse(text)):
            writers[str(path.relative_to(ROOT))] = found
    assert writers == {}
