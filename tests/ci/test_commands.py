"""`greenlight ci ...` against a real server: uvicorn serving the test's app on a free port,
the CLI run in a thread (the server runs in this event loop), on SQLite and PostgreSQL.
What is asserted is what a pipeline sees: the exit status, standard output, --json."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from greenlight import cli
from greenlight.ci import commands
from tests.support import serving

pytestmark = pytest.mark.timeout(120)


@dataclass
class Ran:
    status: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
async def url(app) -> AsyncIterator[str]:
    async with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


def fresh_digest() -> str:
    return "sha256:" + uuid.uuid4().hex + uuid.uuid4().hex


async def ci(url: str, token: str | None, *argv: str) -> Ran:
    """Runs `greenlight ci ARGV...` with GREENLIGHT_URL and GREENLIGHT_TOKEN set, in a thread."""
    environ = {"GREENLIGHT_URL": url} | ({"GREENLIGHT_TOKEN": token} if token else {})
    out, err = io.StringIO(), io.StringIO()
    status = await asyncio.to_thread(
        commands.main, list(argv), commands.Io(environ=environ, stdout=out, stderr=err)
    )
    return Ran(status, out.getvalue(), err.getvalue())


async def register(url: str, world, who: str = "dev", digest: str | None = None) -> str:
    ran = await ci(
        url,
        world[who].token,
        "register",
        "--application",
        "shop",
        "--repository",
        "registry.example.com/acme/shop",
        "--tag",
        "1.4.2",
        "--digest",
        digest or fresh_digest(),
    )
    assert ran.status == 0, ran.err
    return ran.out.strip()


async def pending_request(world, pipeline: str = "shop/prod") -> str:
    """The id of the pipeline's PENDING request, once the CLI has made it."""
    for _ in range(200):
        data = await world["admin"].ok(
            """query($p: ID!) { approvalRequests(filter: {pipelineId: $p, states: [PENDING]}) {
                 edges { node { id } } } }""",
            {"p": world.ids[pipeline]},
        )
        edges = data["approvalRequests"]["edges"]
        if edges:
            return edges[0]["node"]["id"]
        await asyncio.sleep(0.05)
    raise AssertionError("the CLI made no request")


REQUEST = ("request", "--application", "shop", "--environment", "prod", "--interval", "0.1")


async def test_register_prints_the_id_and_again_the_same_digest_gives_the_same_id(url, world):
    digest = fresh_digest()
    first = await ci(
        url,
        world["dev"].token,
        "register",
        "--application",
        "shop",
        "--repository",
        "registry.example.com/acme/shop",
        "--tag",
        "1.4.2",
        "--digest",
        digest,
        "--commit",
        "4f1c2e5d9a8b",
        "--branch",
        "main",
        "--build-url",
        "https://ci.example.com/shop/812",
        "--label",
        "team=payments",
    )
    assert first.status == 0, first.err
    image_id = first.out.strip()
    assert image_id.startswith("Image:")
    again = await ci(
        url,
        world["dev"].token,
        "register",
        "--json",
        "--application",
        "shop",
        "--repository",
        "registry.example.com/acme/shop",
        "--tag",
        "1.4.2",
        "--digest",
        digest,
    )
    assert again.status == 0, again.err
    assert again.json == {"command": "register", "imageId": image_id, "existing": True, "exitStatus": 0}
    data = await world["dev"].ok(
        "query($id: ID!) { node(id: $id) { ... on Image { digest commit branch buildUrl labels { key value } } } }",
        {"id": image_id},
    )
    assert data["node"] == {
        "digest": digest,
        "commit": "4f1c2e5d9a8b",
        "branch": "main",
        "buildUrl": "https://ci.example.com/shop/812",
        "labels": [{"key": "team", "value": "payments"}],
    }


async def test_check_reports_a_scan_by_image_id_and_by_digest(url, world):
    digest = fresh_digest()
    image_id = await register(url, world, digest=digest)
    ran = await ci(
        url,
        world["dev"].token,
        "check",
        "--image",
        image_id,
        "--name",
        "vulnerability-scan",
        "--status",
        "failed",
        "--summary",
        "2 critical",
        "--report-url",
        "https://ci.example.com/shop/812/scan",
    )
    assert ran.status == 0, ran.err
    assert ran.out.strip().startswith("ImageCheck:")
    data = await world["dev"].ok(
        "query($id: ID!) { node(id: $id) { ... on Image { checks { status summary url } } } }",
        {"id": image_id},
    )
    assert data["node"]["checks"] == [
        {"status": "FAILED", "summary": "2 critical", "url": "https://ci.example.com/shop/812/scan"}
    ]
    again = await ci(
        url,
        world["dev"].token,
        "check",
        "--json",
        "--application",
        "shop",
        "--digest",
        digest,
        "--name",
        "vulnerability-scan",
        "--status",
        "PASSED",
        "--summary",
        "0 critical",
    )
    assert again.status == 0, again.err
    assert again.json["imageId"] == image_id
    assert (again.json["name"], again.json["status"]) == ("vulnerability-scan", "PASSED")
    data = await world["dev"].ok(
        "query($id: ID!) { node(id: $id) { ... on Image { checks { name status summary url } } } }",
        {"id": image_id},
    )
    assert data["node"]["checks"] == [
        {
            "name": "vulnerability-scan",
            "status": "PASSED",
            "summary": "0 critical",
            "url": None,  # each report is the whole latest result
        }
    ]


async def test_request_wait_exits_0_once_the_approvers_approve_meanwhile(url, world):
    image_id = await register(url, world)

    async def approvers():
        request_id = await pending_request(world)
        await world.approve(request_id, "approver1")
        await asyncio.sleep(0.3)  # the CLI sees the request still PENDING, 1 of 2
        await world.approve(request_id, "approver2")
        return request_id

    ran, request_id = await asyncio.gather(
        ci(url, world["dev2"].token, *REQUEST, "--image", image_id, "--wait", "--timeout", "30"),
        approvers(),
    )
    assert ran.status == 0, ran.err
    assert ran.out.strip() == request_id
    assert f"{request_id} is APPROVED" in ran.err


async def test_request_wait_exits_3_when_rejected_with_the_reason_in_json(url, world):
    image_id = await register(url, world)

    async def reject():
        request_id = await pending_request(world)
        await world["approver1"].ok(
            'mutation($id: ID!) { rejectRequest(id: $id, reason: "Fails the load test") { state } }',
            {"id": request_id},
        )
        return request_id

    ran, request_id = await asyncio.gather(
        ci(url, world["dev2"].token, *REQUEST, "--image", image_id, "--wait", "--json"), reject()
    )
    assert ran.status == 3, ran.err
    assert ran.json["requestId"] == request_id
    assert (ran.json["state"], ran.json["reason"], ran.json["exitStatus"]) == (
        "REJECTED",
        "Fails the load test",
        3,
    )


async def test_request_wait_exits_6_when_nobody_answers_in_time(url, world):
    image_id = await register(url, world)
    ran = await ci(
        url, world["dev2"].token, *REQUEST, "--image", image_id, "--wait", "--timeout", "0.5", "--json"
    )
    assert ran.status == 6
    assert ran.json["state"] == "PENDING"
    assert ran.json["error"]["code"] == "TIMED_OUT"
    assert "TIMED_OUT" in ran.err


async def test_request_by_digest_names_approvers_by_email_and_a_rerun_follows_the_live_request(url, world):
    digest = fresh_digest()
    await register(url, world, digest=digest)
    args = (*REQUEST, "--digest", digest, "--approver", "approver1@example.com", "--comment", "checkout fix")
    first = await ci(url, world["dev2"].token, *args, "--json")
    assert first.status == 0, first.err
    assert (first.json["state"], first.json["existing"]) == ("PENDING", False)
    data = await world["dev2"].ok(
        "query($id: ID!) { approvalRequest(id: $id) { comment notifiedApprovers { email } } }",
        {"id": first.json["requestId"]},
    )
    assert data["approvalRequest"] == {
        "comment": "checkout fix",
        "notifiedApprovers": [{"email": "approver1@example.com"}],
    }
    rerun = await ci(url, world["dev2"].token, *args, "--json")
    assert rerun.status == 0, rerun.err
    assert (rerun.json["requestId"], rerun.json["existing"]) == (first.json["requestId"], True)

    stranger = await ci(
        url, world["dev2"].token, *REQUEST, "--digest", digest, "--approver", "viewer@example.com"
    )
    assert stranger.status == 2
    assert "viewer@example.com" in stranger.err


async def test_deploy_wait_exits_0_when_the_rollout_is_healthy(url, world):
    from greenlight import jobs

    image_id, _ = await world.approved_image()
    finishing = asyncio.Event()

    async def simulator_rounds():
        while not finishing.is_set():  # the server's periodic job, with no rollout time
            await jobs.finish_due_rollouts(0)
            await asyncio.sleep(0.1)

    rounds = asyncio.create_task(simulator_rounds())
    try:
        ran = await ci(
            url,
            world["dev"].token,
            "deploy",
            "--application",
            "shop",
            "--environment",
            "prod",
            "--image",
            image_id,
            "--wait",
            "--interval",
            "0.1",
            "--timeout",
            "30",
            "--json",
        )
    finally:
        finishing.set()
        await rounds
    assert ran.status == 0, ran.err
    assert (ran.json["status"], ran.json["imageId"]) == ("HEALTHY", image_id)
    status = await ci(url, world["viewer"].token, "status", "--application", "shop", "--environment", "prod")
    assert status.status == 0, status.err
    assert f"active image: {image_id}" in status.out
    assert f"latest deployment: {ran.json['deploymentId']} HEALTHY" in status.out


async def test_deploy_wait_exits_9_when_the_rollout_fails(url, world):
    from greenlight.models import DeploymentStatus
    from greenlight.workflow import deployments

    image_id, _ = await world.approved_image()

    async def fail():
        for _ in range(200):
            data = await world["dev"].ok(
                "query($p: ID!) { pipeline(id: $p) { activeDeployment { id } } }",
                {"p": world.ids["shop/prod"]},
            )
            active = data["pipeline"]["activeDeployment"]
            if active:
                number = int(active["id"].split(":")[1])
                await deployments.finish_rollout(number, DeploymentStatus.FAILED, message="pods crash-loop")
                return
            await asyncio.sleep(0.05)

    ran, _ = await asyncio.gather(
        ci(
            url,
            world["dev"].token,
            "deploy",
            "--application",
            "shop",
            "--environment",
            "prod",
            "--image",
            image_id,
            "--wait",
            "--interval",
            "0.1",
            "--json",
        ),
        fail(),
    )
    assert ran.status == 9, ran.err
    assert ran.json["status"] == "FAILED"
    assert ran.json["error"]["code"] == "DEPLOYMENT_FAILED"
    assert "pods crash-loop" in ran.err


async def test_deploying_an_unapproved_image_is_refused_exit_7_with_the_code(url, world):
    image_id = await register(url, world)
    deploy = ("deploy", "--application", "shop", "--environment", "prod", "--image", image_id)
    ran = await ci(url, world["dev"].token, *deploy, "--json")
    assert ran.status == 7
    assert ran.json["error"]["code"] == "NOT_APPROVED"
    assert ran.json["exitStatus"] == 7
    human = await ci(url, world["dev"].token, *deploy)
    assert human.status == 7
    assert human.out == ""
    assert "NOT_APPROVED" in human.err


async def test_a_check_a_pipeline_requires_not_passed_is_exit_7_naming_it(url, world):
    await world["admin"].ok(
        'mutation($id: ID!) { updatePipeline(id: $id, input: {requiredChecks: ["vulnerability-scan"]}) { id } }',
        {"id": world.ids["shop/staging"]},
    )
    image_id = await register(url, world)
    deploy = ("deploy", "--application", "shop", "--environment", "staging", "--image", image_id, "--json")
    ran = await ci(url, world["dev"].token, *deploy)
    assert ran.status == 7
    assert ran.json["error"]["code"] == "CHECKS_NOT_PASSED"
    assert ran.json["error"]["missingChecks"] == ["vulnerability-scan"]
    scan = ("check", "--image", image_id, "--name", "vulnerability-scan", "--status", "PASSED")
    assert (await ci(url, world["dev"].token, *scan)).status == 0
    ran = await ci(url, world["dev"].token, *deploy)
    assert ran.status == 0, ran.err
    assert ran.json["status"] == "PROGRESSING"


async def test_a_bad_token_exits_8_and_is_never_printed(url, world):
    token = "glt_" + "x" * 40
    ran = await ci(url, token, "status", "--application", "shop", "--environment", "prod", "--json")
    assert ran.status == 8
    assert ran.json["error"]["code"] == "UNAUTHENTICATED"
    assert token not in ran.out + ran.err


async def test_a_token_read_with_its_newline_works_and_a_mangled_one_is_never_printed(url, world):
    """A token from a secret file often ends in a newline: trimmed, it works; one with a
    space or a control character inside is refused as a bad argument (2) without quoting it."""
    token = world["dev"].token
    ran = await ci(url, token + "\n", "status", "--application", "shop", "--environment", "prod", "--json")
    assert ran.status == 0, ran.err
    for mangled in (token[:10] + "\n" + token[10:], token[:10] + " " + token[10:]):
        ran = await ci(url, mangled, "status", "--application", "shop", "--environment", "prod", "--json")
        assert ran.status == 2
        assert ran.json["error"]["code"] == "BAD_ARGUMENTS"
        assert token[10:] not in ran.out + ran.err


def test_a_mutation_without_an_answer_is_outcome_unknown_not_a_refusal():
    """A read timeout after a mutation was sent: it may have been made, so the CLI says
    OUTCOME_UNKNOWN (exit 1) and asks to read it back, rather than NETWORK."""
    import httpx

    from greenlight.ci.client import ERROR, Client, Failure

    def timeout(request):
        raise httpx.ReadTimeout("timed out", request=request)

    with Client("http://greenlight.test", "glt_secret", transport=httpx.MockTransport(timeout)) as client:
        with pytest.raises(Failure) as mutation:
            client.execute("mutation { registerImage(input: {}) { id } }")
        with pytest.raises(Failure) as query:
            client.execute("query { viewer { id } }")
    assert (mutation.value.code, mutation.value.exit_status) == ("OUTCOME_UNKNOWN", ERROR)
    assert query.value.code == "NETWORK"
    assert "glt_secret" not in mutation.value.message + query.value.message


async def test_missing_arguments_or_settings_exit_2(url, world):
    ran = await ci(url, world["dev"].token, "register", "--application", "shop")
    assert ran.status == 2
    assert "--repository" in ran.err
    unset = await ci(url, None, "status", "--application", "shop", "--environment", "prod")
    assert unset.status == 2
    assert "GREENLIGHT_TOKEN" in unset.err
    both = await ci(url, world["dev"].token, "request", "--application", "shop", "--environment", "prod")
    assert both.status == 2


async def test_greenlight_ci_through_the_main_command(url, world, monkeypatch, capsys):
    """`greenlight ci` is a command of `greenlight`; --url and --token override the environment."""
    monkeypatch.setenv("GREENLIGHT_URL", "http://127.0.0.1:1")
    monkeypatch.delenv("GREENLIGHT_TOKEN", raising=False)
    argv = ["ci", "status", "--url", url, "--token", world["viewer"].token, "--request", "x", "--json"]
    status = await asyncio.to_thread(cli.main, argv)
    out = json.loads(capsys.readouterr().out)
    assert status == 2
    assert out["error"]["code"] == "BAD_USER_INPUT"


async def test_the_readme_job_one_token_registers_scans_waits_for_approval_and_deploys(url, world):
    """The CI job of the README, with one CI token: register, report the scan, ask and wait
    while the approvers approve, deploy and follow the rollout to HEALTHY."""
    from greenlight import jobs

    await world["admin"].ok(
        'mutation($id: ID!) { updatePipeline(id: $id, input: {requiredChecks: ["vulnerability-scan"]}) { id } }',
        {"id": world.ids["shop/prod"]},
    )
    token = world["dev"].token
    digest = fresh_digest()
    image_id = await register(url, world, digest=digest)
    scan = ("check", "--application", "shop", "--digest", digest, "--name", "vulnerability-scan")
    assert (await ci(url, token, *scan, "--status", "PASSED")).status == 0

    async def approvers():
        request_id = await pending_request(world)
        for who in ("approver1", "approver2"):
            await world.approve(request_id, who)

    asked, _ = await asyncio.gather(ci(url, token, *REQUEST, "--digest", digest, "--wait"), approvers())
    assert asked.status == 0, asked.err
    finishing = asyncio.Event()

    async def simulator_rounds():
        while not finishing.is_set():
            await jobs.finish_due_rollouts(0)
            await asyncio.sleep(0.1)

    rounds = asyncio.create_task(simulator_rounds())
    try:
        deploy = ("deploy", "--application", "shop", "--environment", "prod", "--digest", digest)
        deployed = await ci(url, token, *deploy, "--wait", "--interval", "0.1")
    finally:
        finishing.set()
        await rounds
    assert deployed.status == 0, deployed.err
    status = await ci(url, token, "status", "--request", asked.out.strip(), "--json")
    assert (status.json["state"], status.json["imageId"]) == ("CONSUMED", image_id)


async def test_the_readme_token_limited_to_the_jobs_actions_does_the_job_and_nothing_else(url, world):
    """The token the README issues for a CI job registers, reports, asks (naming an approver)
    and reads; what it was not given is TOKEN_SCOPE, exit 7."""
    actions = ["register_image", "report_image_check", "request_approval", "deploy"]
    data = await world["dev"].ok(
        """mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }""",
        {
            "i": {
                "userId": world["dev"].user_id,
                "name": "ci-shop",
                "actions": actions,
                "applicationIds": [world.ids["shop"]],
                "ttlHours": 8760,
            }
        },
    )
    token = data["issueApiToken"]["token"]
    image_id = await register(url, world, who="dev")
    check = ("check", "--image", image_id, "--name", "vulnerability-scan", "--status", "PASSED")
    assert (await ci(url, token, *check)).status == 0
    asked = await ci(
        url, token, *REQUEST, "--image", image_id, "--approver", "approver1@example.com", "--json"
    )
    assert asked.status == 0, asked.err
    status = await ci(
        url, token, "status", "--application", "shop", "--environment", "prod", "--image", image_id
    )
    assert status.status == 0, status.err
    assert f"image {image_id} 1.4.2: PENDING ({asked.json['requestId']})" in status.out
    assert "check vulnerability-scan: PASSED" in status.out

    data = await world["dev"].ok(
        """mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }""",
        {"i": {"userId": world["dev"].user_id, "name": "ci-register", "actions": ["register_image"]}},
    )
    limited = await ci(url, data["issueApiToken"]["token"], *REQUEST, "--image", image_id, "--json")
    assert limited.status == 7
    assert limited.json["error"]["code"] == "TOKEN_SCOPE"
