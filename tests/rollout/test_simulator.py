"""The built-in rollout simulator (R23): each strategy's steps over the rollout
time, failure injection, supersession, a restart mid-rollout, refused configuration, and a
rollback under the same approval rules."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from greenlight.app import create_app
from greenlight.config import Settings
from greenlight.jobs import finish_due_rollouts
from greenlight.models import ApprovalRequest, ApprovalState, AuditEvent, Deployment, DeploymentStatus
from greenlight.rollout import simulator
from tests.conftest import Client

GREENLIGHT = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "greenlight"
if not GREENLIGHT.exists():  # pragma: no cover - another virtualenv layout
    GREENLIGHT = Path(sys.executable).parent / "greenlight"

ROLLOUT_SECONDS = 90.0

CREATE_ENVIRONMENT = "mutation($n: String!) { createEnvironment(name: $n) { id } }"
CREATE_PIPELINE = """mutation($i: CreatePipelineInput!) {
  createPipeline(input: $i) { id strategy approvalPolicy { requiredApprovals } }
}"""
DEPLOY = """mutation($i: DeployImageInput!) {
  deployImage(input: $i) { id status strategy message finishedAt steps { name status } }
}"""
DEPLOYMENT = """query($id: ID!) {
  deployment(id: $id) { id status strategy message startedAt finishedAt steps { name status } }
}"""
PIPELINE = """query($p: ID!) {
  pipeline(id: $p) {
    activeImage { id }
    deployableImages { id }
    deployments(first: 20) { edges { node { id status image { id } } } }
  }
}"""

# How many steps each strategy plays ("canary 10%, 50%, 100%").
STEP_COUNTS = {"ROLLING": 1, "RECREATE": 2, "BLUE_GREEN": 3, "CANARY": 3}
CANARY_STEPS = ["canary 10%", "canary 50%", "canary 100%"]


@pytest.fixture
def settings(request, database_url) -> Settings:
    """This module's settings; a test may override fields with
    `@pytest.mark.parametrize("settings", [{...}], indirect=True)`."""
    overrides = getattr(request, "param", {})
    return Settings(
        database_url=database_url, background_jobs=False, rollout_seconds=ROLLOUT_SECONDS, **overrides
    )


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


async def strategy_pipeline(world, strategy: str, required_approvals: int = 0) -> str:
    """A new shop pipeline (on an environment of its own) with `strategy`; returns its id."""
    name = f"env-{strategy.lower().replace('_', '-')}"
    env = (await world["admin"].ok(CREATE_ENVIRONMENT, {"n": name}))["createEnvironment"]["id"]
    data = await world["admin"].ok(
        CREATE_PIPELINE,
        {
            "i": {
                "applicationId": world.ids["shop"],
                "environmentId": env,
                "strategy": strategy,
                "requiredApprovals": required_approvals,
            }
        },
    )
    assert data["createPipeline"]["strategy"] == strategy
    world.ids[f"shop/{name}"] = data["createPipeline"]["id"]
    return f"shop/{name}"


async def deploy(world, pipeline: str, who: str = "dev") -> dict:
    image = await world.register_image("dev")
    data = await world[who].ok(DEPLOY, {"i": {"pipelineId": world.ids[pipeline], "imageId": image}})
    return data["deployImage"]


async def read(world, deployment_id: str, who: str = "viewer") -> dict:
    return (await world[who].ok(DEPLOYMENT, {"id": deployment_id}))["deployment"]


async def started_ago(deployment_id: str, seconds: float) -> None:
    """Moves time: the deployment started `seconds` ago."""
    at = datetime.now(UTC) - timedelta(seconds=seconds)
    await Deployment.filter(id=pk(deployment_id)).update(started_at=at)


def statuses(deployment: dict) -> list[str]:
    return [step["status"] for step in deployment["steps"]]


def expected_progress(count: int, elapsed: float) -> list[str]:
    """DONE for the steps whose share of the rollout time has passed, RUNNING for the
    current one, PENDING after it."""
    per_step = ROLLOUT_SECONDS / count
    current = min(int(elapsed // per_step), count - 1)
    return ["DONE"] * current + ["RUNNING"] + ["PENDING"] * (count - current - 1)


class ScriptedRandom:
    """Stands in for the simulator's random source, to pick an outcome deterministically."""

    def __init__(self, values: list[float], index: int = 0) -> None:
        self.values = list(values)
        self.index = index

    def random(self) -> float:
        return self.values.pop(0) if self.values else 0.0

    def randrange(self, n: int) -> int:
        return min(self.index, n - 1)


# --- each strategy's path -------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["ROLLING", "RECREATE", "BLUE_GREEN", "CANARY"])
async def test_r23_each_strategy_steps_through_its_rollout_then_ends_healthy(world, strategy):
    pipeline = await strategy_pipeline(world, strategy)
    count = STEP_COUNTS[strategy]
    started = await deploy(world, pipeline)
    assert started["status"] == "PROGRESSING"
    assert started["strategy"] == strategy
    assert started["finishedAt"] is None
    assert len(started["steps"]) == count
    names = [step["name"] for step in started["steps"]]
    assert all(names) and len(set(names)) == count
    if strategy == "CANARY":
        assert names == CANARY_STEPS
    assert statuses(started) == ["RUNNING"] + ["PENDING"] * (count - 1)

    # Time passes: the middle of each step in turn.
    per_step = ROLLOUT_SECONDS / count
    for step in range(count):
        elapsed = per_step * step + per_step / 2
        await started_ago(started["id"], elapsed)
        # Not due yet: the rollout time fixed at start has not passed.
        assert await finish_due_rollouts() == 0
        now = await read(world, started["id"])
        assert now["status"] == "PROGRESSING", elapsed
        assert [s["name"] for s in now["steps"]] == names
        assert statuses(now) == expected_progress(count, elapsed), elapsed
        assert statuses(now)[step] == "RUNNING"

    await started_ago(started["id"], ROLLOUT_SECONDS + 1)
    assert await finish_due_rollouts() == 1
    done = await read(world, started["id"])
    assert done["status"] == "HEALTHY"
    assert done["finishedAt"] is not None
    assert done["message"] is None
    assert statuses(done) == ["DONE"] * count
    row = await Deployment.get(id=pk(started["id"]))
    assert row.status == DeploymentStatus.HEALTHY
    assert row.finished_at is not None
    # The system ended it: one audit event, no actor.
    events = await AuditEvent.filter(object_type="Deployment", object_id=row.id, action="deployment_healthy")
    assert len(events) == 1 and events[0].actor_id is None
    assert await finish_due_rollouts(0) == 0


async def test_r23_rollout_is_not_finished_before_its_time(world):
    pipeline = await strategy_pipeline(world, "CANARY")
    started = await deploy(world, pipeline)
    await started_ago(started["id"], ROLLOUT_SECONDS - 5)
    assert await finish_due_rollouts() == 0
    assert (await Deployment.get(id=pk(started["id"]))).status == DeploymentStatus.PROGRESSING
    # An explicit (shorter) rollout time ends it.
    assert await finish_due_rollouts(10) == 1
    assert (await read(world, started["id"]))["status"] == "HEALTHY"


# --- failure injection ------------------------------------------------------------------


@pytest.mark.parametrize("settings", [{"simulator_failure_rate": 1.0}], indirect=True)
async def test_r23_failure_rate_one_ends_every_rollout_degraded_or_failed(world):
    pipeline = await strategy_pipeline(world, "CANARY")
    for _ in range(6):
        started = await deploy(world, pipeline)
        assert await finish_due_rollouts(0) == 1
        done = await read(world, started["id"])
        assert done["status"] in ("DEGRADED", "FAILED")
        assert done["message"], "a failed rollout says what went wrong"
        assert done["finishedAt"] is not None
        steps = statuses(done)
        assert len(steps) == 3
        if done["status"] == "FAILED":
            failed = steps.index("FAILED")
            assert steps == ["DONE"] * failed + ["FAILED"] + ["SKIPPED"] * (2 - failed)
        else:
            assert "RUNNING" not in steps and "PENDING" not in steps
        row = await Deployment.get(id=pk(started["id"]))
        assert row.status == DeploymentStatus(done["status"])
        assert row.message == done["message"]


@pytest.mark.parametrize("settings", [{"simulator_failure_rate": 1.0}], indirect=True)
async def test_r23_failed_rollout_shows_the_failed_step_and_skips_the_rest(world, monkeypatch):
    pipeline = await strategy_pipeline(world, "BLUE_GREEN")
    healthy = await deploy(world, pipeline)
    monkeypatch.setattr(simulator, "_rng", ScriptedRandom([1.0]))  # 1.0 >= any rate: healthy
    assert await finish_due_rollouts(0) == 1
    assert (await read(world, healthy["id"]))["status"] == "HEALTHY"

    # Fails, not degraded, at the middle step.
    monkeypatch.setattr(simulator, "_rng", ScriptedRandom([0.0, 0.9], index=1))
    started = await deploy(world, pipeline)
    assert await finish_due_rollouts(0) == 1
    done = await read(world, started["id"])
    assert done["status"] == "FAILED"
    assert statuses(done) == ["DONE", "FAILED", "SKIPPED"]
    assert done["message"] and done["steps"][1]["name"] in done["message"]
    assert done["finishedAt"] is not None
    # A FAILED rollout is not active: the older HEALTHY one is (R23).
    view = (await world["dev"].ok(PIPELINE, {"p": world.ids[pipeline]}))["pipeline"]
    image = (await Deployment.get(id=pk(healthy["id"]))).image_id
    assert view["activeImage"] == {"id": f"Image:{image}"}
    events = await AuditEvent.filter(object_type="Deployment", object_id=pk(started["id"]))
    assert [e.action for e in events] == ["deploy", "deployment_failed"]
    assert events[1].actor_id is None
    assert events[1].after["status"] == "FAILED"


@pytest.mark.parametrize("settings", [{"simulator_failure_rate": 1.0}], indirect=True)
async def test_r23_degraded_rollout_has_every_step_done_and_a_message(world, monkeypatch):
    pipeline = await strategy_pipeline(world, "CANARY")
    monkeypatch.setattr(simulator, "_rng", ScriptedRandom([0.0, 0.1]))
    started = await deploy(world, pipeline)
    assert await finish_due_rollouts(0) == 1
    done = await read(world, started["id"])
    assert done["status"] == "DEGRADED"
    assert statuses(done) == ["DONE", "DONE", "DONE"]
    assert done["message"]
    assert (await Deployment.get(id=pk(started["id"]))).status == DeploymentStatus.DEGRADED


@pytest.mark.parametrize("settings", [{"simulator_failure_rate": 0.0}], indirect=True)
async def test_r23_failure_rate_zero_always_ends_healthy(world, monkeypatch):
    # Even the draw most likely to fail (0.0) ends HEALTHY at rate 0.
    monkeypatch.setattr(simulator, "_rng", ScriptedRandom([0.0] * 50))
    for strategy in STEP_COUNTS:
        pipeline = await strategy_pipeline(world, strategy)
        for _ in range(2):
            started = await deploy(world, pipeline)
            assert await finish_due_rollouts(0) == 1
            done = await read(world, started["id"])
            assert done["status"] == "HEALTHY", strategy
            assert statuses(done) == ["DONE"] * STEP_COUNTS[strategy]
            assert done["message"] is None
    assert await Deployment.exclude(status=DeploymentStatus.HEALTHY).count() == 0


# --- supersession ------------------------------------------------------------------------


async def test_r23_second_deploy_supersedes_the_progressing_one_which_is_never_finished(world):
    pipeline = await strategy_pipeline(world, "CANARY")
    first = await deploy(world, pipeline)
    await started_ago(first["id"], ROLLOUT_SECONDS / 2)  # at "canary 50%"
    second = await deploy(world, pipeline)
    assert second["status"] == "PROGRESSING"

    old = await read(world, first["id"])
    assert old["status"] == "SUPERSEDED"
    assert old["finishedAt"] is not None
    # Done steps stay done; nothing is left running or pending.
    assert statuses(old) == ["DONE", "SKIPPED", "SKIPPED"]
    assert (await Deployment.get(id=pk(first["id"]))).status == DeploymentStatus.SUPERSEDED

    await started_ago(first["id"], ROLLOUT_SECONDS * 10)
    await started_ago(second["id"], ROLLOUT_SECONDS + 1)
    assert await finish_due_rollouts() == 1
    assert (await read(world, first["id"]))["status"] == "SUPERSEDED"
    assert (await read(world, second["id"]))["status"] == "HEALTHY"
    assert await finish_due_rollouts(0) == 0

    healthy = await AuditEvent.filter(action="deployment_healthy").values_list("object_id", flat=True)
    assert healthy == [pk(second["id"])]
    superseded = await AuditEvent.filter(action="deployment_superseded").values_list("object_id", flat=True)
    assert superseded == [pk(first["id"])]
    assert (await Deployment.get(id=pk(first["id"]))).status == DeploymentStatus.SUPERSEDED


# --- restart mid-rollout ------------------------------------------------------------------


async def test_r23_restart_mid_rollout_finishes_with_the_rollout_time_fixed_at_start(world, settings):
    """A new process (a second app) finishes what the first started, on the rollout time
    each deployment fixed when it started, whatever the new process is configured with."""
    canary = await strategy_pipeline(world, "CANARY")
    rolling = await strategy_pipeline(world, "ROLLING")
    due = await deploy(world, rolling)  # started long enough ago to be due
    mid = await deploy(world, canary)  # half-way through its 90 s
    await started_ago(due["id"], ROLLOUT_SECONDS + 5)
    await started_ago(mid["id"], ROLLOUT_SECONDS / 2)

    # A restarted process configured with a much longer rollout time.
    slow = replace(settings, rollout_seconds=3600)
    app = create_app(slow, manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://greenlight.test") as http:
        viewer = Client(http, world["viewer"].token)
        assert await finish_due_rollouts() == 1
        data = (await viewer.ok(DEPLOYMENT, {"id": due["id"]}))["deployment"]
        assert data["status"] == "HEALTHY"
        assert statuses(data) == ["DONE"]
        data = (await viewer.ok(DEPLOYMENT, {"id": mid["id"]}))["deployment"]
        assert data["status"] == "PROGRESSING"
        assert statuses(data) == ["DONE", "RUNNING", "PENDING"]

    # Another restart, configured with a much shorter rollout time: the one in progress
    # keeps its 90 s, so it is neither finished early nor shown further along.
    fast = replace(settings, rollout_seconds=10)
    app = create_app(fast, manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://greenlight.test") as http:
        viewer = Client(http, world["viewer"].token)
        dev = Client(http, world["dev"].token)
        assert await finish_due_rollouts() == 0
        data = (await viewer.ok(DEPLOYMENT, {"id": mid["id"]}))["deployment"]
        assert data["status"] == "PROGRESSING"
        assert statuses(data) == ["DONE", "RUNNING", "PENDING"]
        assert (await Deployment.get(id=pk(mid["id"]))).rollout_seconds == ROLLOUT_SECONDS

        # A deployment started by this process fixes this process's time.
        image = await world.register_image("dev")
        data = await dev.ok(DEPLOY, {"i": {"pipelineId": world.ids[rolling], "imageId": image}})
        fresh = data["deployImage"]
        assert (await Deployment.get(id=pk(fresh["id"]))).rollout_seconds == 10

        await started_ago(mid["id"], ROLLOUT_SECONDS + 1)
        await started_ago(fresh["id"], 11)
        assert await finish_due_rollouts() == 2
        for deployment in (mid, fresh):
            data = (await viewer.ok(DEPLOYMENT, {"id": deployment["id"]}))["deployment"]
            assert data["status"] == "HEALTHY"
            assert set(statuses(data)) == {"DONE"}
    healthy = await AuditEvent.filter(action="deployment_healthy").values_list("object_id", flat=True)
    assert sorted(healthy) == sorted(pk(d["id"]) for d in (due, mid, fresh))


# --- `greenlight serve` refuses bad configuration ---------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "variables, named",
    [
        ({"GREENLIGHT_DEPLOYER": "bogus"}, "GREENLIGHT_DEPLOYER"),
        ({"GREENLIGHT_SIMULATOR_FAILURE_RATE": "2"}, "GREENLIGHT_SIMULATOR_FAILURE_RATE"),
        ({"GREENLIGHT_SIMULATOR_FAILURE_RATE": "-0.5"}, "GREENLIGHT_SIMULATOR_FAILURE_RATE"),
        ({"GREENLIGHT_SIMULATOR_FAILURE_RATE": "often"}, "GREENLIGHT_SIMULATOR_FAILURE_RATE"),
        ({"GREENLIGHT_ROLLOUT_SECONDS": "soon"}, "GREENLIGHT_ROLLOUT_SECONDS"),
        ({"GREENLIGHT_DEPLOYER": "webhook"}, "GREENLIGHT_DEPLOY_WEBHOOK_URL"),
        (
            {"GREENLIGHT_DEPLOYER": "webhook", "GREENLIGHT_DEPLOY_WEBHOOK_URL": "http://127.0.0.1:9/hook"},
            "GREENLIGHT_DEPLOY_WEBHOOK_SECRET",
        ),
    ],
)
def test_serve_refuses_bad_configuration_naming_the_variable(tmp_path, variables, named):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    database = tmp_path / "refused.sqlite3"
    env["GREENLIGHT_DATABASE_URL"] = f"sqlite://{database}"
    env.update(variables)
    try:
        run = subprocess.run(
            [str(GREENLIGHT), "serve", "--port", str(free_port())],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"greenlight serve started with {variables}")
    assert run.returncode != 0
    assert named in run.stderr, run.stderr
    # Refused before touching the database.
    assert not database.exists()


# --- R23: rollback is deploying an earlier image again, under the same rules ----------


async def test_r23_rollback_to_an_earlier_image_needs_a_new_approval(world):
    a, request_a = await world.approved_image()
    first = await world.deploy(a)
    assert await finish_due_rollouts(0) == 1
    b, _ = await world.approved_image()
    second = await world.deploy(b)
    assert await finish_due_rollouts(0) == 1
    view = (await world["dev"].ok(PIPELINE, {"p": world.ids["shop/prod"]}))["pipeline"]
    assert view["activeImage"] == {"id": b}
    assert view["deployableImages"] == []  # a's approval was used (R19, R20)

    # The earlier approval was consumed: rolling back needs a new one.
    error = await world["dev"].fails(DEPLOY, {"i": {"pipelineId": world.ids["shop/prod"], "imageId": a}})
    assert error["extensions"]["code"] == "NOT_APPROVED"
    assert (await ApprovalRequest.get(id=pk(request_a))).state == ApprovalState.CONSUMED

    # a is older than the active b, so the new request is stale: each approval
    # and the deploy say they mean it.
    again = await world.request_approval(a, who="dev2")
    assert again != request_a
    await world.approve(again, "approver1", acknowledge_stale=True)
    error = await world["dev"].fails(DEPLOY, {"i": {"pipelineId": world.ids["shop/prod"], "imageId": a}})
    assert error["extensions"]["code"] == "NOT_APPROVED"  # partial approval (R12)
    await world.approve(again, "approver2", acknowledge_stale=True)
    view = (await world["dev"].ok(PIPELINE, {"p": world.ids["shop/prod"]}))["pipeline"]
    assert view["deployableImages"] == [{"id": a}]

    error = await world["dev"].fails(DEPLOY, {"i": {"pipelineId": world.ids["shop/prod"], "imageId": a}})
    assert error["extensions"]["code"] == "STALE_IMAGE"
    rollback = await world.deploy(a, acknowledge_stale=True)
    assert rollback["status"] == "PROGRESSING"
    assert rollback["id"] not in (first["id"], second["id"])
    assert (await ApprovalRequest.get(id=pk(again))).state == ApprovalState.CONSUMED
    view = (await world["dev"].ok(PIPELINE, {"p": world.ids["shop/prod"]}))["pipeline"]
    assert view["activeImage"] == {"id": a}
    assert await finish_due_rollouts(0) == 1
    view = (await world["dev"].ok(PIPELINE, {"p": world.ids["shop/prod"]}))["pipeline"]
    assert view["activeImage"] == {"id": a}
    assert [
        (e["node"]["id"], e["node"]["status"], e["node"]["image"]["id"]) for e in view["deployments"]["edges"]
    ] == [
        (rollback["id"], "HEALTHY", a),
        (second["id"], "HEALTHY", b),
        (first["id"], "HEALTHY", a),
    ]
    row = await Deployment.get(id=pk(rollback["id"]))
    assert row.approval_request_id == pk(again)
