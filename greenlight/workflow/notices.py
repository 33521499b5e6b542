"""Each user's own notice settings: whether Greenlight emails them its notices."""

from __future__ import annotations

from greenlight.models import User
from greenlight.policies import Actor
from greenlight.tx import transaction
from greenlight.workflow import audit


async def update_my_notification_settings(actor: Actor, email_notices: bool) -> User:
    """Anyone, for themself only: false stops the outcome notices, reminders and escalations
    Greenlight would email them (greenlight.notifications.recipients); the approval requests
    naming them still come (R8). Audited."""
    async with transaction():
        user = await User.select_for_update().get(id=actor.id)
        before = user.email_notices
        if before != email_notices:
            user.email_notices = email_notices
            await user.save(update_fields=["email_notices"])
            await audit.record(
                "update_notification_settings",
                user,
                actor_id=actor.id,
                before={"emailNotices": before},
                after={"emailNotices": email_notices},
            )
    actor.user.email_notices = email_notices
    return user


def sees_settings(actor: Actor, user: User) -> bool:
    """A user's notice settings are theirs and the super-admins' to see."""
    return actor.id == user.id or actor.is_super_admin
