"""Asking again after a rejection: requestApproval may name the REJECTED request of the
same image and pipeline it answers (previousRequestId); the new request links back, the
rejection's reason is read with it, and one image's history on one pipeline reads as a
chain. Anything else named is refused with a clear code and nothing is created."""

from __future__ import annotations

REQUEST = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id previousRequest { id } } }"
REJECT = "mutation($id: ID!, $r: String!) { rejectRequest(id: $id, reason: $r) { id state } }"
CHAIN = """query($id: ID!) { approvalRequest(id: $id) {
  id state
  previousRequest { id state rejection { comment user { email } } nextRequest { id } }
  nextRequest { id }
  history { id state previousRequest { id } }
} }"""
IMAGE_HISTORY = """query($id: ID!, $p: ID!) { node(id: $id) { ... on Image {
  approvalRequests(pipelineId: $p) { id state previousRequest { id } }
} } }"""


async def rejected(
    world, image: str, pipeline: str = "shop/prod", who: str = "dev2", previous: str | None = None
) -> str:
    data = await world[who].ok(
        REQUEST, {"i": {"pipelineId": world.ids[pipeline], "imageId": image, "previousRequestId": previous}}
    )
    request = data["requestApproval"]["id"]
    rejecter = "approver1" if pipeline.startswith("shop") else "billing_approver"
    await world[rejecter].ok(REJECT, {"id": request, "r": f"fix it ({request})"})
    return request


async def test_asking_again_links_back_shows_the_reason_and_reads_as_a_chain(world):
    """The new request names the rejected one; the rejection's reason and who gave it are
    read with it; the rejected one names its answer; history and Image.approvalRequests
    list the chain oldest first."""
    image = await world.register_image("dev")
    first = await rejected(world, image)
    second = await rejected(world, image, previous=first)
    data = await world["dev2"].ok(
        REQUEST, {"i": {"pipelineId": world.ids["shop/prod"], "imageId": image, "previousRequestId": second}}
    )
    third = data["requestApproval"]["id"]
    assert data["requestApproval"]["previousRequest"] == {"id": second}
    read = (await world["viewer"].ok(CHAIN, {"id": third}))["approvalRequest"]
    assert read["state"] == "PENDING" and read["nextRequest"] is None
    assert read["previousRequest"] == {
        "id": second,
        "state": "REJECTED",
        "rejection": {"comment": f"fix it ({second})", "user": {"email": "approver1@example.com"}},
        "nextRequest": {"id": third},
    }
    expected = [
        {"id": first, "state": "REJECTED", "previousRequest": None},
        {"id": second, "state": "REJECTED", "previousRequest": {"id": first}},
        {"id": third, "state": "PENDING", "previousRequest": {"id": second}},
    ]
    assert read["history"] == expected
    listed = await world["viewer"].ok(IMAGE_HISTORY, {"id": image, "p": world.ids["shop/prod"]})
    assert listed["node"]["approvalRequests"] == expected


async def test_only_a_rejected_request_of_the_same_image_and_pipeline_can_be_answered(world, unchanged):
    """previousRequestId must be REJECTED (else INVALID_STATE), of this image and pipeline
    (else BAD_USER_INPUT), visible (else NOT_FOUND), and answered once (else CONFLICT
    naming the answer); nothing is created."""
    image = await world.register_image("dev")
    other_image = await world.register_image("dev")
    first = await rejected(world, image)
    answer = await rejected(world, image, previous=first)  # rejected again: the pair is free
    pending = await world.request_approval(other_image, who="dev2")
    billing = await world.register_image("admin", "billing")
    billing_rejected = await rejected(world, billing, "billing/prod", who="billing_dev")

    def asking(previous: str, img: str = image) -> dict:
        return {"i": {"pipelineId": world.ids["shop/prod"], "imageId": img, "previousRequestId": previous}}

    async with unchanged():
        error = await world["dev2"].fails(REQUEST, asking(first))
        assert error["extensions"]["code"] == "CONFLICT" and error["extensions"]["existingId"] == answer
        error = await world["dev2"].fails(REQUEST, asking(answer, other_image))
        assert error["extensions"]["code"] == "CONFLICT"  # other_image has a live request (R6) first
        assert await world["dev2"].code(REQUEST, asking(pending)) == "BAD_USER_INPUT"
        assert await world["dev2"].code(REQUEST, asking("ApprovalRequest:999999")) == "NOT_FOUND"
        assert await world["dev2"].code(REQUEST, asking(billing_rejected)) == "NOT_FOUND"  # R1
    await world["dev2"].ok("mutation($id: ID!) { cancelApprovalRequest(id: $id) { id } }", {"id": pending})
    async with unchanged():
        error = await world["dev2"].fails(REQUEST, asking(pending, other_image))
        assert error["extensions"]["code"] == "INVALID_STATE" and "CANCELLED" in error["message"]
