"""Issue 8, caches where they are safe: whole answers to queries are kept while the
database's change counter stands still (greenlight.cache). What a user must notice is
only that they are never told something a committed write has made untrue: writes through
this process, through another one, and straight into the database (as background jobs
write); changes of role (R5) and visibility (R1); the clock (R15)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from greenlight import db, models
from greenlight.app import create_app
from greenlight.cache import changes
from greenlight.config import Settings

from ..schema.test_statement_counts import statements

SELECT_IMAGE = """query($p: ID!) {
  pipeline(id: $p) { deployableImages { id tag builtBy { email } approvalState(pipelineId: $p) } }
}"""
IMAGES = "query($a: ID!) { images(applicationId: $a) { edges { node { id tag } } } }"
APPLICATIONS = "{ applications { name } }"
REQUEST = "query($id: ID!) { approvalRequest(id: $id) { id state } }"
PIPELINE = "query($id: ID!) { pipeline(id: $id) { id } }"
REVOKE = "mutation($id: ID!) { revokeRole(id: $id) { id } }"
BINDINGS = "query($u: ID!) { roleBindingConnection(userId: $u, first: 100) { edges { node { id role } } } }"


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


def tags(data: dict) -> list[str]:
    return [edge["node"]["tag"] for edge in data["images"]["edges"]]


async def test_issue8_a_repeated_query_costs_only_the_statements_every_request_sends(world):
    """The second identical query is answered from the cache: it sends the same few
    statements (the change counter, the credentials, the role changes) however much the
    answer reads."""
    image, _ = await world.approved_image()
    big = await statements(world["dev"], SELECT_IMAGE, {"p": world.ids["shop/prod"]})
    small = await statements(world["dev"], "{ me { email } }")
    assert big == small
    assert big <= 4
    assert world.http._transport.app.state.responses.hits >= 2


async def test_issue8_with_the_cache_off_every_answer_is_computed(world, settings, database):
    """GREENLIGHT_RESPONSE_CACHE_SECONDS=0: nothing is kept."""
    import httpx

    from ..conftest import Client

    app = create_app(Settings(**{**settings.__dict__, "response_cache_seconds": 0.0}), manage_database=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as http:
        dev = Client(http, world["dev"].token)
        await world.approved_image()
        repeated = await statements(dev, SELECT_IMAGE, {"p": world.ids["shop/prod"]})
        assert repeated > await statements(dev, "{ me { email } }")
        assert app.state.responses.hits == 0


async def test_issue8_a_write_through_the_api_shows_on_the_next_answer(world):
    """R4: an image registered after a list was answered (and kept) is in the next answer."""
    before = tags(await world["dev"].ok(IMAGES, {"a": world.ids["shop"]}))
    assert tags(await world["dev"].ok(IMAGES, {"a": world.ids["shop"]})) == before
    await world.register_image("dev", tag="v-new")
    assert tags(await world["dev"].ok(IMAGES, {"a": world.ids["shop"]})) == ["v-new", *before]


async def test_issue8_a_write_through_another_process_shows_on_the_next_answer(cluster):
    """Two processes, one database: an approval given through B moves the image into
    "Select Image" on A on A's very next answer (R11)."""
    world = cluster.world
    image = await world.register_image("dev")
    request = await world.request_approval(image, "shop/prod", who="dev2")
    select = {"p": world.ids["shop/prod"]}
    for _ in range(2):  # answered, then kept
        assert (await world["dev"].ok(SELECT_IMAGE, select))["pipeline"]["deployableImages"] == []
    for approver in ("approver1", "approver2"):
        await cluster.on_b(approver).ok(
            "mutation($id: ID!) { approveRequest(id: $id) { id } }", {"id": request}
        )
    shown = (await world["dev"].ok(SELECT_IMAGE, select))["pipeline"]["deployableImages"]
    assert [(i["id"], i["approvalState"]) for i in shown] == [(image, "APPROVED")]


async def test_issue8_a_write_straight_into_the_database_shows_on_the_next_answer(world):
    """Background jobs and administrators write without the API: the database itself counts
    every write, so the next answer is computed afresh."""
    image = await world.register_image("dev", tag="v-old")
    assert "v-old" in tags(await world["dev"].ok(IMAGES, {"a": world.ids["shop"]}))
    assert "v-old" in tags(await world["dev"].ok(IMAGES, {"a": world.ids["shop"]}))
    await models.Image.filter(id=pk(image)).update(tag="v-renamed")
    shown = tags(await world["dev"].ok(IMAGES, {"a": world.ids["shop"]}))
    assert "v-renamed" in shown and "v-old" not in shown


async def test_r1_users_never_share_answers(world):
    """The same query text from two users: each gets what they may see."""
    assert await world["admin"].ok(APPLICATIONS) == await world["admin"].ok(APPLICATIONS)
    admin_sees = {a["name"] for a in (await world["admin"].ok(APPLICATIONS))["applications"]}
    billing_sees = {a["name"] for a in (await world["billing_dev"].ok(APPLICATIONS))["applications"]}
    nobody_sees = {a["name"] for a in (await world["nobody"].ok(APPLICATIONS))["applications"]}
    assert admin_sees >= {"shop", "billing"}
    assert billing_sees == {"billing"}
    assert nobody_sees == set()


async def test_issue8_variables_are_part_of_the_question(world):
    """The same text with other variables is another question."""
    shop = await world["admin"].ok(IMAGES, {"a": world.ids["shop"]})
    await world.register_image("admin", application="billing", tag="v-billing")
    billing = await world["admin"].ok(IMAGES, {"a": world.ids["billing"]})
    assert tags(billing) == ["v-billing"]
    assert "v-billing" not in tags(shop)
    assert await world["admin"].ok(IMAGES, {"a": world.ids["shop"]}) == shop


async def test_r5_a_revoked_role_hides_a_kept_answer_on_every_process(cluster):
    """R5: prod_approver's pipeline answer was kept on A and B; the role is revoked through
    A; the very next request on each process is NOT_FOUND (R1), not the kept answer."""
    world = cluster.world
    variables = {"id": world.ids["shop/prod"]}
    for client in cluster.clients("prod_approver").values():
        for _ in range(2):
            assert (await client.ok(PIPELINE, variables))["pipeline"]["id"] == world.ids["shop/prod"]
    bindings = await world["admin"].ok(BINDINGS, {"u": world["prod_approver"].user_id})
    for edge in bindings["roleBindingConnection"]["edges"]:
        await world["admin"].ok(REVOKE, {"id": edge["node"]["id"]})
    for name in ("B", "A"):
        code = await cluster.clients("prod_approver")[name].code(PIPELINE, variables)
        assert code == "NOT_FOUND", name


async def test_r15_an_expiry_passing_shows_once_the_kept_answer_is_old(world, clock):
    """R15: a kept answer lives at most GREENLIGHT_RESPONSE_CACHE_SECONDS (1 s) by the
    workflow's clock; past the request's expiry, the next answer says EXPIRED though
    nothing was written."""
    image = await world.register_image("dev")
    request = await world.request_approval(image, "shop/prod", who="dev2")
    expires_at = (await models.ApprovalRequest.get(id=pk(request))).expires_at
    clock.set(expires_at - timedelta(seconds=5))
    for _ in range(2):
        assert (await world["dev"].ok(REQUEST, {"id": request}))["approvalRequest"]["state"] == "PENDING"
    clock.set(expires_at + timedelta(milliseconds=1))
    assert (await world["dev"].ok(REQUEST, {"id": request}))["approvalRequest"]["state"] == "EXPIRED"


async def test_issue8_answers_with_errors_are_not_kept(world):
    """A refused question is asked again, not answered from memory."""
    missing = {"id": "Pipeline:999999"}
    assert await world["dev"].code(PIPELINE, missing) == "NOT_FOUND"
    assert await statements(world["dev"], PIPELINE, missing, must_succeed=False) > await statements(
        world["dev"], "{ me { email } }"
    )


async def test_issue8_every_table_counts_its_writes(database):
    """Every table a model stores rows in has the change triggers (a new table without
    them would make kept answers outlive its writes)."""
    from tortoise import Tortoise

    tables = {model._meta.db_table for model in Tortoise.apps["models"].values()}
    assert await changes.untracked_tables() == []
    assert tables <= await changes._tracked(connections.get("default"))


async def drop_image_triggers(backend: str) -> None:
    connection = connections.get("default")
    if backend == "postgres":
        await connection.execute_script(f"DROP TRIGGER {changes.TRIGGER} ON images")
    else:
        for event in ("insert", "update", "delete"):
            await connection.execute_script(f"DROP TRIGGER {changes.TRIGGER}_images_{event}")


async def test_issue8_a_table_losing_its_triggers_turns_the_cache_off_at_once(world, backend):
    """A table whose writes stop being counted (a trigger dropped by a migration run by
    other means, or by hand) after answers were kept: the very next request neither uses
    nor keeps an answer, and sees a write the counter missed. `greenlight migrate` puts the
    triggers back."""
    variables = {"a": world.ids["shop"]}
    image = await world.register_image("dev", tag="v-old")
    for _ in range(2):
        assert "v-old" in tags(await world["dev"].ok(IMAGES, variables))
    await drop_image_triggers(backend)
    assert await changes.untracked_tables() == ["images"]
    await models.Image.filter(id=pk(image)).update(tag="v-uncounted")
    responses = world.http._transport.app.state.responses
    hits = responses.hits
    for _ in range(2):
        assert "v-uncounted" in tags(await world["dev"].ok(IMAGES, variables))
    assert responses.hits == hits
    # two instances starting at once: neither fails; on PostgreSQL one waits for the other
    installed = await asyncio.gather(changes.install(), changes.install())
    assert ["images"] in installed
    if backend == "postgres":
        assert sorted(installed) == [[], ["images"]]
    assert await changes.untracked_tables() == []
    for _ in range(2):
        await world["dev"].ok(IMAGES, variables)
    assert responses.hits == hits + 1


async def test_issue8_postgres_a_disabled_trigger_is_not_counted_as_tracking(world, backend):
    """ALTER TABLE ... DISABLE TRIGGER ALL leaves the trigger in place but stops it: the
    table counts as untracked and nothing is kept."""
    if backend != "postgres":
        pytest.skip("PostgreSQL only")
    await connections.get("default").execute_script("ALTER TABLE images DISABLE TRIGGER ALL")
    assert await changes.untracked_tables() == ["images"]
    assert not (await changes.read()).trusted


@pytest.mark.parametrize("table", ["images", "approval_requests"])
async def test_issue8_postgres_a_truncate_moves_the_counter(world, backend, table):
    """TRUNCATE fires no row trigger; a statement trigger counts it. After TRUNCATE ...
    CASCADE, the images list and "Select Image" are computed afresh (R11)."""
    if backend != "postgres":
        pytest.skip("PostgreSQL only: SQLite has no TRUNCATE")
    image, _ = await world.approved_image()
    select = {"p": world.ids["shop/prod"]}
    for _ in range(2):
        assert [
            i["id"] for i in (await world["dev"].ok(SELECT_IMAGE, select))["pipeline"]["deployableImages"]
        ] == [image]
    before = await changes.version()
    await connections.get("default").execute_script(f"TRUNCATE {table} CASCADE")
    assert await changes.version() > before
    assert (await world["dev"].ok(SELECT_IMAGE, select))["pipeline"]["deployableImages"] == []


async def test_issue8_postgres_writes_as_a_replica_are_counted(world, backend):
    """pg_restore and logical replication write with session_replication_role = replica,
    which silences ordinary triggers; ours are enabled ALWAYS."""
    if backend != "postgres":
        pytest.skip("PostgreSQL only")
    image = await world.register_image("dev", tag="v-primary")
    before = await changes.version()
    async with in_transaction() as transaction:
        await transaction.execute_script("SET LOCAL session_replication_role = replica")
        await transaction.execute_query("UPDATE images SET tag = 'v-replica' WHERE id = $1", [pk(image)])
    assert await changes.version() == before + 1


async def test_r4_a_tokens_first_use_shows_though_it_is_written_while_authenticating(world):
    """Authentication writes a token's last use (at most once a minute), after the request
    read the counter: that request neither uses nor keeps an answer, so the list of tokens
    shows the use it just made."""
    issued = await world["admin"].ok(
        "mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }",
        {"i": {"userId": world["dev"].user_id, "name": "second"}},
    )
    tokens = "{ apiTokens { edges { node { name lastUsedAt } } } }"
    for _ in range(2):
        await world["dev"].ok(tokens)
    from ..conftest import Client

    second = Client(world.http, issued["issueApiToken"]["token"])
    shown = {
        e["node"]["name"]: e["node"]["lastUsedAt"] for e in (await second.ok(tokens))["apiTokens"]["edges"]
    }
    assert shown["second"] is not None


async def test_issue8_large_keys_are_not_kept(world):
    """Variables are part of the key, used or not: a request carrying a lot of them is
    answered, not kept, so a few requests cannot make the cache hold much memory."""
    responses = world.http._transport.app.state.responses
    padding = "x" * 100_000
    for n in range(5):
        assert await world["nobody"].ok("{ me { email } }", {"junk": f"{n}{padding}"}) == {
            "me": {"email": "nobody@example.com"}
        }
    assert sum(len(key[3]) for key in responses._entries) < 100_000


async def test_r15_a_kept_answer_lives_from_when_the_request_began(world, clock, monkeypatch):
    """R15: an answer that took long to compute is kept GREENLIGHT_RESPONSE_CACHE_SECONDS
    from when its request read the counter, not from when it was kept: an expiry passed
    meanwhile shows on the next request."""
    from greenlight.cache.responses import ResponseCache

    image = await world.register_image("dev")
    request = await world.request_approval(image, "shop/prod", who="dev2")
    expires_at = (await models.ApprovalRequest.get(id=pk(request))).expires_at
    clock.set(expires_at - timedelta(milliseconds=500))
    await world["dev"].ok("{ me { email } }")  # the token's last use, written now
    keep = ResponseCache.put

    def slowly(self, key, stamp, data):
        clock.set(expires_at + timedelta(seconds=5))  # the answer took 5.5 s
        return keep(self, key, stamp, data)

    monkeypatch.setattr(ResponseCache, "put", slowly)
    assert (await world["dev"].ok(REQUEST, {"id": request}))["approvalRequest"]["state"] == "PENDING"
    monkeypatch.setattr(ResponseCache, "put", keep)
    clock.set(expires_at + timedelta(seconds=5, milliseconds=100))
    assert (await world["dev"].ok(REQUEST, {"id": request}))["approvalRequest"]["state"] == "EXPIRED"


async def test_issue8_postgres_counts_a_transaction_once_and_a_rollback_not_at_all(database, backend):
    """On PostgreSQL the counter moves once per committed transaction, however many rows
    it writes, and not for one rolled back."""
    if backend != "postgres":
        pytest.skip("PostgreSQL only: SQLite counts rows, under its one writer")
    start = await changes.version()
    async with in_transaction():
        for n in range(3):
            await models.Application.create(name=f"counted-{n}")
    assert await changes.version() == start + 1
    with pytest.raises(RuntimeError):
        async with in_transaction():
            await models.Application.create(name="rolled-back")
            raise RuntimeError
    assert await changes.version() == start + 1
    assert await db.ping()


class Gate:
    """Wraps the read behind "Select Image": counts calls, and holds them until opened."""

    def __init__(self, monkeypatch, fail_first: bool = False, hold_first_only: bool = False) -> None:
        from greenlight.workflow import deployments

        self.calls = 0
        self.opened = asyncio.Event()
        self.fail_first = fail_first
        original = deployments.deployable_images_of

        async def gated(pipelines):
            self.calls += 1
            call = self.calls
            if call == 1 or not hold_first_only:
                await self.opened.wait()
            if self.fail_first and call == 1:
                raise RuntimeError("the first computation fails")
            return await original(pipelines)

        monkeypatch.setattr(deployments, "deployable_images_of", gated)

    async def until_called(self, times: int) -> None:
        for _ in range(500):
            if self.calls >= times:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"called {self.calls} times, expected {times}")


async def test_issue8_the_same_question_asked_at_once_is_computed_once(world, monkeypatch):
    """Twelve identical "Select Image" queries arriving while none is kept (a kept answer
    just expired, under load): one computes the answer, the others wait for it and get
    the same answer, rather than all reading the database at once."""
    await world.approved_image()
    gate = Gate(monkeypatch)
    responses = world.http._transport.app.state.responses
    computed = responses.computed
    asked = [
        asyncio.create_task(world["dev"].ok(SELECT_IMAGE, {"p": world.ids["shop/prod"]})) for _ in range(12)
    ]
    await gate.until_called(1)
    await asyncio.sleep(0.05)  # the other eleven arrive meanwhile
    gate.opened.set()
    answers = await asyncio.gather(*asked)
    assert gate.calls == 1
    assert responses.computed == computed + 1
    assert all(answer == answers[0] for answer in answers)
    assert len(answers[0]["pipeline"]["deployableImages"]) == 1


async def test_issue8_waiting_for_an_answer_that_fails_computes_its_own(world, monkeypatch):
    """The request computing the answer fails: it gets its error, the ones waiting for it
    compute their own answer (an error is never shared)."""
    await world.approved_image()
    gate = Gate(monkeypatch, fail_first=True)
    first = asyncio.create_task(world["dev"].code(SELECT_IMAGE, {"p": world.ids["shop/prod"]}))
    await gate.until_called(1)
    waiting = [
        asyncio.create_task(world["dev"].ok(SELECT_IMAGE, {"p": world.ids["shop/prod"]})) for _ in range(3)
    ]
    await asyncio.sleep(0.05)
    gate.opened.set()
    assert await first == "INTERNAL"
    answers = await asyncio.gather(*waiting)
    assert all(len(a["pipeline"]["deployableImages"]) == 1 for a in answers)
    assert gate.calls >= 2


async def test_r11_a_question_asked_after_a_write_does_not_wait_for_an_answer_from_before(world, monkeypatch):
    """An answer being computed from before a write is not given to a request that began
    after the write (its change counter reads another version): it computes its own, and
    an image approved meanwhile shows in "Select Image" at once (R11)."""
    gate = Gate(monkeypatch)
    before = asyncio.create_task(world["dev"].ok(SELECT_IMAGE, {"p": world.ids["shop/prod"]}))
    await gate.until_called(1)
    await world.approved_image()  # a write, while the first answer is being computed
    after = asyncio.create_task(world["dev"].ok(SELECT_IMAGE, {"p": world.ids["shop/prod"]}))
    await gate.until_called(2)  # computed on its own, not waiting for the first
    gate.opened.set()
    assert len((await after)["pipeline"]["deployableImages"]) == 1
    await before


async def test_issue8_a_request_waits_only_so_long_for_an_answer_being_computed(world, monkeypatch):
    """The request computing an answer hangs: one asking the same waits WAIT_SECONDS at
    most, then computes its own answer."""
    from greenlight.cache import responses

    monkeypatch.setattr(responses, "WAIT_SECONDS", 0.2)
    await world.approved_image()
    gate = Gate(monkeypatch, hold_first_only=True)
    stuck = asyncio.create_task(world["dev"].ok(SELECT_IMAGE, {"p": world.ids["shop/prod"]}))
    await gate.until_called(1)
    answer = await asyncio.wait_for(world["dev"].ok(SELECT_IMAGE, {"p": world.ids["shop/prod"]}), 5)
    assert len(answer["pipeline"]["deployableImages"]) == 1
    assert gate.calls == 2
    gate.opened.set()
    await stuck


async def test_issue8_putting_triggers_back_moves_the_counter(world, backend):
    """Writes made while a table had no triggers (and no request came to notice) are not
    counted: `greenlight migrate` putting the triggers back moves the counter, so an answer
    kept from before is not given again."""
    variables = {"a": world.ids["shop"]}
    image = await world.register_image("dev", tag="v-old")
    for _ in range(2):
        assert "v-old" in tags(await world["dev"].ok(IMAGES, variables))
    await drop_image_triggers(backend)
    await models.Image.filter(id=pk(image)).update(tag="v-uncounted")
    before = await changes.version()
    assert await changes.install() == ["images"]
    assert await changes.version() > before
    shown = tags(await world["dev"].ok(IMAGES, variables))
    assert "v-uncounted" in shown and "v-old" not in shown


async def test_issue8_an_answer_computed_across_uncounted_writes_is_neither_shared_nor_kept(
    database, monkeypatch
):
    """A reading finds some table's writes uncounted while an answer is being computed:
    requests at the same version afterwards neither wait for that answer nor find it kept
    (a write uncounted meanwhile leaves the version as it was)."""
    from greenlight.cache import responses

    cache = responses.ResponseCache(60, 100)
    key = responses.key_of(1, "{ applications { name } }", None, {})
    stamp = await cache.stamp()
    flight = cache.begin(key, stamp)
    assert cache.computing(key, stamp) is flight

    reading = changes.Reading(stamp.version, False, stamp.policy_version)
    monkeypatch.setattr(changes, "read", lambda: asyncio.sleep(0, result=reading))
    assert await cache.stamp() is None  # the triggers are not all there
    assert flight.answer.done() and flight.answer.result() is None  # its waiters compute their own
    monkeypatch.undo()

    later = await cache.stamp()
    assert later.version == stamp.version
    assert cache.computing(key, later) is None
    cache.end(key, flight, {"applications": []})
    assert cache.get(key, later) is None
