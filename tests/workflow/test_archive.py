"""Renaming and archiving applications and environments (editing what was created):
super-admins only (R2), audited; names as at creation; archived ones are hidden from lists,
take no new requests or deployments (APPLICATION_ARCHIVED, ENVIRONMENT_ARCHIVED, and the
explanations agree), and keep their history."""

from __future__ import annotations

from greenlight.models import AuditEvent, RoleBinding

UPDATE_APP = (
    "mutation($i: UpdateApplicationInput!) { updateApplication(input: $i) { id name archived archivedAt } }"
)
UPDATE_ENV = "mutation($i: UpdateEnvironmentInput!) { updateEnvironment(input: $i) { id name archived } }"
APPS = "query($a: Boolean!) { applications(includeArchived: $a) { name archived } }"
ENVS = "query($a: Boolean!) { environments(includeArchived: $a) { name } }"
REQUEST = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }"
DEPLOY = "mutation($i: DeployImageInput!) { deployImage(input: $i) { id } }"
CAN = """query($p: ID!, $i: ID!) { pipeline(id: $p) {
  viewerCanRequestApproval(imageId: $i) { allowed code reason }
  viewerCanDeploy(imageId: $i) { allowed code reason }
} }"""


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


async def test_rename_keeps_what_it_does_not_name_and_moves_role_bindings(world):
    """A rename changes the name only (archived stays as it was); role bindings on the old
    name follow, so dev still builds and deploys on the renamed application (R5); audited."""
    data = await world["admin"].ok(UPDATE_APP, {"i": {"id": world.ids["shop"], "name": "store"}})
    assert data["updateApplication"]["name"] == "store"
    assert data["updateApplication"]["archived"] is False
    assert not await RoleBinding.filter(application="shop").exists()
    assert await RoleBinding.filter(application="store", user_id=pk(world["dev"].user_id)).exists()
    image = await world.register_image("dev", "store")
    deployed = await world["dev"].ok(
        DEPLOY, {"i": {"pipelineId": world.ids["shop/staging"], "imageId": image}}
    )
    assert deployed["deployImage"]["id"]
    event = await AuditEvent.get(action="update_application", object_id=pk(world.ids["shop"]))
    assert event.before == {"name": "shop", "archived": False}
    assert event.after == {"name": "store", "archived": False}
    # an environment too
    env = await world["admin"].ok(UPDATE_ENV, {"i": {"id": world.ids["staging"], "name": "qa"}})
    assert env["updateEnvironment"] == {"id": world.ids["staging"], "name": "qa", "archived": False}
    assert [e["name"] for e in (await world["dev"].ok(ENVS, {"a": False}))["environments"]] == ["prod", "qa"]


async def test_r2_renames_follow_the_creation_rules(world, unchanged):
    """Names as at creation: a malformed one is BAD_USER_INPUT, a taken one CONFLICT naming
    it; non-super-admins FORBIDDEN; an unknown id NOT_FOUND; nothing changes."""
    async with unchanged():
        assert await world["admin"].code(UPDATE_APP, {"i": {"id": world.ids["shop"], "name": "Shop!"}}) == (
            "BAD_USER_INPUT"
        )
        error = await world["admin"].fails(UPDATE_APP, {"i": {"id": world.ids["shop"], "name": "billing"}})
        assert error["extensions"]["code"] == "CONFLICT"
        assert error["extensions"]["existingId"] == world.ids["billing"]
        assert await world["admin"].code(UPDATE_ENV, {"i": {"id": world.ids["prod"], "name": "staging"}}) == (
            "CONFLICT"
        )
        assert await world["dev"].code(UPDATE_APP, {"i": {"id": world.ids["shop"], "archived": True}}) == (
            "FORBIDDEN"
        )
        assert await world["admin"].code(UPDATE_APP, {"i": {"id": "Application:999999", "name": "x"}}) == (
            "NOT_FOUND"
        )
        assert await world["dev"].code(APPS, {"a": True}) == "FORBIDDEN"


async def test_archived_application_is_hidden_and_takes_no_requests_or_deployments(world, unchanged):
    """Archived: left out of lists (super-admins list it with includeArchived), still
    readable by id with its history; requestApproval and deployImage are
    APPLICATION_ARCHIVED, as viewerCanRequestApproval and viewerCanDeploy say; restoring
    brings it back."""
    prod_image, request = await world.approved_image("shop/prod")
    staging_image = await world.register_image("dev")
    fresh = await world.register_image("dev")
    await world["admin"].ok(UPDATE_APP, {"i": {"id": world.ids["shop"], "archived": True}})
    assert [a["name"] for a in (await world["dev"].ok(APPS, {"a": False}))["applications"]] == []
    assert [a["name"] for a in (await world["admin"].ok(APPS, {"a": False}))["applications"]] == ["billing"]
    listed = (await world["admin"].ok(APPS, {"a": True}))["applications"]
    assert {"name": "shop", "archived": True} in listed
    history = await world["dev"].ok(
        "query($id: ID!) { approvalRequest(id: $id) { state image { application { name archived } } } }",
        {"id": request},
    )
    assert history["approvalRequest"] == {
        "state": "APPROVED",
        "image": {"application": {"name": "shop", "archived": True}},
    }
    async with unchanged():
        for pipeline, image in (("shop/prod", prod_image), ("shop/staging", staging_image)):
            variables = {"i": {"pipelineId": world.ids[pipeline], "imageId": image}}
            assert await world["dev"].code(DEPLOY, variables) == "APPLICATION_ARCHIVED"
            can = (await world["dev"].ok(CAN, {"p": world.ids[pipeline], "i": image}))["pipeline"]
            assert can["viewerCanDeploy"]["code"] == "APPLICATION_ARCHIVED"
            assert "archived" in can["viewerCanDeploy"]["reason"]
        variables = {"i": {"pipelineId": world.ids["shop/prod"], "imageId": fresh}}
        assert await world["dev"].code(REQUEST, variables) == "APPLICATION_ARCHIVED"
        can = (await world["dev"].ok(CAN, {"p": world.ids["shop/prod"], "i": fresh}))["pipeline"]
        assert can["viewerCanRequestApproval"] == {
            "allowed": False,
            "code": "APPLICATION_ARCHIVED",
            "reason": "shop is archived: it takes no new requests or deployments",
        }
    await world["admin"].ok(UPDATE_APP, {"i": {"id": world.ids["shop"], "archived": False}})
    assert (await world.deploy(prod_image, "shop/prod", who="dev"))["status"] == "PROGRESSING"


async def test_archived_environment_takes_no_deployments(world, unchanged):
    """An archived environment: hidden from environments, deployImage ENVIRONMENT_ARCHIVED
    on its pipelines (explained alike); other environments go on."""
    image = await world.register_image("dev")
    await world["admin"].ok(UPDATE_ENV, {"i": {"id": world.ids["staging"], "archived": True}})
    assert [e["name"] for e in (await world["dev"].ok(ENVS, {"a": False}))["environments"]] == ["prod"]
    assert [e["name"] for e in (await world["admin"].ok(ENVS, {"a": True}))["environments"]] == [
        "prod",
        "staging",
    ]
    async with unchanged():
        variables = {"i": {"pipelineId": world.ids["shop/staging"], "imageId": image}}
        assert await world["dev"].code(DEPLOY, variables) == "ENVIRONMENT_ARCHIVED"
        can = (await world["dev"].ok(CAN, {"p": world.ids["shop/staging"], "i": image}))["pipeline"]
        assert can["viewerCanDeploy"]["code"] == "ENVIRONMENT_ARCHIVED"
    assert await world.request_approval(image, "shop/prod")
