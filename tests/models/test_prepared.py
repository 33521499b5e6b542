"""A `Prepared` query, whose SQL Tortoise builds once, answers as the queryset
it stands for, on both databases, inside and outside transactions; a queryset it cannot
prepare is run as built, every time."""

from __future__ import annotations

from tortoise.expressions import Subquery

from greenlight.models import ApiToken, ApprovalRequest, Pipeline, User
from greenlight.models.prepared import Prepared
from greenlight.tx import transaction


def pipeline_of_request(request_id):
    return (
        Pipeline.filter(id__in=Subquery(ApprovalRequest.filter(id=request_id).values("pipeline_id")))
        .select_related("application", "environment")
        .select_for_update(of=(Pipeline._meta.db_table,))
        .limit(1)
    )


def described(pipeline: Pipeline | None):
    if pipeline is None:
        return None
    return (
        pipeline.id,
        pipeline.required_approvals,
        pipeline.application.id,
        pipeline.application.name,
        pipeline.environment.name,
    )


async def test_prepared_answers_as_its_queryset(world, backend):
    """The locked read of approveRequest (a subquery, two select_related, FOR UPDATE on
    PostgreSQL): the same pipeline, application and environment as the queryset gives,
    for every request and for one that does not exist, in and out of a transaction."""
    requests = [
        await world.request_approval(await world.register_image("dev"), "shop/prod", who="dev2"),
        await world.request_approval(
            await world.register_image("billing_dev", application="billing"),
            "billing/prod",
            who="billing_dev",
        ),
    ]
    ids = [int(r.split(":")[1]) for r in requests] + [10**9]
    prepared = Prepared(Pipeline, pipeline_of_request)
    for request_id in ids:
        expected = described(await pipeline_of_request(request_id).first())
        assert described(await prepared.first(request_id)) == expected
        async with transaction():
            assert described(await prepared.first(request_id)) == expected
    assert described(await prepared.first(ids[0])) is not None
    assert await prepared.first(10**9) is None
    (statement,) = prepared._statements.values()
    assert statement is not None  # prepared, not built each time
    assert ("FOR UPDATE" in statement.sql) == (backend == "postgres")


async def test_prepared_token_lookup_finds_by_string(world):
    """A string parameter (the token hash of authentication) is prepared too, and the user
    comes with the token."""
    prepared = Prepared(ApiToken, lambda h: ApiToken.filter(token_hash=h).select_related("user").limit(1))
    for token in await ApiToken.all():
        found = await prepared.first(token.token_hash)
        assert found.id == token.id
        assert found.user.email == (await User.get(id=token.user_id)).email
    assert await prepared.first("no such hash") is None
    assert next(iter(prepared._statements.values())) is not None


async def test_a_query_it_cannot_prepare_is_built_every_time(world):
    """The value used twice: the SQL cannot take it in one place, so the queryset is
    built and run as it is, and still answers right."""
    prepared = Prepared(User, lambda user_id: User.filter(id=user_id).filter(id__gte=user_id))
    users = await User.all().order_by("id")
    for user in users:
        assert [u.id for u in await prepared.all(user.id)] == [user.id]
    assert list(prepared._statements.values()) == [None]
