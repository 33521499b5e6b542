"""Refused input: each case gives the contract's code (api.graphql) and changes nothing.

Covers the "Things" section of RULES.md (names, digests, repositories, tags, policy ranges,
uniqueness), global IDs of the wrong kind or of missing objects, R6 (duplicate live
request), R8 (unknown named approver), R13 (empty rejection reason) and malformed GraphQL.

Each test walks a table of cases in one world (building a world per case would make this
file the slowest of the suite); every case is checked on its own with `unchanged`, and a
failure names the case.
"""

from __future__ import annotations

import uuid

REGISTER = """mutation($i: RegisterImageInput!) { registerImage(input: $i) { id digest } }"""
CREATE_APP = "mutation($n: String!) { createApplication(name: $n) { id name } }"
CREATE_ENV = "mutation($n: String!) { createEnvironment(name: $n) { id name } }"
CREATE_PIPELINE = "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }"
UPDATE_POLICY = """mutation($p: ID!, $i: ApprovalPolicyInput!) {
  updateApprovalPolicy(pipelineId: $p, input: $i) { id }
}"""
REQUEST = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }"
APPROVE = "mutation($id: ID!) { approveRequest(id: $id) { id state } }"
REJECT = "mutation($id: ID!, $r: String!) { rejectRequest(id: $id, reason: $r) { id state } }"
CANCEL = "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id state } }"
EXPIRE = "mutation($id: ID!) { expireApproval(id: $id) { id state } }"
DEPLOY = "mutation($i: DeployImageInput!) { deployImage(input: $i) { id } }"
PIPELINE = "query($id: ID!) { pipeline(id: $id) { id } }"
APPROVAL_REQUEST = "query($id: ID!) { approvalRequest(id: $id) { id } }"
DEPLOYMENT = "query($id: ID!) { deployment(id: $id) { id } }"
IMAGES = "query($id: ID!) { images(applicationId: $id) { totalCount } }"
ELIGIBLE = "query($p: ID!, $i: ID!) { eligibleApprovers(pipelineId: $p, imageId: $i) { id } }"


def fresh_digest() -> str:
    return "sha256:" + uuid.uuid4().hex + uuid.uuid4().hex


def image_input(application: str = "shop", **overrides) -> dict:
    values = {
        "application": application,
        "repository": "registry.example.com/acme/shop",
        "tag": "v1.2.3",
        "digest": fresh_digest(),
    }
    values.update(overrides)
    return {"i": values}


async def refused(unchanged, client, query: str, variables: dict | None, code: str, case: object) -> dict:
    """Runs one refused call: asserts its code and that no table changed; returns the error."""
    async with unchanged():
        body = await client.execute(query, variables)
    assert body.get("errors"), f"{case!r}: expected {code}, got {body}"
    error = body["errors"][0]
    assert error["extensions"]["code"] == code, f"{case!r}: {error}"
    return error


# --- images: digest, repository, tag (RULES.md "Things": Image) ---------------------------

BAD_DIGESTS = {
    "too short": "sha256:" + "a" * 63,
    "too long": "sha256:" + "a" * 65,
    "uppercase hex": "sha256:" + "A" * 64,
    "mixed case hex": "sha256:" + "aB" * 32,
    "missing sha256 prefix": "a" * 64,
    "uppercase prefix": "SHA256:" + "a" * 64,
    "sha512": "sha512:" + "a" * 128,
    "sha512 prefix with 64 hex": "sha512:" + "a" * 64,
    "not hex": "sha256:" + "g" * 64,
    "empty": "",
    "trailing newline": "sha256:" + "a" * 64 + "\n",
}


async def test_image_digest_must_be_sha256_and_64_lowercase_hex(world, unchanged):
    for case, digest in BAD_DIGESTS.items():
        error = await refused(
            unchanged, world["dev"], REGISTER, image_input(digest=digest), "BAD_USER_INPUT", case
        )
        assert "digest" in error["message"], case
    # The control case: the same input with a good digest is accepted.
    good = "sha256:" + "0123456789abcdef" * 4
    assert (await world["dev"].ok(REGISTER, image_input(digest=good)))["registerImage"]["digest"] == good


async def test_image_same_digest_twice_for_one_application_is_conflict(world, unchanged):
    """The same digest for one application is a CONFLICT naming the first image; for another
    application it is a different image and allowed."""
    from greenlight.models import Image

    digest = fresh_digest()
    first = (await world["dev"].ok(REGISTER, image_input(digest=digest)))["registerImage"]["id"]
    error = await refused(
        unchanged, world["dev2"], REGISTER, image_input(digest=digest, tag="other"), "CONFLICT", "dup"
    )
    assert error["extensions"]["existingId"] == first

    other = image_input("billing", digest=digest, repository="registry.example.com/acme/billing")
    billing = (await world["billing_dev"].ok(REGISTER, other))["registerImage"]["id"]
    assert billing != first
    assert await Image.filter(digest=digest).count() == 2


BAD_REPOSITORIES = {
    "empty": "",
    "uppercase path": "registry.example.com/Acme/shop",
    "space": "registry.example.com/acme shop",
    "empty path component": "registry.example.com//shop",
    "trailing slash": "registry.example.com/acme/",
    "leading separator": "-shop",
    "too long": "registry.example.com/" + "a" * 250,
}
BAD_TAGS = {
    "empty": "",
    "leading dash": "-v1",
    "leading dot": ".v1",
    "space": "v1 2",
    "slash": "v1/2",
    "colon": "v1:2",
    "129 chars": "a" * 129,
}


async def test_image_repository_and_tag_must_be_valid(world, unchanged):
    for field, cases in (("repository", BAD_REPOSITORIES), ("tag", BAD_TAGS)):
        for case, value in cases.items():
            error = await refused(
                unchanged,
                world["dev"],
                REGISTER,
                image_input(**{field: value}),
                "BAD_USER_INPUT",
                (field, case),
            )
            assert field in error["message"], (field, case)
    # The control case: the longest tag and a registry with a port are accepted.
    await world["dev"].ok(REGISTER, image_input(repository="localhost:5000/acme/shop", tag="a" * 128))


async def test_image_application_malformed_is_bad_input_missing_is_not_found(world, unchanged):
    await refused(unchanged, world["dev"], REGISTER, image_input("Shop"), "BAD_USER_INPUT", "Shop")
    await refused(unchanged, world["admin"], REGISTER, image_input("no-such-app"), "NOT_FOUND", "missing")


# --- applications and environments: names (RULES.md "Things") ------------------------------

BAD_NAMES = {
    "uppercase": "Shop",
    "leading dash": "-shop",
    "64 chars": "a" * 64,
    "empty": "",
    "spaces": "my shop",
    "leading space": " shop",
    "underscore": "my_shop",
    "dot": "shop.v2",
    "star": "*",
    "trailing newline": "shop\n",
}


async def test_names_must_be_lowercase_dns_like(world, unchanged):
    for mutation in (CREATE_APP, CREATE_ENV):
        for case, name in BAD_NAMES.items():
            await refused(
                unchanged, world["admin"], mutation, {"n": name}, "BAD_USER_INPUT", (mutation, case)
            )
        # The control case: the longest valid name, starting with a digit, with dashes.
        name = "9" + "-a" * 31
        assert len(name) == 63
        data = await world["admin"].ok(mutation, {"n": name})
        assert next(iter(data.values()))["name"] == name


async def test_names_are_unique_conflict_names_existing(world, unchanged):
    for mutation, name in ((CREATE_APP, "shop"), (CREATE_ENV, "prod")):
        error = await refused(unchanged, world["admin"], mutation, {"n": name}, "CONFLICT", name)
        assert error["extensions"]["existingId"] == world.ids[name]


# --- pipelines: ranges and uniqueness (RULES.md "Things": Pipeline) -------------------------

OUT_OF_RANGE = {
    "requiredApprovals -1": {"requiredApprovals": -1},
    "requiredApprovals 7": {"requiredApprovals": 7},
    "requiredApprovals huge": {"requiredApprovals": 2_000_000_000},
    "ttlHours 0": {"requiredApprovals": 1, "ttlHours": 0},
    "ttlHours -1": {"requiredApprovals": 1, "ttlHours": -1},
    "ttlHours 8761": {"requiredApprovals": 1, "ttlHours": 8761},
}


async def test_pipeline_policy_out_of_range_is_bad_input(world, unchanged):
    """requiredApprovals 0..6 and ttlHours 1..8760, on createPipeline and updateApprovalPolicy."""
    app = (await world["admin"].ok(CREATE_APP, {"n": "ranges"}))["createApplication"]["id"]
    env = (await world["admin"].ok(CREATE_ENV, {"n": "ranges"}))["createEnvironment"]["id"]
    for case, policy in OUT_OF_RANGE.items():
        await refused(
            unchanged,
            world["admin"],
            CREATE_PIPELINE,
            {"i": {"applicationId": app, "environmentId": env, **policy}},
            "BAD_USER_INPUT",
            ("create", case),
        )
        await refused(
            unchanged,
            world["admin"],
            UPDATE_POLICY,
            {"p": world.ids["shop/prod"], "i": policy},
            "BAD_USER_INPUT",
            ("update", case),
        )
    # The control case: 6 approvals and 8760 hours are the largest allowed values.
    data = await world["admin"].ok(
        """mutation($i: CreatePipelineInput!) {
             createPipeline(input: $i) { approvalPolicy { requiredApprovals ttlHours } }
           }""",
        {"i": {"applicationId": app, "environmentId": env, "requiredApprovals": 6, "ttlHours": 8760}},
    )
    assert data["createPipeline"]["approvalPolicy"] == {"requiredApprovals": 6, "ttlHours": 8760}


async def test_pipeline_duplicate_is_conflict_missing_parts_not_found(world, unchanged):
    error = await refused(
        unchanged,
        world["admin"],
        CREATE_PIPELINE,
        {
            "i": {
                "applicationId": world.ids["shop"],
                "environmentId": world.ids["prod"],
                "requiredApprovals": 1,
            }
        },
        "CONFLICT",
        "duplicate",
    )
    assert error["extensions"]["existingId"] == world.ids["shop/prod"]
    for app, env in (("Application:999999", world.ids["prod"]), (world.ids["shop"], "Environment:999999")):
        await refused(
            unchanged,
            world["admin"],
            CREATE_PIPELINE,
            {"i": {"applicationId": app, "environmentId": env}},
            "NOT_FOUND",
            (app, env),
        )


# --- global IDs: malformed, wrong kind, missing ---------------------------------------------

BAD_PIPELINE_IDS = [
    "garbage",
    "Pipeline:abc",
    "Pipeline:-1",
    "Pipeline:0",
    "Pipeline:",
    "Pipeline:1.5",
    "Pipeline:99999999999999999999",
    "pipeline:1",
    "3",
    "",
]


async def test_ids_malformed_pipeline_id_is_bad_input(world, unchanged):
    image = await world.register_image()
    for bad in BAD_PIPELINE_IDS:
        for who, query, variables in (
            ("dev2", REQUEST, {"i": {"pipelineId": bad, "imageId": image}}),
            ("dev", DEPLOY, {"i": {"pipelineId": bad, "imageId": image}}),
            ("admin", UPDATE_POLICY, {"p": bad, "i": {"requiredApprovals": 1}}),
            ("dev", PIPELINE, {"id": bad}),
            ("dev", ELIGIBLE, {"p": bad, "i": image}),
        ):
            await refused(unchanged, world[who], query, variables, "BAD_USER_INPUT", (bad, query))


async def test_ids_of_the_wrong_kind_are_bad_input(world, unchanged):
    """An Image id where a Pipeline id belongs (and the like) is refused, not misread."""
    image = await world.register_image()
    _, request = await world.approved_image()
    pipeline = world.ids["shop/prod"]
    cases = [
        ("dev2", REQUEST, {"i": {"pipelineId": image, "imageId": image}}),
        ("dev2", REQUEST, {"i": {"pipelineId": pipeline, "imageId": pipeline}}),
        ("dev2", REQUEST, {"i": {"pipelineId": pipeline, "imageId": image, "approverIds": [image]}}),
        ("dev", DEPLOY, {"i": {"pipelineId": image, "imageId": image}}),
        ("dev", DEPLOY, {"i": {"pipelineId": pipeline, "imageId": request}}),
        ("approver3", APPROVE, {"id": image}),
        ("approver3", REJECT, {"id": pipeline, "r": "no"}),
        ("dev2", CANCEL, {"id": image}),
        ("dev2", EXPIRE, {"id": world.ids["shop"]}),
        (
            "admin",
            CREATE_PIPELINE,
            {"i": {"applicationId": world.ids["prod"], "environmentId": world.ids["prod"]}},
        ),
        ("admin", UPDATE_POLICY, {"p": world.ids["shop"], "i": {"requiredApprovals": 1}}),
        ("dev", PIPELINE, {"id": image}),
        ("dev", APPROVAL_REQUEST, {"id": pipeline}),
        ("dev", DEPLOYMENT, {"id": request}),
        ("dev", IMAGES, {"id": world.ids["prod"]}),
        ("dev", ELIGIBLE, {"p": image, "i": image}),
    ]
    for who, query, variables in cases:
        await refused(unchanged, world[who], query, variables, "BAD_USER_INPUT", variables)


async def test_ids_of_missing_objects_read_as_null_with_not_found(world, unchanged):
    """R1: pipeline, approvalRequest and deployment are nullable: a missing object reads as
    null, with a NOT_FOUND error on that field."""
    for field, query, kind in (
        ("pipeline", PIPELINE, "Pipeline"),
        ("approvalRequest", APPROVAL_REQUEST, "ApprovalRequest"),
        ("deployment", DEPLOYMENT, "Deployment"),
    ):
        async with unchanged():
            body = await world["dev"].execute(query, {"id": f"{kind}:999999"})
        assert body["data"] == {field: None}, body
        assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [([field], "NOT_FOUND")]


async def test_ids_of_missing_objects_are_not_found_where_not_nullable(world, unchanged):
    image = await world.register_image()
    cases = [
        ("dev2", REQUEST, {"i": {"pipelineId": "Pipeline:999999", "imageId": image}}),
        ("dev2", REQUEST, {"i": {"pipelineId": world.ids["shop/prod"], "imageId": "Image:999999"}}),
        ("dev", DEPLOY, {"i": {"pipelineId": "Pipeline:999999", "imageId": image}}),
        ("dev", DEPLOY, {"i": {"pipelineId": world.ids["shop/staging"], "imageId": "Image:999999"}}),
        ("approver1", APPROVE, {"id": "ApprovalRequest:999999"}),
        ("approver1", REJECT, {"id": "ApprovalRequest:999999", "r": "no"}),
        ("dev", CANCEL, {"id": "ApprovalRequest:999999"}),
        ("dev", EXPIRE, {"id": "ApprovalRequest:999999"}),
        ("admin", UPDATE_POLICY, {"p": "Pipeline:999999", "i": {"requiredApprovals": 1}}),
        ("dev", IMAGES, {"id": "Application:999999"}),
        ("dev", ELIGIBLE, {"p": "Pipeline:999999", "i": image}),
    ]
    for who, query, variables in cases:
        await refused(unchanged, world[who], query, variables, "NOT_FOUND", variables)


async def test_r8_named_approver_that_does_not_exist_is_bad_input(world, unchanged):
    image = await world.register_image()
    variables = {
        "i": {"pipelineId": world.ids["shop/prod"], "imageId": image, "approverIds": ["User:999999"]}
    }
    await refused(unchanged, world["dev2"], REQUEST, variables, "BAD_USER_INPUT", "unknown approver")


# --- the workflow's own input rules ---------------------------------------------------------


async def test_r6_second_live_request_is_conflict_naming_the_first(world, unchanged):
    image = await world.register_image()
    first = await world.request_approval(image, who="dev2")
    variables = {"i": {"pipelineId": world.ids["shop/prod"], "imageId": image}}
    error = await refused(unchanged, world["dev"], REQUEST, variables, "CONFLICT", "second request")
    assert error["extensions"]["existingId"] == first


async def test_r6_request_without_approval_or_for_another_application_is_bad_input(world, unchanged):
    shop_image = await world.register_image()
    billing_image = await world.register_image("billing_dev", "billing")
    for who, pipeline, image, case in (
        ("dev2", "shop/staging", shop_image, "requiredApprovals is 0"),
        ("admin", "shop/prod", billing_image, "image of another application"),
    ):
        variables = {"i": {"pipelineId": world.ids[pipeline], "imageId": image}}
        await refused(unchanged, world[who], REQUEST, variables, "BAD_USER_INPUT", case)


async def test_r13_reject_with_empty_reason_is_bad_input(world, unchanged):
    image = await world.register_image()
    request = await world.request_approval(image, who="dev2")
    for reason in ("", "   ", "\n\t"):
        error = await refused(
            unchanged, world["approver1"], REJECT, {"id": request, "r": reason}, "BAD_USER_INPUT", reason
        )
        assert "reason" in error["message"]
    data = await world["dev"].ok(
        "query($id: ID!) { approvalRequest(id: $id) { state rejection { comment } } }", {"id": request}
    )
    assert data["approvalRequest"] == {"state": "PENDING", "rejection": None}


# --- malformed GraphQL documents -------------------------------------------------------------

MALFORMED = {
    "syntax error": ('mutation { createApplication(name: "x" { id } }', None),
    "unterminated string": ('mutation { createApplication(name: "x) { id } }', None),
    "unknown field": ('mutation { createApplication(name: "x") { id colour } }', None),
    "unknown mutation": ('mutation { createApplications(name: "x") { id } }', None),
    "unknown argument": ('mutation { createApplication(name: "x", colour: "red") { id } }', None),
    "missing argument": ("mutation { createApplication { id } }", None),
    "wrong literal type": ("mutation { createApplication(name: 42) { id } }", None),
    "unknown enum literal": (
        'mutation { createPipeline(input: {applicationId: "Application:1", environmentId: "Environment:1", '
        "strategy: YOLO}) { id } }",
        None,
    ),
    "undeclared variable": ("mutation { createApplication(name: $n) { id } }", {"n": "x"}),
}
PIPELINE_IDS = {"applicationId": "Application:1", "environmentId": "Environment:1"}
BAD_VARIABLES = {
    "null for non-null variable": (CREATE_APP, {"n": None}),
    "missing variable": (CREATE_APP, {}),
    "wrong variable type": (CREATE_PIPELINE, {"i": {**PIPELINE_IDS, "requiredApprovals": "two"}}),
    "unknown enum value": (CREATE_PIPELINE, {"i": {**PIPELINE_IDS, "strategy": "YOLO"}}),
    "unknown input field": (CREATE_PIPELINE, {"i": {**PIPELINE_IDS, "colour": "red"}}),
}


async def _assert_all_bad_user_input(world, unchanged, cases: dict) -> None:
    for case, (query, variables) in cases.items():
        async with unchanged():
            body = await world["admin"].execute(query, variables)
        assert body.get("errors"), (case, body)
        codes = [e["extensions"]["code"] for e in body["errors"]]
        assert codes == ["BAD_USER_INPUT"] * len(codes), (case, body["errors"])
        assert not body.get("data"), case


async def test_malformed_graphql_is_bad_user_input(world, unchanged):
    """Syntax errors, unknown fields and arguments: BAD_USER_INPUT (api.graphql)."""
    await _assert_all_bad_user_input(world, unchanged, MALFORMED)


async def test_malformed_variables_are_bad_user_input(world, unchanged):
    """Variables that do not fit their declared types are the request's fault: BAD_USER_INPUT."""
    await _assert_all_bad_user_input(world, unchanged, BAD_VARIABLES)
