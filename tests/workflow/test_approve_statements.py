"""What one approveRequest costs in SQL statements, with the fields the benchmark
selects (bench/queries.py). It was 17 for a first approval and 19 for the approval that
completes the request on SQLite (18 and 21 on PostgreSQL, with its pg_notify); a change that
reads the same rows twice again, writes the audit events one by one, or re-reads in the
answer what the workflow read, fails here. Statements are counted as in
tests/schema/test_statement_counts.py."""

from __future__ import annotations

import logging

from tortoise.log import db_client_logger

from greenlight.models import AuditEvent
from tests.schema.test_statement_counts import StatementCounter, pk

APPROVE = """mutation ApproveRequest($id: ID!) {
  approveRequest(id: $id) {
    id
    state
    approvals { user { email } }
  }
}"""

WARM_UP = "query($id: ID!) { approvalRequest(id: $id) { id } }"

# Before the operation 2: the roles' latest version with the changes since the process's
# (none: it reads nothing more), and the token with its user.
# Then the pipeline with its application and environment, locked; the request with its
# image, locked; its approvals with their users; the new approval; the audit events in one
# statement; and on PostgreSQL one pg_notify.
FIRST = 2 + 3 + 1 + 1
# ... and the state written (the answer's other approver comes with the approvals).
COMPLETING = FIRST + 1


async def counted(client, query: str, variables: dict) -> tuple[int, dict]:
    counter = StatementCounter()
    level = db_client_logger.level
    db_client_logger.addHandler(counter)
    db_client_logger.setLevel(logging.DEBUG)
    try:
        data = await client.ok(query, variables)
    finally:
        db_client_logger.removeHandler(counter)
        db_client_logger.setLevel(level)
    return counter.count, data


async def test_approve_request_statements(world, backend):
    """R12, R25: approveRequest reads the request, its pipeline and image once,
    writes its audit events in one statement, and answers from what it read."""
    notify = 1 if backend == "postgres" else 0
    request = await world.request_approval(await world.register_image("dev"), "shop/prod", who="dev2")
    for who in ("approver1", "approver2"):  # the token's last use and the role bindings
        await world[who].ok(WARM_UP, {"id": request})

    first, data = await counted(world["approver1"], APPROVE, {"id": request})
    assert data["approveRequest"]["state"] == "PENDING"
    assert [a["user"]["email"] for a in data["approveRequest"]["approvals"]] == [world["approver1"].email]
    assert first <= FIRST + notify, f"a first approval sends {first} statements"

    second, data = await counted(world["approver2"], APPROVE, {"id": request})
    assert data["approveRequest"]["state"] == "APPROVED"
    assert [a["user"]["email"] for a in data["approveRequest"]["approvals"]] == [
        world["approver1"].email,
        world["approver2"].email,
    ]
    assert second <= COMPLETING + notify, f"the completing approval sends {second} statements"

    actions = await AuditEvent.filter(object_type="ApprovalRequest", object_id=pk(request)).order_by("id")
    assert [e.action for e in actions] == ["request_approval", "approve", "approve", "request_approved"]
    approvers = [pk(world[w].user_id) for w in ("approver1", "approver2", "approver2")]
    assert [e.actor_id for e in actions[1:]] == approvers
