"""What an image is: registerImage records, besides repository, tag and digest, the commit,
the branch, a build URL and free labels; they show on the image (and so in Select Image),
in the approvers' email, and the image lists filter on them in SQL."""

from __future__ import annotations

import uuid

import pytest

from greenlight.models import AuditEvent, Image
from tests.notifications.test_email import deliver, settings, smtp  # noqa: F401 (fixtures)

REGISTER = """mutation($i: RegisterImageInput!) {
  registerImage(input: $i) { id commit branch buildUrl labels { key value } }
}"""
IMAGES = """query($a: ID!, $f: ImageFilter) {
  images(applicationId: $a, filter: $f) { edges { node { id } } }
}"""
SELECT_IMAGE = """query($p: ID!, $f: ImageFilter) {
  pipeline(id: $p) { deployableImages(filter: $f) { id commit branch buildUrl labels { key value } } }
}"""
APPLICATION = "query { applications { id name } }"
COMMIT = "4f1c2e5d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d"


def image_input(**more) -> dict:
    digest = "sha256:" + uuid.uuid4().hex + uuid.uuid4().hex
    return {
        "application": "shop",
        "repository": "registry.example.com/acme/shop",
        "tag": f"v-{digest[7:15]}",
        "digest": digest,
        **more,
    }


async def register(world, who: str = "dev", **more) -> dict:
    return (await world[who].ok(REGISTER, {"i": image_input(**more)}))["registerImage"]


async def shop_id(world) -> str:
    apps = (await world["admin"].ok(APPLICATION))["applications"]
    return next(a["id"] for a in apps if a["name"] == "shop")


async def test_image_metadata_is_recorded_shown_and_audited(world):
    """What an image is: commit (stored lowercase), branch, build URL and labels are kept,
    shown on the image and in Select Image, and written to the register_image audit event;
    an image registered without them shows nulls and no labels."""
    image = await register(
        world,
        commit=COMMIT.upper(),
        branch="release/1.4",
        buildUrl="https://ci.example.com/shop/builds/812",
        labels=[{"key": "team", "value": "payments"}, {"key": "build.kind", "value": "nightly"}],
    )
    assert image["commit"] == COMMIT
    assert image["branch"] == "release/1.4"
    assert image["buildUrl"] == "https://ci.example.com/shop/builds/812"
    assert image["labels"] == [
        {"key": "build.kind", "value": "nightly"},
        {"key": "team", "value": "payments"},
    ]
    plain = await register(world)
    assert (plain["commit"], plain["branch"], plain["buildUrl"], plain["labels"]) == (None, None, None, [])

    listed = (await world["dev"].ok(SELECT_IMAGE, {"p": world.ids["shop/staging"]}))["pipeline"]
    shown = {i["id"]: i for i in listed["deployableImages"]}
    assert shown[image["id"]] == image
    event = await AuditEvent.get(action="register_image", object_id=int(image["id"].split(":")[1]))
    assert event.after["commit"] == COMMIT and event.after["branch"] == "release/1.4"
    assert event.after["labels"] == {"team": "payments", "build.kind": "nightly"}


@pytest.mark.parametrize(
    ("more", "field"),
    [
        ({"commit": "abc12"}, "commit"),  # too short
        ({"commit": "g" * 40}, "commit"),  # not hex
        ({"commit": "a" * 41}, "commit"),
        ({"branch": "has space"}, "branch"),
        ({"branch": "b" * 256}, "branch"),
        ({"branch": ""}, "branch"),
        ({"buildUrl": "javascript:alert(1)"}, "buildUrl"),
        ({"buildUrl": "ftp://ci.example.com/1"}, "buildUrl"),
        ({"buildUrl": "https://"}, "buildUrl"),
        ({"buildUrl": "https://ci.example.com/" + "x" * 2048}, "buildUrl"),
        ({"labels": [{"key": "-team", "value": "x"}]}, "labels.key"),
        ({"labels": [{"key": "k" * 64, "value": "x"}]}, "labels.key"),
        ({"labels": [{"key": "team", "value": "v" * 256}]}, "labels.value"),
        ({"labels": [{"key": "team", "value": "a\x00b"}]}, "labels.value"),
        ({"labels": [{"key": "team", "value": "a"}, {"key": "team", "value": "b"}]}, "labels"),
        ({"labels": [{"key": f"k{n}", "value": "v"} for n in range(21)]}, "labels"),
    ],
)
async def test_image_metadata_bad_values_are_refused_and_register_nothing(world, unchanged, more, field):
    """What an image is, limits: a commit is 7 to 40 hex digits, a branch 1 to 255
    characters without spaces, a build URL http(s) only (at most 2048), at most 20 labels
    with valid keys given once and values of at most 255 characters: otherwise
    BAD_USER_INPUT naming the field, and nothing is written."""
    async with unchanged():
        error = await world["dev"].fails(REGISTER, {"i": image_input(**more)})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == field, error


async def test_image_metadata_limits_at_their_edges_are_accepted(world):
    """What an image is, limits: the longest values allowed register."""
    image = await register(
        world,
        commit="abcdef1",
        branch="b" * 255,
        buildUrl="http://ci.example.com/1",
        labels=[{"key": f"k{n}", "value": "v" * 255} for n in range(20)],
    )
    assert image["commit"] == "abcdef1" and len(image["labels"]) == 20


async def test_image_lists_filter_by_branch_commit_and_label(world):
    """What an image is, lists: images and Select Image (deployableImages) keep only the
    images matching every part of the filter: the branch, a commit (a short hash matches
    the full one), a label's key (any value) or key and value."""
    main_a = await register(
        world, branch="main", commit=COMMIT, labels=[{"key": "team", "value": "payments"}]
    )
    main_b = await register(world, branch="main", labels=[{"key": "team", "value": "search"}])
    other = await register(world, branch="feature/x", labels=[{"key": "canary", "value": ""}])
    await register(world)
    app = await shop_id(world)

    async def ids(filter_: dict) -> dict[str, set[str]]:
        listed = (await world["dev"].ok(IMAGES, {"a": app, "f": filter_}))["images"]["edges"]
        select = await world["dev"].ok(SELECT_IMAGE, {"p": world.ids["shop/staging"], "f": filter_})
        return {
            "images": {e["node"]["id"] for e in listed},
            "select": {i["id"] for i in select["pipeline"]["deployableImages"]},
        }

    cases = [
        ({"branch": "main"}, {main_a["id"], main_b["id"]}),
        ({"commit": COMMIT[:7]}, {main_a["id"]}),
        ({"commit": COMMIT}, {main_a["id"]}),
        ({"label": {"key": "team"}}, {main_a["id"], main_b["id"]}),
        ({"label": {"key": "team", "value": "search"}}, {main_b["id"]}),
        ({"label": {"key": "canary", "value": ""}}, {other["id"]}),
        ({"branch": "main", "label": {"key": "team", "value": "search"}}, {main_b["id"]}),
        ({"branch": "feature/x", "label": {"key": "team"}}, set()),
        ({"branch": "nowhere"}, set()),
    ]
    for filter_, expected in cases:
        assert await ids(filter_) == {"images": expected, "select": expected}, filter_
    everything = await ids({})
    assert {main_a["id"], main_b["id"], other["id"]} <= everything["images"]


async def test_image_list_filter_values_are_checked(world):
    """What an image is, lists: a filter value that could never match is BAD_USER_INPUT."""
    app = await shop_id(world)
    for filter_, field in (
        ({"commit": "xyz"}, "filter.commit"),
        ({"branch": "a b"}, "filter.branch"),
        ({"label": {"key": "-bad"}}, "filter.label.key"),
    ):
        error = await world["dev"].fails(IMAGES, {"a": app, "f": filter_})
        assert error["extensions"]["code"] == "BAD_USER_INPUT" and error["extensions"]["field"] == field


async def test_image_metadata_filter_is_done_in_sql(world):
    """What an image is, lists: the filter is a WHERE of the statement listing the images,
    not a sieve over rows read: with 60 images of which one matches, a page of one is
    full and says nothing follows."""
    for _ in range(59):
        await register(world, branch="noise")
    wanted = await register(world, branch="wanted")
    query = """query($a: ID!, $f: ImageFilter) {
      images(applicationId: $a, filter: $f, first: 1) { totalCount pageInfo { hasNextPage } edges { node { id } } }
    }"""
    found = (await world["dev"].ok(query, {"a": await shop_id(world), "f": {"branch": "wanted"}}))["images"]
    assert found["totalCount"] == 1 and found["pageInfo"]["hasNextPage"] is False
    assert [e["node"]["id"] for e in found["edges"]] == [wanted["id"]]
    assert await Image.filter(branch="noise").count() == 59


async def test_image_metadata_is_in_the_approval_request_email(world, settings, smtp):  # noqa: F811
    """What an image is, emails: the email to a named approver shows the commit, the branch,
    the build URL and the labels, in the text and (escaped) in the HTML."""
    image = await register(
        world,
        commit=COMMIT,
        branch="release/1.4",
        buildUrl="https://ci.example.com/shop/builds/812?a=1&b=2",
        labels=[{"key": "team", "value": "<payments>"}],
    )
    await world["dev2"].ok(
        "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }",
        {
            "i": {
                "pipelineId": world.ids["shop/prod"],
                "imageId": image["id"],
                "approverIds": [world["approver1"].user_id],
            }
        },
    )
    assert await deliver(settings) == 1
    (received,) = smtp.received
    for fact in (COMMIT, "release/1.4", "https://ci.example.com/shop/builds/812?a=1&b=2", "team=<payments>"):
        assert fact in received.text, (fact, received.text)
    html = received.html
    assert COMMIT in html and "release/1.4" in html
    assert "team=&lt;payments&gt;" in html and "<payments>" not in html
    assert "https://ci.example.com/shop/builds/812?a=1&amp;b=2" in html
