"""Tokens people make for themselves, with less power: any user issues their own; a token
may be limited to some actions, applications and environments and an expiry; its power is
its owner's rights now within those limits, at every decision (R2, R3, R5)."""

from __future__ import annotations

from tests.conftest import Client

ISSUE = """mutation($i: IssueApiTokenInput!) {
  issueApiToken(input: $i) {
    token
    apiToken { id name expiresAt actions applications { name } environments { name } user { email } }
  }
}"""
REQUEST = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }"
REVOKE = "mutation($id: ID!) { revokeApiToken(id: $id) { id revokedAt } }"
TOKENS = "query($u: ID) { apiTokens(userId: $u) { edges { node { id name user { email } } } } }"
MY_TOKENS = "{ myApiTokens { edges { node { id name actions } } } }"
DIGEST = "sha256:" + "ab" * 32


async def issue(world, who: str, **limits) -> tuple[Client, dict]:
    """`who` issues a token for themself with `limits` (IssueApiTokenInput's fields)."""
    me = world[who]
    data = await me.ok(ISSUE, {"i": {"userId": me.user_id, "name": "ci", **limits}})
    issued = data["issueApiToken"]
    return Client(world.http, issued["token"], me.user_id, me.email), issued["apiToken"]


def register(application: str = "shop", digest: str = DIGEST) -> tuple[str, dict]:
    query = "mutation($i: RegisterImageInput!) { registerImage(input: $i) { id builtBy { email } } }"
    variables = {
        "i": {"application": application, "repository": "r.example.com/x", "tag": "1", "digest": digest}
    }
    return query, variables


async def test_any_user_issues_a_token_for_themself_and_lists_only_their_own(world):
    """Any user may issue API tokens for themselves; myApiTokens and apiTokens list only
    their own, with the limits visible."""
    ci, token = await issue(world, "dev", actions=["register_image"], ttlHours=24)
    assert token["user"]["email"] == "dev@example.com"
    assert token["actions"] == ["register_image"]
    assert token["applications"] is None and token["expiresAt"] is not None
    mine = (await world["dev"].ok(MY_TOKENS))["myApiTokens"]["edges"]
    assert {"id": token["id"], "name": "ci", "actions": ["register_image"]} in [e["node"] for e in mine]
    listed = (await world["dev"].ok(TOKENS, {"u": None}))["apiTokens"]["edges"]
    assert {e["node"]["user"]["email"] for e in listed} == {"dev@example.com"}
    # and the token works, as dev
    data = await ci.ok(*register())
    assert data["registerImage"]["builtBy"]["email"] == "dev@example.com"


async def test_token_limited_to_register_image_cannot_request_approval(world, unchanged):
    """A token limited to registerImage registers images but cannot request approval:
    TOKEN_SCOPE, and the explanations say so, though its owner may."""
    ci, _ = await issue(world, "dev", actions=["registerImage"])
    image = (await ci.ok(*register()))["registerImage"]["id"]
    variables = {"i": {"pipelineId": world.ids["shop/prod"], "imageId": image}}
    async with unchanged():
        error = await ci.fails(REQUEST, variables)
        assert error["extensions"]["code"] == "TOKEN_SCOPE"
        assert "register_image" in error["message"]
        verdict = await ci.ok(
            """query($p: ID!, $i: ID!) { pipeline(id: $p) {
                 viewerCanRequestApproval(imageId: $i) { allowed code reason }
                 viewerCanDeploy(imageId: $i) { allowed code } } }""",
            {"p": world.ids["shop/prod"], "i": image},
        )
        assert verdict["pipeline"]["viewerCanRequestApproval"]["allowed"] is False
        assert verdict["pipeline"]["viewerCanRequestApproval"]["code"] == "TOKEN_SCOPE"
        assert verdict["pipeline"]["viewerCanDeploy"]["code"] == "TOKEN_SCOPE"
        can = await ci.ok(
            '{ canI(action: DEPLOY, application: "shop", environment: "prod") { allowed code reason } }'
        )
        assert can["canI"]["allowed"] is False and can["canI"]["code"] == "TOKEN_SCOPE"
        owner = await world["dev"].ok(
            '{ canI(action: DEPLOY, application: "shop", environment: "prod") { allowed code } }'
        )
        assert owner["canI"] == {"allowed": True, "code": None}
    # the owner's own token may
    await world["dev"].ok(REQUEST, variables)


async def test_token_limited_to_an_environment_acts_only_there(world, unchanged):
    """A token limited to some environments: requests there, TOKEN_SCOPE... never beyond;
    what lies outside its applications does not exist for it (R1)."""
    staging_only, _ = await issue(world, "dev", environmentIds=[world.ids["staging"]])
    image = await world.register_image("dev")
    async with unchanged():
        code = await staging_only.code(
            REQUEST, {"i": {"pipelineId": world.ids["shop/prod"], "imageId": image}}
        )
        assert code == "NOT_FOUND"  # shop/prod lies outside the token: it sees nothing there
    deployed = await staging_only.ok(
        "mutation($i: DeployImageInput!) { deployImage(input: $i) { id } }",
        {"i": {"pipelineId": world.ids["shop/staging"], "imageId": image}},
    )
    assert deployed["deployImage"]["id"].startswith("Deployment:")
    admin_billing, _ = await issue(world, "admin", applicationIds=[world.ids["billing"]])
    apps = (await admin_billing.ok("{ applications { name } }"))["applications"]
    assert [a["name"] for a in apps] == ["billing"]
    async with unchanged():
        assert await admin_billing.code(*register("shop", "sha256:" + "cd" * 32)) == "NOT_FOUND"
        # a super-admin's token limited to one application administers nothing
        error = await admin_billing.fails('mutation { createApplication(name: "newapp") { id } }')
        assert error["extensions"]["code"] == "TOKEN_SCOPE"


async def test_token_outliving_its_owners_revoked_role_cannot_act(world, unchanged):
    """R5: a token's power is its owner's rights now: revoke the owner's role and the
    token, limited or not, can no longer act."""
    ci, _ = await issue(world, "dev2", actions=["register_image"])
    await ci.ok(*register())
    bindings = await world["admin"].ok(
        "query($u: ID!) { node(id: $u) { ... on User { roleBindings { id } } } }",
        {"u": world["dev2"].user_id},
    )
    for binding in bindings["node"]["roleBindings"]:
        await world["admin"].ok("mutation($id: ID!) { revokeRole(id: $id) { id } }", {"id": binding["id"]})
    async with unchanged():
        assert await ci.code(*register("shop", "sha256:" + "ef" * 32)) == "NOT_FOUND"


async def test_limited_token_cannot_issue_a_broader_token(world, unchanged):
    """A token never has more than the one that issued it: wider actions, applications,
    no limit at all, or a later expiry are TOKEN_SCOPE; a narrower one is issued."""
    ci, _ = await issue(world, "dev", actions=["register_image", "request_approval"], ttlHours=10)
    me = world["dev"].user_id
    async with unchanged():
        for broader in (
            {"actions": ["register_image", "deploy"], "ttlHours": 5},
            {"ttlHours": 5},  # no action limit: broader
            {"actions": ["register_image"]},  # never expires: outlives the issuing token
            {"actions": ["register_image"], "ttlHours": 11},
        ):
            error = await ci.fails(ISSUE, {"i": {"userId": me, "name": "wider", **broader}})
            assert error["extensions"]["code"] == "TOKEN_SCOPE", broader
    narrower = await ci.ok(
        ISSUE, {"i": {"userId": me, "name": "n", "actions": ["register_image"], "ttlHours": 5}}
    )
    assert narrower["issueApiToken"]["apiToken"]["actions"] == ["register_image"]


async def test_unknown_action_and_others_tokens_are_refused(world, unchanged):
    """Unknown action names are BAD_USER_INPUT; a non-admin cannot issue, see or revoke
    another user's tokens (FORBIDDEN to issue; NOT_FOUND to revoke, as if it did not exist)."""
    dev = world["dev"]
    _, admins = await issue(world, "admin2")
    async with unchanged():
        error = await dev.fails(ISSUE, {"i": {"userId": dev.user_id, "name": "x", "actions": ["fly"]}})
        assert error["extensions"]["code"] == "BAD_USER_INPUT" and "fly" in error["message"]
        other = {"i": {"userId": world["viewer"].user_id, "name": "x"}}
        assert await dev.code(ISSUE, other) == "FORBIDDEN"
        assert await dev.code(TOKENS, {"u": world["admin2"].user_id}) == "FORBIDDEN"
        assert await dev.code(REVOKE, {"id": admins["id"]}) == "NOT_FOUND"


async def test_super_admin_lists_and_revokes_anyones_token(world):
    """Super-admins list anyone's tokens and revoke them; the revoked token stops at once."""
    ci, token = await issue(world, "dev", actions=["register_image"])
    listed = await world["admin"].ok(TOKENS, {"u": world["dev"].user_id})
    assert token["id"] in [e["node"]["id"] for e in listed["apiTokens"]["edges"]]
    revoked = await world["admin"].ok(REVOKE, {"id": token["id"]})
    assert revoked["revokeApiToken"]["revokedAt"] is not None
    assert await ci.code("{ me { id } }") == "UNAUTHENTICATED"
