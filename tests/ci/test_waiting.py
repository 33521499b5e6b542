"""A wait polls through what a retry may cure, and stops at anything else."""

from __future__ import annotations

import argparse
import io

import pytest

from greenlight.ci import commands
from greenlight.ci.client import Failure


def a_run() -> commands.Run:
    args = argparse.Namespace(timeout=60.0, interval=0.01, json=False)
    return commands.Run("request", args, commands.Io(environ={}, stdout=io.StringIO(), stderr=io.StringIO()))


def test_a_wait_polls_through_an_unavailable_server_and_the_network():
    run = a_run()
    answers = iter(
        [
            Failure("NETWORK", "cannot reach the server", 1),
            Failure("UNAVAILABLE", "the database cannot be reached right now", 1),
            ("PENDING", None),
            ("APPROVED", 0),
        ]
    )

    def poll():
        answer = next(answers)
        if isinstance(answer, Failure):
            raise answer
        return answer

    assert commands._wait(run, poll, "ApprovalRequest:1") == ("APPROVED", 0)
    err = run.io.stderr.getvalue()
    assert "UNAVAILABLE" in err and "retrying" in err
    assert "ApprovalRequest:1 is APPROVED" in err


def test_a_wait_stops_at_a_refusal():
    def poll():
        raise Failure("FORBIDDEN", "you may not see it", 7)

    with pytest.raises(Failure) as stopped:
        commands._wait(a_run(), poll, "ApprovalRequest:1")
    assert stopped.value.code == "FORBIDDEN"
