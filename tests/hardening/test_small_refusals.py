"""Small refusals and answers that must be right at once: `serve` options out of range, typed
ids in error extensions, reactivateUser's own answer (R5), and the rate limiter's memory."""

import pytest

from greenlight import cli
from greenlight.limits.rates import TokenBucket

DEACTIVATE = "mutation($id: ID!) { deactivateUser(id: $id) { id isSuperAdmin } }"
REACTIVATE = "mutation($id: ID!) { reactivateUser(id: $id) { id isSuperAdmin isActive } }"
GRANT = "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id user { isSuperAdmin } } }"


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--port", "99999", "from 1 to 65535"),
        ("--port", "0", "from 1 to 65535"),
        ("--port", "-1", "from 1 to 65535"),
        ("--port", "http", "not a whole number"),
        ("--workers", "0", "at least 1"),
        ("--workers", "-3", "at least 1"),
    ],
)
def test_serve_refuses_options_out_of_range_with_exit_2(capsys, option, value, says):
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", option, value])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert option in error and says in error


async def test_r8_ineligible_user_ids_are_typed_ids(world, unchanged):
    image = await world.register_image()
    query = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }"
    variables = {
        "i": {
            "pipelineId": world.ids["shop/prod"],
            "imageId": image,
            "approverIds": [world["approver1"].user_id, world["nobody"].user_id],
        }
    }
    async with unchanged():
        error = await world["dev2"].fails(query, variables)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["ineligibleUserIds"] == [world["nobody"].user_id]


async def test_r5_reactivate_user_answers_is_super_admin_at_once(world):
    admin2 = world["admin2"].user_id
    data = await world["admin"].ok(DEACTIVATE, {"id": admin2})
    assert data["deactivateUser"]["isSuperAdmin"] is False  # a deactivated user holds no role
    data = await world["admin"].ok(REACTIVATE, {"id": admin2})
    assert data["reactivateUser"] == {"id": admin2, "isSuperAdmin": True, "isActive": True}


async def test_r5_grant_role_answers_with_the_new_role_at_once(world):
    variables = {"i": {"userId": world["nobody"].user_id, "role": "SUPER_ADMIN"}}
    data = await world["admin"].ok(GRANT, variables)
    assert data["grantRole"]["user"]["isSuperAdmin"] is True


def test_rate_limit_eviction_keeps_the_bucket_of_a_refused_credential():
    """Beyond max_keys the least recently used credentials are forgotten: one that keeps
    calling while refused is used most recently, so it keeps its (empty) bucket."""
    bucket = TokenBucket(per_minute=1, max_keys=4)
    assert bucket.take("hammering") == 0
    for key in ("b", "c", "d"):
        assert bucket.take(key) == 0
    assert bucket.take("hammering") > 0  # refused: its one call a minute is spent
    assert bucket.take("e") == 0  # a fifth credential: the least recently used go
    assert bucket.take("hammering") > 0  # still refused, not a fresh bucket
    assert bucket.take("b") == 0  # b was forgotten: a fresh bucket
