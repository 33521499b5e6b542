"""Who hears what: the one place deciding who is emailed about a request's outcome.

| outcome   | requester | named approvers | those who approved |
|-----------|-----------|-----------------|--------------------|
| requested | -         | yes (R8)        | -                  |
| approved  | yes       | yes             | -                  |
| rejected  | yes       | yes             | yes                |
| cancelled | yes       | yes             | yes                |
| expired   | yes       | yes             | -                  |

Whoever acted is never told of their own action (the requester cancelling their request
hears nothing; the approver whose approval completed it neither). Each person is told
once, however many of the columns they are in. Deactivated users, and users who turned
notices off (`User.email_notices`), are left out when the email is written
(`greenlight.notifications._queue`); approval requests (R8) still reach the latter.
"""

from __future__ import annotations

from collections.abc import Iterable

REQUESTER = "requester"
NAMED = "named approvers"
APPROVED = "those who approved"

WHO_HEARS: dict[str, tuple[str, ...]] = {
    "requested": (NAMED,),
    "approved": (REQUESTER, NAMED),
    "rejected": (REQUESTER, NAMED, APPROVED),
    "cancelled": (REQUESTER, NAMED, APPROVED),
    "expired": (REQUESTER, NAMED),
}


def who_hears(
    outcome: str,
    *,
    requester_id: int,
    named_ids: Iterable[int],
    approver_ids: Iterable[int],
    actor_id: int | None,
) -> list[int]:
    """The users told of `outcome`, in a stable order (requester first), without the actor."""
    audience = WHO_HEARS[outcome]
    chosen: list[int] = []
    if REQUESTER in audience:
        chosen.append(requester_id)
    if NAMED in audience:
        chosen.extend(sorted(named_ids))
    if APPROVED in audience:
        chosen.extend(sorted(approver_ids))
    return [user_id for user_id in dict.fromkeys(chosen) if user_id != actor_id]
