"""The realistic mix (bench/mix.py) and the naive server (bench/naive) against a real
Greenlight server on a small seeded SQLite world: the mix's users really see different
things (each its own applications, its own Select Image, its own pending requests, only
those it may approve), and the naive server answers each user's questions exactly as
Greenlight does (the same JSON), and approveRequest with the same shape."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench import load, mix
from bench.config import parse
from bench.queries import APPROVE_REQUEST, encode
from bench.run import database, post, server, wait_ready
from bench.world import PAGE

SIZES = [
    "--applications",
    "12",
    "--environments",
    "3",
    "--images",
    "1200",
    "--requests",
    "400",
    "--bindings",
    "300",
    "--users",
    "30",
]


def _shape(value):
    """The keys and nesting of an answer, without its values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_mix_users_see_their_own_and_the_naive_server_answers_the_same(tmp_path):
    options = parse([*SIZES, "--data-dir", str(tmp_path)])
    with database("sqlite", options) as (url, world, _how):
        world_mix = world.mix_world()
        env = {
            **os.environ,
            "GREENLIGHT_DATABASE_URL": url,
            "GREENLIGHT_MUTATIONS_PER_MINUTE": "0",
            "GREENLIGHT_ENV_FILE": "",
        }
        logs = {name: tmp_path / f"{name}.log" for name in ("greenlight", "naive")}
        with (
            server("greenlight", env, logs["greenlight"]) as gl,
            server("naive", env, logs["naive"]) as naive,
        ):
            select = mix.read_variants("select", world_mix)
            pending = mix.read_variants("pending", world_mix)
            for port, name in ((gl, "greenlight"), (naive, "naive")):
                wait_ready(port, select[0][1].encode(), select[0][0], logs[name])
            selects, pendings = set(), set()
            for user, (token, s_body), (_, p_body) in zip(world_mix.users, select, pending, strict=True):
                images = post(gl, s_body.encode(), token)
                assert images == post(naive, s_body.encode(), token), user.email
                listed = images["pipeline"]["deployableImages"]
                assert len(listed) == user.select_images >= 40, user
                assert all(i["approvalState"] == "APPROVED" for i in listed)
                selects.add(json.dumps(images))

                requests = post(gl, p_body.encode(), token)
                assert requests == post(naive, p_body.encode(), token), user.email
                edges = requests["approvalRequests"]["edges"]
                assert len(edges) == min(PAGE, user.pending) == PAGE, user
                for edge in edges:
                    node = edge["node"]
                    assert node["state"] == "PENDING"
                    assert node["pipeline"]["application"]["name"] in user.applications
                    assert node["requestedBy"]["email"] != user.email
                    assert user.email not in {a["user"]["email"] for a in node["approvals"]}
                pendings.add(json.dumps(requests))
            # 11 applications the benchmark user cannot see, 50 users on them: 11 views.
            assert len({tuple(u.applications) for u in world_mix.users}) == 11
            assert len(selects) == 11
            assert len(pendings) == 11

            # approveRequest: the same answer's shape from both, each approving its own request
            user_index, first_id = world_mix.approvals[0]
            second = next(e for e in world_mix.approvals[1:] if e[0] == user_index and e[1] != first_id)
            token = world_mix.users[user_index].token
            answers = [
                post(port, encode(APPROVE_REQUEST, {"id": f"ApprovalRequest:{rid}"}), token)
                for port, rid in ((gl, first_id), (naive, second[1]))
            ]
            assert _shape(answers[0]) == _shape(answers[1])
            for answer in answers:
                emails = {a["user"]["email"] for a in answer["approveRequest"]["approvals"]}
                assert world_mix.users[user_index].email in emails


def test_the_mix_supplies_are_each_used_once():
    options = parse(SIZES)
    from bench.world import generate

    _tables, world = generate(options.sizes)
    world_mix = world.mix_world()
    assert len(set(world_mix.approvals)) == len(world_mix.approvals)
    pairs = [(p, i) for _, p, i in world_mix.requests]
    assert len(set(pairs)) == len(pairs)
    supply = mix.Supply(world_mix)
    reserved = supply.reserve("approve", 10)
    assert len(reserved) == 10
    assert len(supply.approvals) == len(world_mix.approvals) - 10
    assert Path(mix.__file__).exists()


def test_ratios_are_taken_round_by_round():
    def row(server, figures):
        rounds = [
            mix.Round(n, load.Result(requests=int(rps * 2), errors=0, seconds=2.0, p50_ms=1.0, p99_ms=2.0))
            for n, rps in figures
        ]
        return mix.MixRow("select", "sqlite", server, rounds)

    greenlight = row("greenlight", [(1, 300), (2, 100), (3, 200)])
    baseline = row("baseline", [(1, 100), (2, 100), (3, 50)])
    naive = row("naive", [(1, 100), (3, 20)])  # its round 2 did not run
    assert mix.ratios(greenlight, baseline) == [3.0, 1.0, 4.0]
    assert mix.ratios(greenlight, naive) == [3.0, 10.0]
    assert mix.spread(mix.ratios(greenlight, baseline)) == "1.00 / 3.00 / 4.00x"
    assert greenlight.median("rps") == 200
