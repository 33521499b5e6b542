"""Library internals fenced: when a dependency changes under the private parts Greenlight
uses (greenlight.internals for Tortoise's ORM, greenlight.sqlite for aiosqlite and
Tortoise's SQLite client), Greenlight takes the public path, logs it once, and answers the
same."""

from __future__ import annotations

import logging
import re

from greenlight import internals, sqlite
from greenlight.models import ApiToken, Pipeline, User
from greenlight.models.prepared import Prepared
from tests.models.test_prepared import described, pipeline_of_request

ROOT_PATTERN = re.compile(r"\._set_result_for_query|\._user\b|\._choose_db|\._make_query|\._prefetch_map")

WITHDRAW = """mutation($id: ID!) { withdrawApproval(requestId: $id) {
  id state progress approvals { user { email } }
} }"""
APPROVE = """mutation($id: ID!) { approveRequest(id: $id) {
  id state progress approvals { user { email } comment }
} }"""
VIEW = """query($id: ID!) { approvalRequest(id: $id) {
  state progress approvals { user { email } } requestedBy { email }
} }"""


async def story(world) -> list[dict]:
    """An approval withdrawn, two more, read back: what clients see of it."""
    request = await world.request_approval(await world.register_image("dev"), "shop/prod", who="dev2")
    seen = [(await world["approver1"].ok(APPROVE, {"id": request}))["approveRequest"]]
    seen.append((await world["approver1"].ok(WITHDRAW, {"id": request}))["withdrawApproval"])
    for who in ("approver2", "approver1"):
        seen.append((await world[who].ok(APPROVE, {"id": request}))["approveRequest"])
    seen.append((await world["viewer"].ok(VIEW, {"id": request}))["approvalRequest"])
    for answer in seen:
        answer.pop("id", None)
    return seen


async def test_the_public_path_answers_as_the_private_one(world, monkeypatch, caplog):
    """Library internals fenced: approving, withdrawing and reading back, and the prepared
    reads, answer the same on Tortoise's public path; the fallback is logged once."""
    fast = await story(world)
    prepared = Prepared(Pipeline, pipeline_of_request)
    request_ids = [
        int(r.split(":")[1]) for r in [await world.request_approval(await world.register_image("dev"))]
    ]
    fast_pipelines = [described(await prepared.first(i)) for i in request_ids]
    fast_tokens = {
        t.id: (await Prepared(ApiToken, by_hash).first(t.token_hash)).user.email for t in await ApiToken.all()
    }

    monkeypatch.setattr(internals, "_private_ok", None)
    monkeypatch.setitem(internals.EXPECTED, User, ("_a_part_tortoise_no_longer_has",))
    with caplog.at_level(logging.WARNING, logger="greenlight.internals"):
        assert internals.check() is False
        assert internals.check() is False
        slow = await story(world)
    assert slow == fast
    assert [r.getMessage() for r in caplog.records if r.name == "greenlight.internals"] == [
        "Tortoise lacks User._a_part_tortoise_no_longer_has: prepared statements and kept relations are off, "
        "every query is built by Tortoise's public API (slower, same answers)"
    ]
    public = Prepared(Pipeline, pipeline_of_request)
    assert [described(await public.first(i)) for i in request_ids] == fast_pipelines
    assert public._statements == {}  # never prepared: built by the public API every time
    tokens = {
        t.id: (await Prepared(ApiToken, by_hash).first(t.token_hash)).user.email for t in await ApiToken.all()
    }
    assert tokens == fast_tokens


def by_hash(token_hash):
    return ApiToken.filter(token_hash=token_hash).select_related("user").limit(1)


def test_every_private_part_the_pinned_versions_have_is_found():
    """Library internals fenced: with the pinned Tortoise and aiosqlite, nothing is missing
    (the fast paths are on), and a part that is not there is named."""
    assert internals._missing() == []
    assert sqlite._missing() == []


def test_sqlite_falls_back_to_tortoises_own_client(monkeypatch, caplog, tmp_path):
    """Library internals fenced: an aiosqlite without a part greenlight.sqlite uses makes
    SQLite run through Tortoise's own client, logged once."""
    from greenlight import db

    monkeypatch.setattr(sqlite, "_engine", None)
    monkeypatch.setitem(sqlite.EXPECTED, sqlite.aiosqlite.Connection, ("_a_part_aiosqlite_no_longer_has",))
    with caplog.at_level(logging.WARNING, logger="greenlight.sqlite"):
        config = db.tortoise_config(f"sqlite://{tmp_path}/x.sqlite3")
        db.tortoise_config(f"sqlite://{tmp_path}/x.sqlite3")
    assert config["connections"]["default"]["engine"] == "tortoise.backends.sqlite"
    assert len([r for r in caplog.records if r.name == "greenlight.sqlite"]) == 1


async def test_sqlite_through_tortoises_own_client_answers_the_same(tmp_path, monkeypatch):
    """Library internals fenced: the story above, on SQLite through Tortoise's own client,
    reads what greenlight.sqlite's client wrote."""
    from greenlight import db

    url = f"sqlite://{tmp_path}/fallback.sqlite3"
    await db.migrate(url)
    await db.connect(url)
    try:
        await User.create(email="a@example.com", name="a")
        fast = [(u.id, u.email) for u in await User.all()]
    finally:
        await db.close()
    monkeypatch.setattr(sqlite, "_engine", sqlite.FALLBACK_ENGINE)
    await db.connect(url)
    try:
        assert db.tortoise_config(url)["connections"]["default"]["engine"] == sqlite.FALLBACK_ENGINE
        assert [(u.id, u.email) for u in await User.all()] == fast
        await User.create(email="b@example.com", name="b")
        assert await User.filter(email="b@example.com").count() == 1
    finally:
        await db.close()


def test_no_private_part_of_a_library_is_touched_outside_its_fence():
    """Library internals fenced: Tortoise's private names appear only in
    greenlight.internals and greenlight.sqlite."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "greenlight"
    fences = {root / "internals.py", root / "sqlite.py"}
    found = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        if path not in fences
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if ROOT_PATTERN.search(line)
    ]
    assert found == []
