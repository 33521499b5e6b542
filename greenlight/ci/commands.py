"""`greenlight ci ...`: what a CI job does with Greenlight, over the public GraphQL API.

register, check, request [--wait], deploy [--wait] and status. The server's address and
the API token come from GREENLIGHT_URL and GREENLIGHT_TOKEN (or --url and --token). The
id a command makes is printed alone on standard output, so `$(greenlight ci ...)` captures
it; progress and errors go to standard error; --json prints one JSON object instead. The
exit status says how it ended (README: "Greenlight in a CI pipeline").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from greenlight.ci.client import (
    BAD_ARGUMENTS,
    CANCELLED,
    DEPLOYMENT_FAILED,
    ERROR,
    EXPIRED,
    OK,
    REFUSED,
    REJECTED,
    TIMED_OUT,
    TRANSIENT_CODES,
    Client,
    Failure,
)

REGISTER = """mutation($i: RegisterImageInput!) { registerImage(input: $i) { id tag digest } }"""
CHECK = """mutation($i: ReportImageCheckInput!) {
  reportImageCheck(input: $i) { id name status reportedAt }
}"""
PIPELINE_FOR = """query($a: String!, $e: String!) {
  pipelineFor(application: $a, environment: $e) { id application { id name } environment { name } }
}"""
APPLICATIONS = """{ applications { id name } }"""
IMAGES = """query($a: ID!, $after: String) {
  images(applicationId: $a, first: 100, after: $after) {
    edges { node { id digest } } pageInfo { hasNextPage endCursor }
  }
}"""
APPROVERS = """query($p: ID!, $i: ID!) { eligibleApprovers(pipelineId: $p, imageId: $i) { id email } }"""
REQUEST = """mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id state progress } }"""
REQUEST_STATE = """query($id: ID!) {
  approvalRequest(id: $id) {
    id state progress expiresAt requiredApprovals
    image { id tag digest }
    pipeline { id application { name } environment { name } }
    approvals { user { email } }
    rejection { comment user { email } }
  }
}"""
DEPLOY = """mutation($i: DeployImageInput!) { deployImage(input: $i) { id status } }"""
DEPLOYMENT_STATE = """query($id: ID!) {
  deployment(id: $id) {
    id status message startedAt finishedAt
    image { id tag digest }
    pipeline { id application { name } environment { name } }
  }
}"""
PIPELINE_STATE = """query($a: String!, $e: String!) {
  pipelineFor(application: $a, environment: $e) {
    id frozenUntil
    application { id name } environment { name }
    approvalPolicy { requiredApprovals }
    activeImage { id tag digest }
    deployments(first: 1) { edges { node { id status image { id tag } } } }
  }
}"""
IMAGE_ON_PIPELINE = """query($id: ID!, $p: ID!) {
  node(id: $id) {
    ... on Image {
      id tag digest approvalState(pipelineId: $p)
      approvalRequests(pipelineId: $p) { id state }
      checks { name status }
    }
  }
}"""

# How a request's wait ends, by its state: CONSUMED was approved, and deployed since.
REQUEST_ENDS = {
    "APPROVED": OK,
    "CONSUMED": OK,
    "REJECTED": REJECTED,
    "EXPIRED": EXPIRED,
    "CANCELLED": CANCELLED,
}
# How a deployment's wait ends: anything but HEALTHY is a rollout that did not come good.
DEPLOYMENT_ENDS = {
    "HEALTHY": OK,
    "FAILED": DEPLOYMENT_FAILED,
    "DEGRADED": DEPLOYMENT_FAILED,
    "SUPERSEDED": DEPLOYMENT_FAILED,
}


@dataclass
class Io:
    """Where a command reads its environment and writes; the process's own by default."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    sleep: Callable[[float], None] = time.sleep


class Run:
    """One command's run: its result, built up as it goes, and how it is reported."""

    def __init__(self, command: str, args: argparse.Namespace, io: Io):
        self.command = command
        self.args = args
        self.io = io
        self.result: dict[str, Any] = {"command": command}

    def note(self, line: str) -> None:
        """Progress, on standard error (standard output keeps only the result)."""
        if not self.args.json:
            print(f"greenlight ci {self.command}: {line}", file=self.io.stderr, flush=True)

    def finish(self, exit_status: int, line: str | None = None, error: Failure | None = None) -> int:
        self.result["exitStatus"] = exit_status
        if error is not None:
            self.result["error"] = {"code": error.code, "message": error.message, **_details(error)}
            print(f"greenlight ci {self.command}: {error.code}: {error.message}", file=self.io.stderr)
        if self.args.json:
            print(json.dumps(self.result, sort_keys=True), file=self.io.stdout)
        elif line is not None:
            print(line, file=self.io.stdout)
        return exit_status


def _details(error: Failure) -> dict[str, Any]:
    """The extensions a pipeline may want (which checks, until when frozen, ...)."""
    return {k: v for k, v in error.extensions.items() if k not in {"code", "requestId"}}


# --- what several commands need -------------------------------------------------------------


def _pipeline(client: Client, application: str, environment: str) -> dict[str, Any]:
    return client.execute(PIPELINE_FOR, {"a": application, "e": environment})["pipelineFor"]


def _image_by_digest(client: Client, application: str, digest: str) -> str:
    """The id of the application's image of this digest. The API has no lookup by digest,
    so the application's images are paged through, newest first: a build just registered is
    on the first page."""
    applications = client.execute(APPLICATIONS)["applications"]
    found = [a["id"] for a in applications if a["name"] == application]
    if not found:
        raise Failure("NOT_FOUND", f"no application {application} (or you cannot see it)", REFUSED)
    after = None
    while True:
        page = client.execute(IMAGES, {"a": found[0], "after": after})["images"]
        for edge in page["edges"]:
            if edge["node"]["digest"] == digest:
                return edge["node"]["id"]
        if not page["pageInfo"]["hasNextPage"]:
            raise Failure("NOT_FOUND", f"no image of {application} has digest {digest}", REFUSED)
        after = page["pageInfo"]["endCursor"]


def _image(client: Client, args: argparse.Namespace) -> str:
    if args.image:
        return args.image
    return _image_by_digest(client, args.application, args.digest)


def _wait(run: Run, poll: Callable[[], tuple[str, int | None]], what: str) -> tuple[str | None, int | None]:
    """Polls until `poll` gives an ending (its state and exit status) or --timeout passes:
    (last state, exit status or None on timeout). A failure that retrying may cure (the
    network, UNAVAILABLE, RATE_LIMITED...) is noted and polled through, so a server restart
    during a long wait does not fail the job; any other failure ends the wait."""
    deadline = time.monotonic() + run.args.timeout
    state: str | None = None
    while True:
        try:
            seen, ending = poll()
            if seen != state:
                run.note(f"{what} is {seen}")
                state = seen
            if ending is not None:
                return state, ending
        except Failure as failure:
            if failure.code != "NETWORK" and failure.code not in TRANSIENT_CODES:
                raise
            run.note(f"{failure.code}: {failure.message}; retrying")
        left = deadline - time.monotonic()
        if left <= 0:
            return state, None
        run.io.sleep(min(run.args.interval, left))


def _timed_out(run: Run, what: str, state: str | None) -> int:
    failure = Failure(
        "TIMED_OUT", f"{what} still {state or 'unknown'} after {run.args.timeout:g} s", TIMED_OUT
    )
    return run.finish(TIMED_OUT, error=failure)


# --- the commands ---------------------------------------------------------------------------


def register(client: Client, run: Run) -> int:
    args = run.args
    given = {
        "application": args.application,
        "repository": args.repository,
        "tag": args.tag,
        "digest": args.digest,
        "commit": args.commit,
        "branch": args.branch,
        "buildUrl": args.build_url,
        "labels": [{"key": k, "value": v} for k, v in args.label] or None,
    }
    try:
        image = client.execute(REGISTER, {"i": {k: v for k, v in given.items() if v is not None}})
        image_id, existing = image["registerImage"]["id"], False
    except Failure as failure:
        if failure.code != "CONFLICT":
            raise
        # The same digest again (a re-run job): the image is the one registered before.
        existing_id = failure.extensions.get("existingId")
        if isinstance(existing_id, str) and existing_id.startswith("Image:"):
            image_id = existing_id
        else:
            image_id = _image_by_digest(client, args.application, args.digest)
        existing = True
        run.note(f"{args.digest} was registered already, as {image_id}")
    run.result.update(imageId=image_id, existing=existing)
    return run.finish(OK, image_id)


def check(client: Client, run: Run) -> int:
    args = run.args
    image_id = _image(client, args)
    given = {"imageId": image_id, "name": args.name, "status": args.status}
    given |= {k: v for k, v in (("url", args.check_url), ("summary", args.summary)) if v is not None}
    reported = client.execute(CHECK, {"i": given})["reportImageCheck"]
    run.result.update(
        imageId=image_id, checkId=reported["id"], name=reported["name"], status=reported["status"]
    )
    return run.finish(OK, reported["id"])


def request(client: Client, run: Run) -> int:
    args = run.args
    pipeline = _pipeline(client, args.application, args.environment)
    image_id = _image(client, args)
    run.result.update(pipelineId=pipeline["id"], imageId=image_id)
    approver_ids = []
    if args.approver:
        eligible = client.execute(APPROVERS, {"p": pipeline["id"], "i": image_id})["eligibleApprovers"]
        by_email = {user["email"].lower(): user["id"] for user in eligible}
        unknown = [email for email in args.approver if email.lower() not in by_email]
        if unknown:
            raise Failure(
                "BAD_USER_INPUT",
                f"not an eligible approver of this request: {', '.join(unknown)}",
                BAD_ARGUMENTS,
                {"field": "approver"},
            )
        approver_ids = [by_email[email.lower()] for email in args.approver]
    given = {"pipelineId": pipeline["id"], "imageId": image_id, "approverIds": approver_ids}
    if args.comment is not None:
        given["comment"] = args.comment
    try:
        made = client.execute(REQUEST, {"i": given})["requestApproval"]
        request_id, state, existing = made["id"], made["state"], False
    except Failure as failure:
        existing_id = failure.extensions.get("existingId")
        if failure.code != "CONFLICT" or not str(existing_id).startswith("ApprovalRequest:"):
            raise
        # A live request of this image here exists (a re-run job): follow that one.
        request_id, state, existing = existing_id, None, True
        run.note(f"a live request exists already: {request_id} (its comment and approvers stay)")
    run.result.update(requestId=request_id, existing=existing)
    if state is None or args.wait:
        state = client.execute(REQUEST_STATE, {"id": request_id})["approvalRequest"]["state"]
    run.result["state"] = state
    if not args.wait:
        return run.finish(OK, request_id)
    run.note(f"waiting for {request_id} (up to {args.timeout:g} s)")
    last: dict[str, Any] = {}

    def poll() -> tuple[str, int | None]:
        last.update(client.execute(REQUEST_STATE, {"id": request_id})["approvalRequest"])
        return last["state"], REQUEST_ENDS.get(last["state"])

    state, ending = _wait(run, poll, request_id)
    run.result["state"] = state
    if ending is None:
        return _timed_out(run, request_id, state)
    if last.get("rejection"):
        run.result["reason"] = last["rejection"]["comment"]
        run.note(f"rejected by {last['rejection']['user']['email']}: {last['rejection']['comment']}")
    return run.finish(ending, request_id)


def deploy(client: Client, run: Run) -> int:
    args = run.args
    pipeline = _pipeline(client, args.application, args.environment)
    image_id = _image(client, args)
    run.result.update(pipelineId=pipeline["id"], imageId=image_id)
    given = {"pipelineId": pipeline["id"], "imageId": image_id, "acknowledgeStale": args.acknowledge_stale}
    made = client.execute(DEPLOY, {"i": given})["deployImage"]
    deployment_id = made["id"]
    run.result.update(deploymentId=deployment_id, status=made["status"])
    if not args.wait:
        return run.finish(OK, deployment_id)
    run.note(f"following {deployment_id} (up to {args.timeout:g} s)")
    last: dict[str, Any] = {}

    def poll() -> tuple[str, int | None]:
        last.update(client.execute(DEPLOYMENT_STATE, {"id": deployment_id})["deployment"])
        return last["status"], DEPLOYMENT_ENDS.get(last["status"])

    status, ending = _wait(run, poll, deployment_id)
    run.result["status"] = status
    if ending is None:
        return _timed_out(run, deployment_id, status)
    if last.get("message"):
        run.result["message"] = last["message"]
    if ending != OK:
        failure = Failure(
            "DEPLOYMENT_" + status, f"{deployment_id} ended {status}: {last.get('message') or ''}", ending
        )
        return run.finish(ending, error=failure)
    return run.finish(OK, deployment_id)


def status(client: Client, run: Run) -> int:
    args = run.args
    if args.request:
        found = client.execute(REQUEST_STATE, {"id": args.request})["approvalRequest"]
        run.result.update(
            requestId=found["id"],
            state=found["state"],
            progress=found["progress"],
            imageId=found["image"]["id"],
            pipelineId=found["pipeline"]["id"],
            expiresAt=found["expiresAt"],
            approvedBy=[a["user"]["email"] for a in found["approvals"]],
        )
        where = f"{found['pipeline']['application']['name']}/{found['pipeline']['environment']['name']}"
        lines = [
            f"{found['id']}: {found['state']} ({found['progress']})",
            f"image {found['image']['id']} {found['image']['tag']} on {where}",
        ]
        if found["approvals"]:
            lines.append("approved by " + ", ".join(run.result["approvedBy"]))
        if found["rejection"]:
            run.result["reason"] = found["rejection"]["comment"]
            lines.append(
                f"rejected by {found['rejection']['user']['email']}: {found['rejection']['comment']}"
            )
        if found["expiresAt"]:
            lines.append(f"expires at {found['expiresAt']}")
        return run.finish(OK, "\n".join(lines))
    if args.deployment:
        found = client.execute(DEPLOYMENT_STATE, {"id": args.deployment})["deployment"]
        run.result.update(
            deploymentId=found["id"],
            status=found["status"],
            message=found["message"],
            imageId=found["image"]["id"],
            pipelineId=found["pipeline"]["id"],
        )
        line = f"{found['id']}: {found['status']} (image {found['image']['id']} {found['image']['tag']})"
        return run.finish(OK, line + (f": {found['message']}" if found["message"] else ""))
    if not (args.application and args.environment):
        raise Failure(
            "BAD_ARGUMENTS", "give --request, --deployment, or --application and --environment", BAD_ARGUMENTS
        )
    found = client.execute(PIPELINE_STATE, {"a": args.application, "e": args.environment})["pipelineFor"]
    active = found["activeImage"]
    latest = [edge["node"] for edge in found["deployments"]["edges"]]
    run.result.update(
        pipelineId=found["id"],
        requiredApprovals=found["approvalPolicy"]["requiredApprovals"],
        frozenUntil=found["frozenUntil"],
        activeImageId=active["id"] if active else None,
        latestDeployment={"id": latest[0]["id"], "status": latest[0]["status"]} if latest else None,
    )
    lines = [
        f"{found['id']} {found['application']['name']}/{found['environment']['name']}: "
        f"{found['approvalPolicy']['requiredApprovals']} approval(s) required"
        + (f", frozen until {found['frozenUntil']}" if found["frozenUntil"] else ""),
        f"active image: {active['id']} {active['tag']}" if active else "active image: none",
    ]
    if latest:
        lines.append(
            f"latest deployment: {latest[0]['id']} {latest[0]['status']} ({latest[0]['image']['tag']})"
        )
    if args.image or args.digest:
        image_id = _image(client, args)
        image = client.execute(IMAGE_ON_PIPELINE, {"id": image_id, "p": found["id"]})["node"]
        requests = image["approvalRequests"]
        run.result["image"] = {
            "id": image["id"],
            "approvalState": image["approvalState"],
            "requestId": requests[-1]["id"] if requests else None,
            "checks": {c["name"]: c["status"] for c in image["checks"]},
        }
        lines.append(
            f"image {image['id']} {image['tag']}: "
            + (f"{image['approvalState']} ({requests[-1]['id']})" if requests else "never requested")
        )
        lines += [f"  check {c['name']}: {c['status']}" for c in image["checks"]]
    return run.finish(OK, "\n".join(lines))


COMMANDS = {"register": register, "check": check, "request": request, "deploy": deploy, "status": status}


# --- arguments ------------------------------------------------------------------------------


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _image_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    which = parser.add_mutually_exclusive_group(required=required)
    which.add_argument("--image", metavar="ID", help='the image\'s id, "Image:<number>"')
    which.add_argument("--digest", help="the image's digest (sha256:...), looked up among the application's")


def _wait_options(parser: argparse.ArgumentParser, what: str, default_timeout: float) -> None:
    parser.add_argument("--wait", action="store_true", help=f"wait until {what}")
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=default_timeout,
        help=f"with --wait: give up after this many seconds, exit 6 (default {default_timeout:g})",
    )
    parser.add_argument(
        "--interval", type=_seconds, default=5.0, help="with --wait: seconds between polls (default 5)"
    )


def add_to(commands: argparse._SubParsersAction, io_factory: Callable[[], Io] = Io) -> None:
    """Adds `ci` and its commands to the `greenlight` command's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the Greenlight server (default: GREENLIGHT_URL)")
    common.add_argument(
        "--token", help="an API token (default: GREENLIGHT_TOKEN, which keeps it out of the process list)"
    )
    common.add_argument("--json", action="store_true", help="print one JSON object with the result")

    ci = commands.add_parser("ci", help="register, check, request, deploy and follow images from a CI job")
    sub = ci.add_subparsers(dest="ci_command", required=True)

    p = sub.add_parser("register", parents=[common], help="register an image; prints its id")
    p.add_argument("--application", required=True)
    p.add_argument("--repository", required=True, help="e.g. registry.example.com/acme/shop")
    p.add_argument("--tag", required=True)
    p.add_argument("--digest", required=True, help="sha256: and 64 lowercase hex digits")
    p.add_argument("--commit")
    p.add_argument("--branch")
    p.add_argument("--build-url")
    p.add_argument("--label", type=_label, action="append", default=[], metavar="KEY=VALUE")

    p = sub.add_parser("check", parents=[common], help="report a check's result on an image (a scan, tests)")
    _image_options(p)
    p.add_argument("--application", help="the image's application (needed with --digest)")
    p.add_argument("--name", required=True, help="e.g. vulnerability-scan")
    p.add_argument("--status", required=True, type=str.upper, choices=["PASSED", "FAILED", "PENDING"])
    p.add_argument("--report-url", dest="check_url", metavar="URL", help="where the result can be read")
    p.add_argument("--summary", help="a line or two about the result")

    p = sub.add_parser(
        "request", parents=[common], help="ask for an image's approval; prints the request's id"
    )
    p.add_argument("--application", required=True)
    p.add_argument("--environment", required=True)
    _image_options(p)
    p.add_argument("--comment")
    p.add_argument("--approver", action="append", default=[], metavar="EMAIL", help="an approver to notify")
    _wait_options(p, "the request is approved, rejected, expired or cancelled", 3600)

    p = sub.add_parser("deploy", parents=[common], help="deploy an image; prints the deployment's id")
    p.add_argument("--application", required=True)
    p.add_argument("--environment", required=True)
    _image_options(p)
    p.add_argument("--acknowledge-stale", action="store_true", help="deploy an older image (a rollback)")
    _wait_options(p, "the deployment is HEALTHY, or FAILED or DEGRADED", 1800)

    p = sub.add_parser("status", parents=[common], help="where a request, deployment or pipeline stands")
    p.add_argument("--request", metavar="ID")
    p.add_argument("--deployment", metavar="ID")
    p.add_argument("--application")
    p.add_argument("--environment")
    _image_options(p, required=False)

    for parser in sub.choices.values():
        parser.set_defaults(func=lambda args: run(args, io_factory()))


def run(args: argparse.Namespace, io: Io) -> int:
    """Runs the parsed `ci` command; returns its exit status."""
    command = args.ci_command
    current = Run(command, args, io)
    url = args.url or io.environ.get("GREENLIGHT_URL")
    token = args.token or io.environ.get("GREENLIGHT_TOKEN")
    # A token read from a secret file often ends in a newline: trimmed here, since in a header
    # it would make the HTTP library refuse it with a message that quotes the token.
    token = (token or "").strip()
    missing = [name for name, value in (("GREENLIGHT_URL", url), ("GREENLIGHT_TOKEN", token)) if not value]
    if not missing and not (token.isascii() and token.isprintable() and " " not in token):
        failure = Failure(
            "BAD_ARGUMENTS", "the API token holds spaces, control or non-ASCII characters", BAD_ARGUMENTS
        )
        return current.finish(BAD_ARGUMENTS, error=failure)
    if missing:
        what = " and ".join(missing)
        return current.finish(BAD_ARGUMENTS, error=Failure("BAD_ARGUMENTS", f"{what} not set", BAD_ARGUMENTS))
    if getattr(args, "digest", None) and command in {"check", "status"} and not args.application:
        failure = Failure("BAD_ARGUMENTS", "--digest needs --application", BAD_ARGUMENTS)
        return current.finish(BAD_ARGUMENTS, error=failure)
    try:
        with Client(url, token) as client:
            return COMMANDS[command](client, current)
    except Failure as failure:
        return current.finish(failure.exit_status, error=failure)
    except Exception as error:  # a pipeline gets a status and a line, not a traceback
        failure = Failure("ERROR", f"{type(error).__name__}: {error}".replace(token, "<token>"), ERROR)
        return current.finish(ERROR, error=failure)


def main(argv: list[str], io: Io | None = None) -> int:
    """`greenlight ci ARGV...` with its own environment and streams (argv without the
    leading "ci"), returning the exit status: bad arguments are 2, not a SystemExit."""
    io = io or Io()
    parser = argparse.ArgumentParser(prog="greenlight")
    add_to(parser.add_subparsers(dest="command", required=True), lambda: io)
    old_err = sys.stderr
    sys.stderr = io.stderr  # argparse writes its usage errors there
    try:
        args = parser.parse_args(["ci", *argv])
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else BAD_ARGUMENTS
    finally:
        sys.stderr = old_err
    return args.func(args)
