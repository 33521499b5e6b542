"""The operations the benchmark drives, as a client sends them: one document each, with
variables, so the text is the same on every request."""

from __future__ import annotations

import json
from dataclasses import dataclass

from bench.world import PAGE, World

SELECT_IMAGE = """query SelectImage($pipelineId: ID!) {
  pipeline(id: $pipelineId) {
    deployableImages {
      id
      tag
      digest
      builtBy { email }
      approvalState(pipelineId: $pipelineId)
    }
  }
}"""

APPROVAL_PENDING = """query ApprovalPending($first: Int!) {
  approvalRequests(filter: {states: [PENDING]}, first: $first) {
    edges {
      node {
        id
        state
        requestedAt
        image { id tag digest }
        pipeline { id application { name } environment { name } }
        requestedBy { email }
        approvals { decidedAt user { email } }
      }
    }
  }
}"""

APPROVE_REQUEST = """mutation ApproveRequest($id: ID!) {
  approveRequest(id: $id) {
    id
    state
    approvals { user { email } }
  }
}"""


@dataclass(frozen=True)
class Operation:
    key: str
    title: str
    target: float  # the least requests/s ratio to the baseline that the issue asks for
    query: str
    mutation: bool = False

    def body(self, world: World, request_id: int | None = None) -> bytes:
        if self.key == "select":
            return self.encode({"pipelineId": f"Pipeline:{world.select_pipeline_id}"})
        if self.key == "pending":
            return self.encode({"first": PAGE})
        return self.encode({"id": f"ApprovalRequest:{request_id}"})

    def encode(self, variables: dict) -> bytes:
        return json.dumps({"query": self.query, "variables": variables}, separators=(",", ":")).encode()

    def body_parts(self) -> tuple[bytes, bytes]:
        """The approve body split where the request's number goes (for load generators)."""
        prefix, _, suffix = self.encode({"id": "ApprovalRequest:@@"}).partition(b"@@")
        return prefix, suffix

    def size(self, data: dict) -> int:
        """How many items the answer lists (to check Greenlight and the baseline agree)."""
        if self.key == "select":
            return len(data["pipeline"]["deployableImages"])
        if self.key == "pending":
            return len(data["approvalRequests"]["edges"])
        return 1 if data["approveRequest"]["state"] else 0

    def expected(self, world: World) -> int:
        if self.key == "select":
            return world.select_images
        if self.key == "pending":
            return min(PAGE, world.pending_visible)
        return 1


OPERATIONS = {
    "select": Operation("select", "Select Image", 1.0, SELECT_IMAGE),
    "pending": Operation("pending", "Approval pending", 1.0, APPROVAL_PENDING),
    "approve": Operation("approve", "approveRequest", 0.4, APPROVE_REQUEST, mutation=True),
}


# The realistic mix (bench/mix.py): each user's own questions, and the writes around them.

APPROVAL_PENDING_MINE = APPROVAL_PENDING.replace(
    "filter: {states: [PENDING]}", "filter: {states: [PENDING], awaitingMyApproval: true}"
)

REQUEST_APPROVAL = """mutation RequestApproval($pipelineId: ID!, $imageId: ID!) {
  requestApproval(input: {pipelineId: $pipelineId, imageId: $imageId}) {
    id
    state
    requestedBy { email }
  }
}"""

REGISTER_IMAGE = """mutation RegisterImage($application: String!, $repository: String!, $tag: String!, $digest: String!) {
  registerImage(input: {application: $application, repository: $repository, tag: $tag, digest: $digest}) {
    id
  }
}"""


def encode(query: str, variables: dict) -> bytes:
    return json.dumps({"query": query, "variables": variables}, separators=(",", ":")).encode()
