"""One approval request's life: its states, the moves between them, and the lock order.
Every change of a request's state goes through `approve` or `close` here, and a move the
table does not hold is refused here (INVALID_STATE), whatever the caller decided before.

    PENDING  -> APPROVED    the policy's approvals are all there (R12)
    PENDING  -> REJECTED    an approver rejects (R13)
    APPROVED -> REJECTED    an approver rejects an approval not yet used (R13)
    PENDING  -> CANCELLED   the requester or a super-admin cancels (R14); the pipeline stops
    APPROVED -> CANCELLED   needing approval; a newer image is deployed (cancelStaleRequests)
    PENDING  -> EXPIRED     its expiry passes (R15): reads say so at once, the sweep writes it
    APPROVED -> EXPIRED
    APPROVED -> CONSUMED    a deployment uses it, once (R20)

REJECTED, CANCELLED, EXPIRED and CONSUMED are final (R16): nothing moves out of them. A
live request whose expiry has passed is EXPIRED already (R15), so its only move is to be
written EXPIRED. Staleness is not a state: it is a mark on a live request (`stale`).

The lock order, written once (R17): a writer locks the request's pipeline, then the
request, in that order, before reading either's state; `lock` does both. Writers that
start from the pipeline (requestApproval, deployImage) lock it first through
`guards.find_pipeline(lock=True)` and the request after it.
"""

from __future__ import annotations

from greenlight import notifications
from greenlight.clock import now
from greenlight.errors import InvalidState
from greenlight.models import ApprovalRequest, ApprovalState, Pipeline, queries
from greenlight.workflow import audit
from greenlight.workflow.states import effective_state

PENDING, APPROVED = ApprovalState.PENDING, ApprovalState.APPROVED
REJECTED, CANCELLED = ApprovalState.REJECTED, ApprovalState.CANCELLED
EXPIRED, CONSUMED = ApprovalState.EXPIRED, ApprovalState.CONSUMED

MOVES: dict[ApprovalState, frozenset[ApprovalState]] = {
    PENDING: frozenset({APPROVED, REJECTED, CANCELLED, EXPIRED}),
    APPROVED: frozenset({REJECTED, CANCELLED, EXPIRED, CONSUMED}),
    REJECTED: frozenset(),
    CANCELLED: frozenset(),
    EXPIRED: frozenset(),
    CONSUMED: frozenset(),
}
FINAL = frozenset(state for state, moves in MOVES.items() if not moves)

# Who hears of a move to these (greenlight.notifications.recipients); an approval is told
# by the approve function, which knows who approved.
_TOLD = {REJECTED: "rejected", CANCELLED: "cancelled", EXPIRED: "expired"}


def check_move(request: ApprovalRequest, new_state: ApprovalState) -> None:
    """Refuse a move the table does not hold, from the request's state as reads see it: a
    live request past its expiry is EXPIRED (R15) and may only be written so."""
    stored = ApprovalState(request.state)
    current = effective_state(request)
    if current != stored and new_state != current:
        raise InvalidState(f"the approval request is {current.value}; it cannot become {new_state.value}")
    if new_state not in MOVES[stored]:
        raise InvalidState(f"an approval request cannot go from {stored.value} to {new_state.value}")


async def lock(request_id: int) -> tuple[ApprovalRequest, Pipeline] | None:
    """R17's order: the request's pipeline (with its application and environment), then the
    request (with its image), each row locked; None when there is no such request."""
    pipeline = await queries.lock_pipeline_of_request(request_id)
    if pipeline is None:
        return None
    request = await queries.lock_request_for_update(request_id)
    if request is None:
        return None
    request.pipeline = pipeline
    return request, pipeline


async def approve(request: ApprovalRequest) -> None:
    """PENDING -> APPROVED, on a locked request whose approvals are all there (R12). The
    caller audits it with the approval that completed it, in one statement."""
    check_move(request, APPROVED)
    request.state = APPROVED
    await request.save(update_fields=["state"])


async def close(
    request: ApprovalRequest,
    new_state: ApprovalState,
    *,
    actor_id: int | None,
    scope,
    reason: str | None = None,
) -> None:
    """Move a locked live request to a final state (R16), audit it (R25), and tell everyone
    concerned of a rejection, a cancellation or an expiry."""
    if new_state not in FINAL:
        raise ValueError(f"{new_state.value} is not a final state")
    check_move(request, new_state)
    before = ApprovalState(request.state).value
    request.state = new_state
    request.live_key = None
    request.closed_at = now()
    await request.save(update_fields=["state", "live_key", "closed_at"])
    await audit.record(
        f"request_{new_state.value.lower()}",
        request,
        actor_id=actor_id,
        before={"state": before},
        after={"state": new_state.value},
        scope=scope,
    )
    if new_state in _TOLD:
        await notifications.request_closed(request, _TOLD[new_state], reason, actor_id=actor_id)
