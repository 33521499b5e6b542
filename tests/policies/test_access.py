"""Who sees and does what: scopes, roles and role bindings (R1 to R5)."""

from __future__ import annotations

import hashlib

import httpx

from greenlight.app import create_app
from greenlight.models import ApiToken, Image, Pipeline, Role, RoleBinding, User
from greenlight.policies.actions import Action
from greenlight.policies.authorizer import POLICY_PATH

from ..conftest import Client

PIPELINES = ("shop/staging", "shop/prod", "billing/prod")

# What each user of the world can see (R1): the pipelines of its scopes.
VISIBLE = {
    "admin": set(PIPELINES),
    "admin2": set(PIPELINES),
    "dev": {"shop/staging", "shop/prod"},
    "dev2": {"shop/staging", "shop/prod"},
    "approver1": {"shop/staging", "shop/prod"},
    "approver2": {"shop/staging", "shop/prod"},
    "approver3": {"shop/staging", "shop/prod"},
    "viewer": {"shop/staging", "shop/prod"},
    "prod_approver": {"shop/prod"},
    "billing_dev": {"billing/prod"},
    "billing_approver": {"billing/prod"},
    "nobody": set(),
}
# Environments list: a binding on "<app>/*" covers every environment.
ENVIRONMENTS = {name: {"prod", "staging"} for name in VISIBLE}
ENVIRONMENTS["prod_approver"] = {"prod"}
ENVIRONMENTS["nobody"] = set()

PIPELINE_Q = "query($id: ID!) { pipeline(id: $id) { id application { name } environment { name } } }"
PIPELINE_FOR_Q = "query($a: String!, $e: String!) { pipelineFor(application: $a, environment: $e) { id } }"
REQUEST_Q = "query($id: ID!) { approvalRequest(id: $id) { id pipeline { id } } }"
DEPLOYMENT_Q = "query($id: ID!) { deployment(id: $id) { id pipeline { id } } }"
IMAGES_Q = "query($a: ID!) { images(applicationId: $a, first: 100) { totalCount edges { node { id } } } }"
REQUESTS_Q = "{ approvalRequests(first: 100) { totalCount edges { node { id } } } }"
LISTS_Q = "{ applications { name pipelines { id } } environments { name } }"
REGISTER_M = "mutation($i: RegisterImageInput!) { registerImage(input: $i) { id builtBy { id } } }"
GRANT_M = """mutation($i: RoleBindingInput!) {
  grantRole(input: $i) { id role application environment user { id } }
}"""
REVOKE_M = "mutation($id: ID!) { revokeRole(id: $id) { id } }"
POLICY_M = """mutation($p: ID!, $i: ApprovalPolicyInput!) {
  updateApprovalPolicy(pipelineId: $p, input: $i) { id approvalPolicy { requiredApprovals } }
}"""


async def fetch(client: Client, query: str, variables: dict, field: str) -> dict | None:
    """A nullable fetch by id: the object, or None when the caller gets null or NOT_FOUND (R1)."""
    body = await client.execute(query, variables)
    if body.get("errors"):
        codes = {e["extensions"]["code"] for e in body["errors"]}
        assert codes == {"NOT_FOUND"}, f"expected null or NOT_FOUND, got {body['errors']}"
        assert not (body.get("data") or {}).get(field)
        return None
    return body["data"][field]


def image_input(application: str, n: int | str) -> dict:
    digest = "sha256:" + hashlib.sha256(f"{application}-{n}".encode()).hexdigest()
    return {
        "application": application,
        "repository": f"registry.example.com/acme/{application}",
        "tag": f"v{n}",
        "digest": digest,
    }


async def grant(world, who: str, role: str, application: str = "*", environment: str = "*") -> str:
    data = await world["admin"].ok(
        GRANT_M,
        {
            "i": {
                "userId": world[who].user_id,
                "role": role,
                "application": application,
                "environment": environment,
            }
        },
    )
    return data["grantRole"]["id"]


async def binding_id(world, who: str) -> str:
    """The id of `who`'s only role binding, as they see it themselves."""
    data = await world[who].ok("{ me { roleBindings { id } } }")
    (binding,) = data["me"]["roleBindings"]
    return binding["id"]


async def populate(world) -> dict:
    """One approval request and one deployment on each pipeline of the world."""
    out: dict = {"requests": {}, "deployments": {}, "images": {"shop": [], "billing": []}}
    # shop/staging: deploy without approval, then require one and request it.
    image = await world.register_image("dev")
    out["images"]["shop"].append(image)
    out["deployments"]["shop/staging"] = (await world.deploy(image, "shop/staging"))["id"]
    await world["admin"].ok(
        POLICY_M, {"p": world.ids["shop/staging"], "i": {"requiredApprovals": 1, "ttlHours": None}}
    )
    image = await world.register_image("dev")
    out["images"]["shop"].append(image)
    out["requests"]["shop/staging"] = await world.request_approval(image, "shop/staging")
    # shop/prod: approved by two, deployed.
    image, request = await world.approved_image("shop/prod")
    out["images"]["shop"].append(image)
    out["requests"]["shop/prod"] = request
    out["deployments"]["shop/prod"] = (await world.deploy(image, "shop/prod"))["id"]
    # billing/prod: registered and requested by billing_dev, approved, deployed.
    image = await world.register_image("billing_dev", "billing")
    out["images"]["billing"].append(image)
    request = await world.request_approval(image, "billing/prod", who="billing_dev")
    await world.approve(request, "billing_approver")
    out["requests"]["billing/prod"] = request
    out["deployments"]["billing/prod"] = (await world.deploy(image, "billing/prod", who="billing_dev"))["id"]
    return out


async def seen_by(world, who: str, objects: dict) -> dict:
    """Everything `who` can reach, by every read path of R1."""
    client = world[who]
    seen: dict = {"pipeline": set(), "pipelineFor": set(), "request": set(), "deployment": set()}
    for name in PIPELINES:
        found = await fetch(client, PIPELINE_Q, {"id": world.ids[name]}, "pipeline")
        if found is not None:
            assert found["id"] == world.ids[name]
            seen["pipeline"].add(name)
        app, env = name.split("/")
        if await fetch(client, PIPELINE_FOR_Q, {"a": app, "e": env}, "pipelineFor") is not None:
            seen["pipelineFor"].add(name)
        if await fetch(client, REQUEST_Q, {"id": objects["requests"][name]}, "approvalRequest"):
            seen["request"].add(name)
        if await fetch(client, DEPLOYMENT_Q, {"id": objects["deployments"][name]}, "deployment"):
            seen["deployment"].add(name)
    seen["images"] = {}
    for app in ("shop", "billing"):
        body = await client.execute(IMAGES_Q, {"a": world.ids[app]})
        if body.get("errors"):
            assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", body
            continue
        connection = body["data"]["images"]
        seen["images"][app] = sorted(e["node"]["id"] for e in connection["edges"])
        assert connection["totalCount"] == len(connection["edges"])
    data = await client.ok(REQUESTS_Q)
    request_names = {v: k for k, v in objects["requests"].items()}
    seen["requests list"] = {request_names[e["node"]["id"]] for e in data["approvalRequests"]["edges"]}
    assert data["approvalRequests"]["totalCount"] == len(seen["requests list"])
    data = await client.ok(LISTS_Q)
    pipeline_names = {world.ids[n]: n for n in PIPELINES}
    seen["applications"] = {a["name"] for a in data["applications"]}
    seen["application pipelines"] = {
        pipeline_names[p["id"]] for a in data["applications"] for p in a["pipelines"]
    }
    seen["environments"] = {e["name"] for e in data["environments"]}
    return seen


async def test_r1_each_role_sees_its_scope_and_nothing_else(world):
    """R1: pipelines, requests, deployments and images of a user's scopes, by id and in lists;
    everything else is null / NOT_FOUND by id and left out of lists."""
    objects = await populate(world)
    problems = []
    for who, pipelines in VISIBLE.items():
        seen = await seen_by(world, who, objects)
        applications = {p.split("/")[0] for p in pipelines}
        expected = {
            "pipeline": pipelines,
            "pipelineFor": pipelines,
            "request": pipelines,
            "deployment": pipelines,
            "requests list": pipelines,
            "application pipelines": pipelines,
            "applications": applications,
            "environments": ENVIRONMENTS[who],
            "images": {a: sorted(objects["images"][a]) for a in sorted(applications)},
        }
        for key, value in expected.items():
            if seen[key] != value:
                problems.append(f"{who} {key}: saw {seen[key]}, expected {value}")
    assert not problems, "\n".join(problems)


async def test_r1_prod_approver_does_not_see_shop_staging(world):
    """R1: image-approver on shop/prod only: shop/staging's pipeline, requests and deployments are
    invisible, and acting on them is NOT_FOUND rather than FORBIDDEN."""
    objects = await populate(world)
    client = world["prod_approver"]
    assert await fetch(client, PIPELINE_Q, {"id": world.ids["shop/staging"]}, "pipeline") is None
    assert await fetch(client, PIPELINE_Q, {"id": world.ids["shop/prod"]}, "pipeline") is not None
    data = await client.ok("{ applications { name pipelines { environment { name } } } }")
    assert data["applications"] == [{"name": "shop", "pipelines": [{"environment": {"name": "prod"}}]}]
    request = objects["requests"]["shop/staging"]
    assert await fetch(client, REQUEST_Q, {"id": request}, "approvalRequest") is None
    assert await client.code("mutation($id: ID!) { approveRequest(id: $id) { id } }", {"id": request}) == (
        "NOT_FOUND"
    )
    data = await client.ok(
        "query($p: ID!) { approvalRequests(filter: {pipelineId: $p}) { totalCount edges { node { id } } } }",
        {"p": world.ids["shop/staging"]},
    )
    assert data["approvalRequests"] == {"totalCount": 0, "edges": []}
    # an image is visible (it has no environment), but not its state on an invisible pipeline
    image = objects["images"]["shop"][1]
    data = await world["dev"].ok(
        "query($p: ID!) { approvalRequests(filter: {pipelineId: $p}) { edges { node { image { id } } } } }",
        {"p": world.ids["shop/staging"]},
    )
    assert data["approvalRequests"]["edges"][0]["node"]["image"]["id"] == image
    data = await client.ok(
        """query($a: ID!, $p: ID!) { images(applicationId: $a) {
             edges { node { id approvalState(pipelineId: $p) } } } }""",
        {"a": world.ids["shop"], "p": world.ids["shop/staging"]},
    )
    states = {e["node"]["id"]: e["node"]["approvalState"] for e in data["images"]["edges"]}
    assert states[image] is None
    data = await world["dev"].ok(
        """query($a: ID!, $p: ID!) { images(applicationId: $a) {
             edges { node { id approvalState(pipelineId: $p) } } } }""",
        {"a": world.ids["shop"], "p": world.ids["shop/staging"]},
    )
    assert {e["node"]["id"]: e["node"]["approvalState"] for e in data["images"]["edges"]}[image] == "PENDING"


async def test_r1_nobody_sees_nothing(world):
    """R1: a user with no role binding sees no application, environment, pipeline, image,
    request or deployment."""
    objects = await populate(world)
    client = world["nobody"]
    data = await client.ok(LISTS_Q)
    assert data == {"applications": [], "environments": []}
    data = await client.ok(REQUESTS_Q)
    assert data["approvalRequests"] == {"totalCount": 0, "edges": []}
    for app in ("shop", "billing"):
        assert await client.code(IMAGES_Q, {"a": world.ids[app]}) == "NOT_FOUND"
    for name in PIPELINES:
        assert await fetch(client, PIPELINE_Q, {"id": world.ids[name]}, "pipeline") is None
        assert await fetch(client, REQUEST_Q, {"id": objects["requests"][name]}, "approvalRequest") is None
        assert await fetch(client, DEPLOYMENT_Q, {"id": objects["deployments"][name]}, "deployment") is None
    # an id that names nothing answers alike
    missing = f"Pipeline:{await Pipeline.all().count() + 100}"
    assert await fetch(client, PIPELINE_Q, {"id": missing}, "pipeline") is None
    # me still answers, with no bindings
    data = await client.ok("{ me { email isSuperAdmin roleBindings { id } } }")
    assert data["me"] == {"email": "nobody@example.com", "isSuperAdmin": False, "roleBindings": []}


async def test_r1_objects_of_another_application_are_not_found(world):
    """R1: billing users acting on shop objects (and vice versa) get NOT_FOUND, never FORBIDDEN."""
    objects = await populate(world)
    shop_image = objects["images"]["shop"][0]
    billing_image = objects["images"]["billing"][0]
    eligible = "query($p: ID!, $i: ID!) { eligibleApprovers(pipelineId: $p, imageId: $i) { id } }"
    assert (
        await world["billing_dev"].code(eligible, {"p": world.ids["shop/prod"], "i": shop_image})
        == "NOT_FOUND"
    )
    request_m = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }"
    deploy_m = "mutation($i: DeployImageInput!) { deployImage(input: $i) { id } }"
    approve_m = "mutation($id: ID!) { approveRequest(id: $id) { id } }"
    assert (
        await world["billing_dev"].code(
            request_m, {"i": {"pipelineId": world.ids["shop/prod"], "imageId": shop_image}}
        )
        == "NOT_FOUND"
    )
    assert (
        await world["dev"].code(
            deploy_m, {"i": {"pipelineId": world.ids["billing/prod"], "imageId": billing_image}}
        )
        == "NOT_FOUND"
    )
    assert (
        await world["billing_approver"].code(approve_m, {"id": objects["requests"]["shop/staging"]})
        == "NOT_FOUND"
    )


# --- R2: administration is for super-admins only -------------------------------------------------


async def admin_operations(world) -> list[tuple[str, str, dict]]:
    """Every administrative operation, with valid arguments (a super-admin's call would succeed)."""
    # someone else's token for every caller (a user may revoke their own)
    dev_token = await ApiToken.filter(user__email="admin@example.com").first()
    dev_binding = await RoleBinding.get(user__email="dev@example.com")
    return [
        (
            "createUser",
            "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
            {"i": {"email": "new@example.com", "name": "new"}},
        ),
        (
            "issueApiToken",
            "mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }",
            # another user's: anyone may issue tokens for themself, only super-admins for others
            {"i": {"userId": world["admin"].user_id, "name": "stolen"}},
        ),
        (
            "revokeApiToken",
            "mutation($id: ID!) { revokeApiToken(id: $id) { id } }",
            {"id": f"ApiToken:{dev_token.id}"},
        ),
        ("createApplication", 'mutation { createApplication(name: "newapp") { id } }', {}),
        ("createEnvironment", 'mutation { createEnvironment(name: "qa") { id } }', {}),
        (
            "createPipeline",
            "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }",
            {
                "i": {
                    "applicationId": world.ids["billing"],
                    "environmentId": world.ids["staging"],
                    "requiredApprovals": 1,
                }
            },
        ),
        (
            "updateApprovalPolicy",
            POLICY_M,
            {"p": world.ids["shop/prod"], "i": {"requiredApprovals": 1, "ttlHours": None}},
        ),
        (
            "grantRole",
            GRANT_M,
            {"i": {"userId": world["nobody"].user_id, "role": "VIEWER", "application": "shop"}},
        ),
        ("revokeRole", REVOKE_M, {"id": f"RoleBinding:{dev_binding.id}"}),
        ("users", "{ users { id email } }", {}),
    ]


async def test_r2_only_super_admins_administer(world, unchanged):
    """R2: every role but super-admin gets FORBIDDEN on each administrative operation (NOT_FOUND
    for someone else's API token, which R1 makes invisible), and nothing changes; a
    super-admin's identical call succeeds."""
    operations = await admin_operations(world)
    problems = []
    async with unchanged():
        for who in VISIBLE:
            if who.startswith("admin"):
                continue
            for name, query, variables in operations:
                body = await world[who].execute(query, variables)
                codes = [e["extensions"]["code"] for e in body.get("errors") or []]
                expected = ["NOT_FOUND"] if name == "revokeApiToken" else ["FORBIDDEN"]
                if codes != expected:
                    problems.append(f"{who} {name}: {codes or body}")
                elif (body.get("data") or {}).get(name):
                    problems.append(f"{who} {name}: data leaked {body['data']}")
        # no self-escalation either
        for role, app in (("SUPER_ADMIN", "*"), ("BUILD_AND_DEPLOY", "*"), ("IMAGE_APPROVER", "shop")):
            variables = {"i": {"userId": world["dev"].user_id, "role": role, "application": app}}
            assert await world["dev"].code(GRANT_M, variables) == "FORBIDDEN"
    assert not problems, "\n".join(problems)
    for name, query, variables in operations:
        data = await world["admin2"].ok(query, variables)
        assert data[name], name


# --- R3 / R4: registering images ------------------------------------------------------------------


async def test_r3_register_image_needs_build_and_deploy_on_the_application(world, unchanged):
    """R3, R4: viewer and approvers (who see shop) get FORBIDDEN; billing_dev and nobody (who do
    not) get NOT_FOUND; nothing is stored. Build-and-deploy on any one environment suffices."""
    expected = {
        "viewer": "FORBIDDEN",
        "approver1": "FORBIDDEN",
        "prod_approver": "FORBIDDEN",
        "billing_dev": "NOT_FOUND",
        "billing_approver": "NOT_FOUND",
        "nobody": "NOT_FOUND",
    }
    async with unchanged():
        for n, (who, code) in enumerate(expected.items()):
            assert await world[who].code(REGISTER_M, {"i": image_input("shop", n)}) == code, who
        assert await world["billing_approver"].code(REGISTER_M, {"i": image_input("billing", 99)}) == (
            "FORBIDDEN"
        )
    for who in ("dev", "admin"):
        data = await world[who].ok(REGISTER_M, {"i": image_input("shop", who)})
        assert data["registerImage"]["builtBy"]["id"] == world[who].user_id
    await world["billing_dev"].ok(REGISTER_M, {"i": image_input("billing", 1)})
    # build-and-deploy on one environment (shop/prod) is enough for the application
    await grant(world, "nobody", "BUILD_AND_DEPLOY", "shop", "prod")
    data = await world["nobody"].ok(REGISTER_M, {"i": image_input("shop", "nobody")})
    assert data["registerImage"]["builtBy"]["id"] == world["nobody"].user_id
    assert await world["nobody"].code(REGISTER_M, {"i": image_input("billing", "nobody")}) == "NOT_FOUND"
    assert await Image.filter(application__name="shop").count() == 3
    assert await Image.filter(application__name="billing").count() == 1


# --- R5: bindings take effect on the next request, in every process ----------------------------


async def test_r5_grant_and_revoke_take_effect_on_next_request(world):
    """R5: a grant lets the user see the scope on its very next request; a revoke removes it."""
    client = world["nobody"]
    assert await fetch(client, PIPELINE_Q, {"id": world.ids["shop/prod"]}, "pipeline") is None
    binding = await grant(world, "nobody", "VIEWER", "shop", "prod")
    assert await fetch(client, PIPELINE_Q, {"id": world.ids["shop/prod"]}, "pipeline") is not None
    assert (await client.ok("{ applications { name } }"))["applications"] == [{"name": "shop"}]
    await world["admin"].ok(REVOKE_M, {"id": binding})
    assert await fetch(client, PIPELINE_Q, {"id": world.ids["shop/prod"]}, "pipeline") is None
    assert (await client.ok("{ applications { name } }"))["applications"] == []
    assert not await RoleBinding.filter(user_id=int(client.user_id.split(":")[1])).exists()
    # dev loses build-and-deploy: its next registerImage is refused
    await world["dev"].ok(REGISTER_M, {"i": image_input("shop", 1)})
    await world["admin"].ok(REVOKE_M, {"id": await binding_id(world, "dev")})
    assert await world["dev"].code(REGISTER_M, {"i": image_input("shop", 2)}) == "NOT_FOUND"
    assert await Image.filter(application__name="shop").count() == 1


async def test_r5_bindings_changed_in_one_process_apply_in_another(world, settings):
    """R5: a second app (its own Authorizer, like another server process) enforces a grant and
    a revocation made through the first on its very next request."""
    app_b = create_app(settings, manage_database=False)
    transport = httpx.ASGITransport(app=app_b)
    async with httpx.AsyncClient(transport=transport, base_url="http://b.greenlight.test") as http_b:
        nobody_b = Client(http_b, world["nobody"].token, world["nobody"].user_id)
        pipeline = {"id": world.ids["shop/prod"]}
        # B has loaded the bindings once and answers from them.
        assert await fetch(nobody_b, PIPELINE_Q, pipeline, "pipeline") is None
        assert await nobody_b.code(REGISTER_M, {"i": image_input("shop", 1)}) == "NOT_FOUND"

        binding = await grant(world, "nobody", "BUILD_AND_DEPLOY", "shop", "*")  # through A
        assert await fetch(nobody_b, PIPELINE_Q, pipeline, "pipeline") is not None
        data = await nobody_b.ok(REGISTER_M, {"i": image_input("shop", 2)})
        assert data["registerImage"]["builtBy"]["id"] == world["nobody"].user_id

        await world["admin"].ok(REVOKE_M, {"id": binding})  # through A
        assert await nobody_b.code(REGISTER_M, {"i": image_input("shop", 3)}) == "NOT_FOUND"
        assert await fetch(nobody_b, PIPELINE_Q, pipeline, "pipeline") is None
        assert (await nobody_b.ok("{ applications { name } }"))["applications"] == []

        # and a super-admin made through A administers through B at once
        admin_binding = await grant(world, "viewer", "SUPER_ADMIN")
        viewer_b = Client(http_b, world["viewer"].token)
        assert len((await viewer_b.ok("{ users { id } }"))["users"]) == await User.all().count()
        await world["admin"].ok(REVOKE_M, {"id": admin_binding})
        assert await viewer_b.code("{ users { id } }") == "FORBIDDEN"
    assert await Image.filter(application__name="shop").count() == 1


# --- wildcard scopes -------------------------------------------------------------------------------


async def test_wildcard_application_and_environment(world):
    """R1: a viewer binding on "*"/"*" sees every pipeline of every application, but is no admin."""
    objects = await populate(world)
    await grant(world, "nobody", "VIEWER", "*", "*")
    seen = await seen_by(world, "nobody", objects)
    assert seen["pipeline"] == set(PIPELINES)
    assert seen["requests list"] == set(PIPELINES)
    assert seen["deployment"] == set(PIPELINES)
    assert seen["applications"] == {"shop", "billing"}
    assert seen["images"] == {a: sorted(objects["images"][a]) for a in ("billing", "shop")}
    assert await world["nobody"].code("{ users { id } }") == "FORBIDDEN"
    assert await world["nobody"].code(REGISTER_M, {"i": image_input("shop", 1)}) == "FORBIDDEN"


async def test_wildcard_environment_covers_environments_created_later(world):
    """R1: dev's shop/* binding covers a pipeline on an environment created after the grant."""
    data = await world["admin"].ok('mutation { createEnvironment(name: "qa") { id } }')
    env = data["createEnvironment"]["id"]
    data = await world["admin"].ok(
        "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }",
        {"i": {"applicationId": world.ids["shop"], "environmentId": env}},
    )
    pipeline = data["createPipeline"]["id"]
    assert await fetch(world["dev"], PIPELINE_Q, {"id": pipeline}, "pipeline") is not None
    image = await world.register_image("dev")
    deployed = await world.deploy(image, "shop/staging")
    assert deployed["status"] == "PROGRESSING"
    data = await world["dev"].ok(
        "mutation($i: DeployImageInput!) { deployImage(input: $i) { pipeline { id } } }",
        {"i": {"pipelineId": pipeline, "imageId": image}},
    )
    assert data["deployImage"]["pipeline"]["id"] == pipeline
    assert await fetch(world["prod_approver"], PIPELINE_Q, {"id": pipeline}, "pipeline") is None
    assert await fetch(world["billing_dev"], PIPELINE_Q, {"id": pipeline}, "pipeline") is None


async def test_wildcard_application_on_one_environment(world):
    """R1, R3, R4: build-and-deploy on "*"/"prod" covers shop/prod and billing/prod, not
    shop/staging; image-approver on "*"/"prod" approves billing/prod requests."""
    objects = await populate(world)
    await grant(world, "nobody", "BUILD_AND_DEPLOY", "*", "prod")
    seen = await seen_by(world, "nobody", objects)
    assert seen["pipeline"] == {"shop/prod", "billing/prod"}
    assert seen["request"] == {"shop/prod", "billing/prod"}
    assert seen["deployment"] == {"shop/prod", "billing/prod"}
    assert seen["requests list"] == {"shop/prod", "billing/prod"}
    assert seen["application pipelines"] == {"shop/prod", "billing/prod"}
    assert seen["applications"] == {"shop", "billing"}
    assert seen["environments"] == {"prod"}
    # may register for both applications and request on prod pipelines, not on staging
    shop_image = (await world["nobody"].ok(REGISTER_M, {"i": image_input("shop", 1)}))["registerImage"]["id"]
    await world["nobody"].ok(REGISTER_M, {"i": image_input("billing", 1)})
    await world.request_approval(shop_image, "shop/prod", who="nobody")
    code = await world["nobody"].code(
        "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }",
        {"i": {"pipelineId": world.ids["shop/staging"], "imageId": shop_image}},
    )
    assert code == "NOT_FOUND"
    # image-approver on "*"/"prod" approves billing/prod requests
    await grant(world, "approver3", "IMAGE_APPROVER", "*", "prod")
    image = await world.register_image("billing_dev", "billing")
    request = await world.request_approval(image, "billing/prod", who="billing_dev")
    data = await world["approver3"].ok(
        "query($id: ID!) { approvalRequest(id: $id) { viewerCanApprove } }", {"id": request}
    )
    assert data["approvalRequest"]["viewerCanApprove"] is True
    assert (await world.approve(request, "approver3"))["state"] == "APPROVED"


async def test_r9_wildcard_approver_is_eligible(world):
    """R9 with wildcards: an image-approver on "*"/"prod" is an eligible approver of billing/prod
    requests and can be named; shop-only approvers are not."""
    await grant(world, "approver3", "IMAGE_APPROVER", "*", "prod")
    image = await world.register_image("billing_dev", "billing")
    data = await world["billing_dev"].ok(
        "query($p: ID!, $i: ID!) { eligibleApprovers(pipelineId: $p, imageId: $i) { id } }",
        {"p": world.ids["billing/prod"], "i": image},
    )
    eligible = {u["id"] for u in data["eligibleApprovers"]}
    assert eligible == {world[name].user_id for name in ("admin", "admin2", "billing_approver", "approver3")}
    request = await world.request_approval(image, "billing/prod", who="billing_dev", approvers=["approver3"])
    data = await world["billing_dev"].ok(
        "query($id: ID!) { approvalRequest(id: $id) { notifiedApprovers { id } } }", {"id": request}
    )
    assert data["approvalRequest"]["notifiedApprovers"] == [{"id": world["approver3"].user_id}]


# --- role binding rules -------------------------------------------------------------------------


async def test_r2_super_admin_is_granted_only_on_everything(world, unchanged):
    """R2: SUPER_ADMIN on anything narrower than "*"/"*" is BAD_USER_INPUT and stores nothing;
    on "*"/"*" (the input defaults) it makes a super-admin at once (R5)."""
    async with unchanged():
        for application, environment in (("shop", "*"), ("*", "prod"), ("shop", "prod")):
            variables = {
                "i": {
                    "userId": world["nobody"].user_id,
                    "role": "SUPER_ADMIN",
                    "application": application,
                    "environment": environment,
                }
            }
            assert await world["admin"].code(GRANT_M, variables) == "BAD_USER_INPUT", variables
    assert await world["nobody"].code("{ users { id } }") == "FORBIDDEN"
    data = await world["admin"].ok(GRANT_M, {"i": {"userId": world["nobody"].user_id, "role": "SUPER_ADMIN"}})
    assert data["grantRole"]["application"] == "*"
    assert data["grantRole"]["environment"] == "*"
    assert data["grantRole"]["user"]["id"] == world["nobody"].user_id
    assert (await world["nobody"].ok("{ me { isSuperAdmin } }"))["me"]["isSuperAdmin"] is True
    assert len((await world["nobody"].ok("{ users { id } }"))["users"]) == await User.all().count()


async def test_r2_duplicate_grant_is_a_conflict_naming_the_binding(world, unchanged):
    """R2: granting an existing binding again is CONFLICT with extensions.existingId."""
    existing = await binding_id(world, "dev")
    variables = {
        "i": {
            "userId": world["dev"].user_id,
            "role": "BUILD_AND_DEPLOY",
            "application": "shop",
            "environment": "*",
        }
    }
    async with unchanged():
        error = await world["admin"].fails(GRANT_M, variables)
    assert error["extensions"]["code"] == "CONFLICT"
    assert error["extensions"]["existingId"] == existing
    # a different scope for the same role is no duplicate
    variables["i"]["environment"] = "prod"
    await world["admin"].ok(GRANT_M, variables)
    assert await RoleBinding.filter(user__email="dev@example.com").count() == 2


async def test_r2_grant_on_unknown_scope_or_user_is_refused(world, unchanged):
    """R2: a binding names an existing application/environment (or "*") and an existing user."""
    nobody = world["nobody"].user_id
    async with unchanged():
        for app, env in (("nope", "*"), ("shop", "nope")):
            code = await world["admin"].code(
                GRANT_M, {"i": {"userId": nobody, "role": "VIEWER", "application": app, "environment": env}}
            )
            assert code in ("NOT_FOUND", "BAD_USER_INPUT"), (app, env)
        code = await world["admin"].code(
            GRANT_M, {"i": {"userId": nobody, "role": "VIEWER", "application": "Not A Name"}}
        )
        assert code == "BAD_USER_INPUT"
        code = await world["admin"].code(GRANT_M, {"i": {"userId": "User:99999", "role": "VIEWER"}})
        assert code == "NOT_FOUND"


async def test_r2_revoking_the_last_super_admin_is_invalid_state(world, unchanged):
    """R2: someone must administer: the last super-admin binding cannot be revoked
    (INVALID_STATE); revoking a binding that is gone is NOT_FOUND."""
    admin_binding = await binding_id(world, "admin")
    admin2_binding = await binding_id(world, "admin2")
    await world["admin"].ok(REVOKE_M, {"id": admin2_binding})
    assert await world["admin2"].code("{ users { id } }") == "FORBIDDEN"  # R5, at once
    async with unchanged():
        assert await world["admin"].code(REVOKE_M, {"id": admin_binding}) == "INVALID_STATE"
        # a binding that is gone is NOT_FOUND
        assert await world["admin"].code(REVOKE_M, {"id": admin2_binding}) == "NOT_FOUND"
    assert await RoleBinding.filter(role=Role.SUPER_ADMIN).count() == 1
    assert (await world["admin"].ok("{ me { isSuperAdmin } }"))["me"]["isSuperAdmin"] is True


async def test_role_bindings_visible_to_self_and_super_admins_only(world):
    """User.roleBindings: the user themself and super-admins see them; anyone else sees []."""
    image = await world.register_image("dev")
    query = """query($a: ID!) { images(applicationId: $a) {
      edges { node { id builtBy { email roleBindings { role application environment } } } } } }"""
    dev_bindings = [{"role": "BUILD_AND_DEPLOY", "application": "shop", "environment": "*"}]
    expected = {"dev": dev_bindings, "admin": dev_bindings, "admin2": dev_bindings}
    for who in ("dev2", "viewer", "approver1", "prod_approver"):
        expected[who] = []
    for who, bindings in expected.items():
        data = await world[who].ok(query, {"a": world.ids["shop"]})
        (edge,) = data["images"]["edges"]
        assert edge["node"]["id"] == image
        assert edge["node"]["builtBy"] == {"email": "dev@example.com", "roleBindings": bindings}, who
    data = await world["admin"].ok("{ users { email roleBindings { role application environment } } }")
    by_email = {u["email"]: u["roleBindings"] for u in data["users"]}
    assert by_email["prod_approver@example.com"] == [
        {"role": "IMAGE_APPROVER", "application": "shop", "environment": "prod"}
    ]
    assert by_email["nobody@example.com"] == []
    assert len(by_email) == await User.all().count()


async def test_r5_policy_csv_names_exactly_the_actions_of_the_code():
    """R5 / STYLE: policy.csv and greenlight.policies.actions.Action name the same actions, and
    every role in policy.csv is a Role."""
    rows = []
    for raw in POLICY_PATH.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rows.append([part.strip() for part in line.split(",")])
    assert rows, "policy.csv has no rules"
    assert {row[0] for row in rows} == {"p"}
    assert all(len(row) == 3 for row in rows), rows
    assert {row[2] for row in rows} == {action.value for action in Action}
    assert {row[1] for row in rows} <= {role.value for role in Role}
    # super-admin may do everything, except speaking for a CD system: rollout results come
    # only from identities granted deploy-agent, so a human cannot fake a HEALTHY rollout
    assert {row[2] for row in rows if row[1] == Role.SUPER_ADMIN.value} == {a.value for a in Action} - {
        Action.REPORT_DEPLOYMENT_STATUS.value
    }
    assert {row[1] for row in rows if row[2] == Action.REPORT_DEPLOYMENT_STATUS.value} == {
        Role.DEPLOY_AGENT.value
    }
