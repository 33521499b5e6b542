"""Result size and time: an operation whose answer could hold more objects than
GREENLIGHT_MAX_QUERY_COST is QUERY_TOO_COMPLEX before anything runs (list sizes multiply;
fragments and variables count), and one that runs longer than
GREENLIGHT_OPERATION_TIMEOUT_SECONDS is abandoned as OPERATION_TIMEOUT, a mutation in progress
rolled back, while /healthz keeps answering."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from graphql import FragmentDefinitionNode, GraphQLSyntaxError, OperationDefinitionNode, parse, print_ast

from greenlight.api import schema
from greenlight.config import ConfigError, Settings
from greenlight.limits.cost import cost_of
from greenlight.models import Application
from greenlight.workflow import audit, reads

README = Path(__file__).resolve().parents[2] / "README.md"

# The review's query: a viewer's nested pages, 31,800 objects in 40 s.
INCIDENT = """query($app: ID!) { images(applicationId: $app, first: 100) { edges { node {
  application { pipelines { deployments(first: 100) { edges { node { id image { tag } } } } } } } } } }"""
PAGED = """query($app: ID!, $n: Int) { images(applicationId: $app, first: $n) {
  edges { node { id builtBy { email } application { name } } } } }"""


@pytest.fixture
def overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings(database_url, overrides) -> Settings:
    return Settings(
        **{"database_url": database_url, "background_jobs": False, "mutations_per_minute": 0, **overrides}
    )


def limits(**values: Any):
    label = ",".join(f"{k}={v}" for k, v in values.items())
    return pytest.mark.parametrize("overrides", [pytest.param(values, id=label)])


async def test_query_cost_the_reviews_nested_pages_are_refused_before_running(world, monkeypatch):
    ran = []
    real = reads.images

    async def spy(*args, **kwargs):
        ran.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(reads, "images", spy)
    body = await world["viewer"].execute(INCIDENT, {"app": world.ids["shop"]})
    error = body["errors"][0]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["limit"] == Settings().max_query_cost == 25000
    assert error["extensions"]["cost"] > 200_000
    assert str(error["extensions"]["cost"]) in error["message"]
    assert body.get("data") is None
    assert ran == []  # refused before any resolver ran


@limits(max_query_cost=61)
@pytest.mark.parametrize(("first", "allowed"), [(15, True), (20, False), (None, False), (100, False)])
async def test_query_cost_first_as_a_variable_uses_its_value(world, first, allowed):
    """1 connection + per item: an edge, a node, builtBy, application = 1 + 4n; 15 -> 61.
    Left out, `first` is its default (20)."""
    variables = {"app": world.ids["shop"]}
    if first is not None:
        variables["n"] = first
    body = await world["viewer"].execute(PAGED, variables)
    if allowed:
        assert "errors" not in body, body
    else:
        extensions = body["errors"][0]["extensions"]
        assert extensions["code"] == "QUERY_TOO_COMPLEX"
        assert extensions["cost"] == 1 + 4 * (first or 20)
        assert extensions["limit"] == 61


@limits(max_query_cost=61)
async def test_query_cost_a_variables_default_counts_when_left_out(world):
    query = PAGED.replace("$n: Int)", "$n: Int = 40)")
    extensions = (await world["viewer"].fails(query, {"app": world.ids["shop"]}))["extensions"]
    assert extensions == {"code": "QUERY_TOO_COMPLEX", "cost": 161, "limit": 61}


@limits(max_query_cost=300)
@pytest.mark.parametrize(
    "query",
    [
        pytest.param(
            "query($a: ID!) { ...Pages } fragment Pages on Query { images(applicationId: $a, first: 100)"
            " { edges { node { ...Built } } } } fragment Built on Image { builtBy { email } application { name } }",
            id="fragment-spreads",
        ),
        pytest.param(
            "query($a: ID!) { ... on Query { images(applicationId: $a, first: 100) { edges { node {"
            " ... on Image { builtBy { email } application { name } } } } } } }",
            id="inline-fragments",
        ),
        pytest.param(
            "query($a: ID!) { a: images(applicationId: $a, first: 50) { edges { node { id } } }"
            " b: images(applicationId: $a, first: 50) { edges { node { id } } }"
            " c: images(applicationId: $a, first: 60) { edges { node { id } } } }",
            id="aliases-add-up",
        ),
    ],
)
async def test_query_cost_fragments_and_aliases_cannot_hide_cost(world, query):
    error = await world["viewer"].fails(query, {"a": world.ids["shop"]})
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["cost"] > 300


@limits(max_query_cost=83)
async def test_query_cost_at_the_limit_runs(world):
    """The README's pipeline page costs 83 (its two unpaged lists count 10 each, the
    deployments page 20 edges, nodes and images): at a limit of 83 it runs."""
    query = """query($p: ID!) { pipeline(id: $p) { activeImage { tag activeOn { name } }
      deployableImages { id } deployments { totalCount edges { node { status image { tag } } } } } }"""
    data = await world["viewer"].ok(query, {"p": world.ids["shop/prod"]})
    assert data["pipeline"]["deployments"]["totalCount"] == 0


def test_query_cost_every_query_of_the_readme_is_well_under_the_default():
    """The worked example and every other query the README shows cost at most a tenth of
    the default limit: the limit refuses only answers far larger than ordinary use."""
    limit = Settings().max_query_cost
    blocks = re.findall(r"```graphql\n(.*?)```", README.read_text(), re.S)
    assert blocks
    costs = {}
    for block in blocks:
        text = re.sub(r"#[^\n]*", "", block)
        try:
            document = parse(text)
        except GraphQLSyntaxError:  # a snippet of a selection, not a whole operation
            continue
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        for operation in document.definitions:
            if isinstance(operation, OperationDefinitionNode):
                where = " ".join(print_ast(operation).split())[:70]
                costs[f"{len(costs)}: {where}"] = cost_of(schema._schema, operation, fragments, {})
    assert len(costs) >= 20 and max(costs.values()) <= limit // 10, costs


def test_query_cost_and_time_limit_are_configurable_and_checked():
    settings = Settings.from_env(
        {"GREENLIGHT_MAX_QUERY_COST": "250", "GREENLIGHT_OPERATION_TIMEOUT_SECONDS": "2.5"}
    )
    assert (settings.max_query_cost, settings.operation_timeout_seconds) == (250, 2.5)
    assert Settings.from_env({}).operation_timeout_seconds == 20
    for name, value in (("GREENLIGHT_MAX_QUERY_COST", "0"), ("GREENLIGHT_OPERATION_TIMEOUT_SECONDS", "-1")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})


@limits(operation_timeout_seconds=0.5)
async def test_operation_timeout_abandons_a_slow_query_and_healthz_answers_meanwhile(world, monkeypatch):
    started = asyncio.Event()

    async def stuck(actor, *_):
        started.set()
        await asyncio.sleep(60)

    monkeypatch.setattr(reads, "applications", stuck)
    slow = asyncio.create_task(world["viewer"].execute("{ applications { id } }"))
    await started.wait()
    health = await world.http.get("/healthz")
    assert health.status_code == 200
    assert not slow.done()  # /healthz answered while the operation was still running
    body = await slow
    error = body["errors"][0]
    assert error["extensions"]["code"] == "OPERATION_TIMEOUT"
    assert error["extensions"]["timeoutSeconds"] == 0.5
    assert body.get("data") is None


@limits(operation_timeout_seconds=0.5)
async def test_operation_timeout_rolls_back_the_mutation_in_progress(world, monkeypatch, unchanged):
    real = audit.record

    async def slow_record(*args, **kwargs):
        await real(*args, **kwargs)  # the application row and its audit event are written
        await asyncio.sleep(60)  # ... and the transaction has not committed

    monkeypatch.setattr(audit, "record", slow_record)
    async with unchanged():
        error = await world["admin"].fails('mutation { createApplication(name: "late") { id } }')
    assert error["extensions"]["code"] == "OPERATION_TIMEOUT"
    assert "rolled back" in error["message"]
    assert not await Application.exists(name="late")
    monkeypatch.setattr(audit, "record", real)
    data = await world["admin"].ok('mutation { createApplication(name: "late") { id name } }')
    assert data["createApplication"]["name"] == "late"  # nothing was left half-written


async def test_operation_timeout_default_lets_ordinary_operations_run(world):
    data = await world["viewer"].ok("{ applications { name pipelines { environment { name } } } }")
    assert {a["name"] for a in data["applications"]} == {"shop"}
