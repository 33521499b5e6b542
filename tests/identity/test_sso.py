"""Single sign-on: JWTs checked against a JWKS served by a real local HTTP server.

RS256 and ES256 tokens whose signature, issuer, audience, expiry and not-before pass are
accepted as `Authorization: Bearer <jwt>`; everything else is UNAUTHENTICATED (api.graphql),
including `alg: none` and HS/RS algorithm confusion. Unknown `kid`s refetch the JWKS (at most
every 10 s), so a rotated key works after the refetch. The email claim names the user; unknown
users are refused unless auto-provisioning; the groups claim sets group memberships. HS256 mode
(a shared secret) accepts only HS256.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import greenlight.sso
from greenlight.app import create_app
from greenlight.config import Settings
from greenlight.models import AuditEvent, Group, GroupMember, RoleBinding, User

from ..conftest import Client

ISSUER = "https://idp.example.com/"
AUDIENCE = "greenlight"
SECRET = "a-shared-secret-long-enough-for-hs256-and-even-for-hs512-0123456789"
ME = "{ me { email isSuperAdmin roleBindings { id } } }"

RSA_1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_1 = ec.generate_private_key(ec.SECP256R1())


def jwk(private_key, kid: str) -> dict:
    public = private_key.public_key()
    if isinstance(private_key, rsa.RSAPrivateKey):
        key = RSAAlgorithm.to_jwk(public, as_dict=True)
        key["alg"] = "RS256"
    else:
        key = ECAlgorithm.to_jwk(public, as_dict=True)
        key["alg"] = "ES256"
    return {**key, "kid": kid, "use": "sig"}


def claims(email: str = "dev@example.com", **overrides) -> dict:
    now = int(time.time())
    out = {"iss": ISSUER, "aud": AUDIENCE, "sub": email, "email": email, "iat": now, "exp": now + 300}
    out.update(overrides)
    return {k: v for k, v in out.items() if v is not None}


def rs256(payload: dict, key=RSA_1, kid: str | None = "rsa-1") -> str:
    headers = {"kid": kid} if kid else {}
    return jwt.encode(payload, key, algorithm="RS256", headers=headers)


def es256(payload: dict, key=EC_1, kid: str = "ec-1") -> str:
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict, payload: dict, key: bytes | None) -> str:
    """A JWT built by hand: HMAC-SHA256 signed with `key`, or unsigned when key is None."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest()) if key else ""
    return f"{signing_input}.{signature}"


def public_pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- the identity provider's JWKS endpoint ---------------------------------------------------------


class QuietServer(uvicorn.Server):
    def capture_signals(self):  # leave pytest's signal handlers alone
        return contextlib.nullcontext()


@dataclasses.dataclass
class Jwks:
    url: str
    keys: list[dict]
    hits: int = 0
    issuer: str = ""  # an OpenID Connect issuer on the same server, serving `discovery`
    discovery: dict | None = None  # None: the discovery document answers 404
    discovery_hits: int = 0


@pytest.fixture
async def jwks() -> AsyncIterator[Jwks]:
    """A JWKS served over HTTP on a free loopback port, in this event loop; tests change `keys`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    served = Jwks(url=f"{base}/.well-known/jwks.json", keys=[], issuer=f"{base}/realms/acme")
    served.keys = [jwk(RSA_1, "rsa-1"), jwk(EC_1, "ec-1")]
    served.discovery = {
        "issuer": served.issuer,
        "jwks_uri": served.url,
        "id_token_signing_alg_values_supported": ["RS256"],
    }

    async def endpoint(request):
        served.hits += 1
        return JSONResponse({"keys": served.keys})

    async def discovery(request):
        served.discovery_hits += 1
        if served.discovery is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(served.discovery)

    idp = Starlette(
        routes=[
            Route("/.well-known/jwks.json", endpoint),
            Route("/realms/acme/.well-known/openid-configuration", discovery),
        ]
    )
    server = QuietServer(
        uvicorn.Config(idp, lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    pytest.fail("the JWKS server stopped before it started")
                await asyncio.sleep(0.01)
        yield served
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            task.cancel()
        sock.close()


@pytest.fixture
def settings(database_url, jwks) -> Settings:
    """This module's app accepts JWTs from the JWKS above, with a groups claim."""
    return Settings(
        database_url=database_url,
        background_jobs=False,
        rollout_seconds=90,
        mutations_per_minute=0,  # as in conftest: no mutation rate limit in tests
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_jwks_url=jwks.url,
        jwt_groups_claim="groups",
    )


def bearer(world, token: str) -> Client:
    return Client(world.http, token)


async def email_of(client: Client) -> str:
    return (await client.ok(ME))["me"]["email"]


@contextlib.asynccontextmanager
async def other_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a second app built from `settings` (create_app configures SSO from them)."""
    app = create_app(settings, manage_database=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b.test") as http:
        yield http


# --- accepted --------------------------------------------------------------------------------------


async def test_valid_rs256_token_identifies_the_user(world, jwks):
    """A valid RS256 JWT is the user of its email claim, with that user's roles; the JWKS is
    fetched once and cached."""
    client = bearer(world, rs256(claims("dev@example.com")))
    data = await client.ok(ME)
    assert data["me"]["email"] == "dev@example.com"
    assert data["me"]["isSuperAdmin"] is False
    image = await client.ok(
        "mutation($i: RegisterImageInput!) { registerImage(input: $i) { builtBy { email } } }",
        {
            "i": {
                "application": "shop",
                "repository": "registry.example.com/acme/shop",
                "tag": "sso",
                "digest": "sha256:" + "a" * 64,
            }
        },
    )
    assert image["registerImage"]["builtBy"]["email"] == "dev@example.com"
    # a super-admin by JWT administers
    admin = bearer(world, rs256(claims("admin@example.com")))
    assert len((await admin.ok("{ users { id } }"))["users"]) == await User.all().count()
    # R1 still applies to a JWT user
    assert await client.code("{ users { id } }") == "FORBIDDEN"
    # the email claim is matched case-insensitively
    assert await email_of(bearer(world, rs256(claims("Dev@Example.COM")))) == "dev@example.com"
    assert jwks.hits == 1
    # API tokens keep working beside JWTs
    assert await email_of(world["dev"]) == "dev@example.com"


async def test_valid_es256_token_identifies_the_user(world):
    assert await email_of(bearer(world, es256(claims("approver1@example.com")))) == "approver1@example.com"


async def test_not_before_and_expiry_within_the_leeway_are_accepted(world):
    """Clock skew up to 30 s is tolerated: nbf 10 s ahead, exp 10 s ago."""
    now = int(time.time())
    assert await email_of(bearer(world, rs256(claims(nbf=now + 10)))) == "dev@example.com"
    assert await email_of(bearer(world, rs256(claims(exp=now - 10)))) == "dev@example.com"


def test_hs_token_made_with_a_public_key_is_well_formed():
    """Guard for the confusion case below: the token really is a valid HS256 token for a verifier
    that would (wrongly) use the RSA public key PEM as the HMAC secret."""
    token = hand_made({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(), public_pem(RSA_1))
    key = hmac.new(public_pem(RSA_1), token.rsplit(".", 1)[0].encode(), hashlib.sha256).digest()
    assert token.rsplit(".", 1)[1] == b64(key)


# --- refused ---------------------------------------------------------------------------------------


def tampered(token: str) -> str:
    """The token with its payload swapped for admin's, signature kept."""
    header, _, signature = token.split(".")
    return f"{header}.{b64(json.dumps(claims('admin@example.com')).encode())}.{signature}"


REFUSED = {
    "expired": lambda: rs256(claims(exp=int(time.time()) - 120)),
    "not yet valid": lambda: rs256(claims(nbf=int(time.time()) + 120)),
    "wrong audience": lambda: rs256(claims(aud="someone-else")),
    "wrong issuer": lambda: rs256(claims(iss="https://evil.example.com/")),
    "no audience": lambda: rs256(claims(aud=None)),
    "no issuer": lambda: rs256(claims(iss=None)),
    "no exp": lambda: rs256(claims(exp=None)),
    "signed by a key not in the JWKS": lambda: rs256(claims(), key=RSA_OTHER),
    "tampered payload": lambda: tampered(rs256(claims())),
    "no kid": lambda: rs256(claims(), kid=None),
    "HS256 with the RSA public key as secret": lambda: hand_made(
        {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims("admin@example.com"), public_pem(RSA_1)
    ),
    "HS256 with the RSA public key as secret, no kid": lambda: hand_made(
        {"alg": "HS256", "typ": "JWT"}, claims("admin@example.com"), public_pem(RSA_1)
    ),
    "alg none": lambda: hand_made(
        {"alg": "none", "typ": "JWT", "kid": "rsa-1"}, claims("admin@example.com"), None
    ),
    "alg None": lambda: hand_made({"alg": "None", "typ": "JWT"}, claims("admin@example.com"), None),
    "ES256 header on the RSA key": lambda: es256(claims(), kid="rsa-1"),
    "RS256 header on the EC key": lambda: rs256(claims(), kid="ec-1"),
    "RS384": lambda: jwt.encode(claims(), RSA_1, algorithm="RS384", headers={"kid": "rsa-1"}),
    "unknown user": lambda: rs256(claims("stranger@example.com")),
    "no email claim": lambda: rs256(claims(email=None)),
    "email claim not an email": lambda: rs256(claims(email="not an email")),
    "garbage with two dots": lambda: "abc.def.ghi",
}


async def test_bad_jwts_are_unauthenticated(world, unchanged):
    """Signature, issuer, audience, expiry and not-before are checked; alg none, algorithm
    confusion and unknown users are refused: each case UNAUTHENTICATED (on a query and on a
    mutation), nothing written (no user made)."""
    wrong = {}
    mutation = 'mutation { createGroup(name: "by-a-bad-token") { id } }'
    async with unchanged():
        for case, make in REFUSED.items():
            client = bearer(world, make())
            for operation in (ME, mutation):
                body = await client.execute(operation)
                codes = [e["extensions"]["code"] for e in body.get("errors") or []]
                if codes != ["UNAUTHENTICATED"] or body.get("data"):
                    wrong[case] = body
    assert not wrong, wrong
    assert len(REFUSED) >= 20
    # the same requests with a good token answer
    assert await email_of(bearer(world, rs256(claims()))) == "dev@example.com"


# --- key rotation ----------------------------------------------------------------------------------


async def test_unknown_kid_then_key_rotation(world, jwks):
    """A token signed with a key the JWKS does not (yet) serve is refused; once the identity
    provider rotates to it, the JWKS is fetched again (at most every 10 s) and the token works,
    while the retired key's tokens are refused."""
    old = rs256(claims())
    assert await email_of(bearer(world, old)) == "dev@example.com"
    assert jwks.hits == 1

    new = rs256(claims("approver1@example.com"), key=RSA_2, kid="rsa-2")
    assert await bearer(world, new).code(ME) == "UNAUTHENTICATED"
    hits = jwks.hits

    jwks.keys = [jwk(RSA_2, "rsa-2")]  # rotation: the old key is retired
    # unknown kids do not hammer the identity provider: no refetch within 10 s
    for n in range(5):
        token = rs256(claims(), key=RSA_2, kid=f"nope-{n}")
        assert await bearer(world, token).code(ME) == "UNAUTHENTICATED"
    assert jwks.hits == hits

    greenlight.sso._jwks.fetched_at -= 60  # ten seconds and more have passed
    assert await email_of(bearer(world, new)) == "approver1@example.com"
    assert jwks.hits == hits + 1
    assert await bearer(world, old).code(ME) == "UNAUTHENTICATED"
    assert await email_of(bearer(world, new)) == "approver1@example.com"
    assert jwks.hits == hits + 1


async def test_keys_are_refetched_when_the_cache_is_stale(world, jwks):
    """A cached JWKS older than jwks_refresh_seconds is fetched again: a key removed by the
    identity provider stops working then, even for a known kid."""
    assert await email_of(bearer(world, rs256(claims()))) == "dev@example.com"
    jwks.keys = [jwk(EC_1, "ec-1")]
    assert await email_of(bearer(world, rs256(claims()))) == "dev@example.com"  # cached
    greenlight.sso._jwks.fetched_at -= 301  # refresh_seconds defaults to 300
    assert await bearer(world, rs256(claims())).code(ME) == "UNAUTHENTICATED"
    assert await email_of(bearer(world, es256(claims()))) == "dev@example.com"


async def test_jwks_unavailable_is_unauthenticated(world, jwks, settings):
    """An identity provider whose JWKS answers 404: tokens cannot be checked, UNAUTHENTICATED
    (not INTERNAL); API tokens still work."""
    broken = dataclasses.replace(settings, jwt_jwks_url=jwks.url.replace("jwks.json", "missing.json"))
    async with other_app(broken) as http:
        assert await Client(http, rs256(claims())).code(ME) == "UNAUTHENTICATED"
        assert await Client(http, world["dev"].token).ok(ME)


# --- users and groups from the token ---------------------------------------------------------------


async def test_unknown_user_is_refused_unless_auto_provisioning(world, settings):
    """No user for the email claim: refused (and none created); with auto-provisioning the user is
    created once, with no roles."""
    token = rs256(claims("new.person@example.com", name="New Person"))
    assert await bearer(world, token).code(ME) == "UNAUTHENTICATED"
    assert not await User.exists(email="new.person@example.com")

    async with other_app(dataclasses.replace(settings, jwt_auto_provision=True)) as http:
        client = Client(http, token)
        data = await client.ok(ME)
        assert data["me"] == {"email": "new.person@example.com", "isSuperAdmin": False, "roleBindings": []}
        assert await email_of(client) == "new.person@example.com"
        assert (await client.ok("{ applications { name } environments { name } }")) == {
            "applications": [],
            "environments": [],
        }
        assert await client.code("{ users { id } }") == "FORBIDDEN"
        users = await User.filter(email="new.person@example.com")
        assert [(u.name, u.is_active) for u in users] == [("New Person", True)]
        assert await RoleBinding.filter(user_id=users[0].id).count() == 0
        assert await GroupMember.filter(user_id=users[0].id).count() == 0
        # existing users are not touched; refusals still apply
        assert await email_of(Client(http, rs256(claims("dev@example.com")))) == "dev@example.com"
        expired = rs256(claims("other.person@example.com", exp=int(time.time()) - 120))
        assert await Client(http, expired).code(ME) == "UNAUTHENTICATED"
        assert not await User.exists(email="other.person@example.com")
    assert await User.filter(email="new.person@example.com").count() == 1


async def test_groups_claim_maps_to_groups_by_name(world):
    """The groups claim sets the user's memberships among existing Greenlight groups of those
    names: the member inherits the group's role at once; a claim without it removes it; unknown
    names create nothing."""
    admin = world["admin"]
    data = await admin.ok('mutation { createGroup(name: "shop-approvers") { id } }')
    group_id = data["createGroup"]["id"]
    await admin.ok(
        """mutation($g: ID!) { grantGroupRole(input: {groupId: $g, role: IMAGE_APPROVER,
             application: "shop", environment: "prod"}) { id } }""",
        {"g": group_id},
    )
    groups_before = await Group.all().count()
    nobody = await User.get(email="nobody@example.com")

    member = bearer(world, rs256(claims("nobody@example.com", groups=["shop-approvers", "no-such-team"])))
    data = await member.ok("{ me { email } applications { name } }")
    assert data == {"me": {"email": "nobody@example.com"}, "applications": [{"name": "shop"}]}
    assert await GroupMember.filter(group__name="shop-approvers", user_id=nobody.id).count() == 1
    assert await Group.all().count() == groups_before
    members = await admin.ok(
        "query($g: ID!) { group(id: $g) { members { edges { node { email } } } } }", {"g": group_id}
    )
    assert members["group"]["members"]["edges"] == [{"node": {"email": "nobody@example.com"}}]
    # as a member they approve (R4)
    image = await world.register_image("dev")
    request = await world.request_approval(image, "shop/prod", who="dev2")
    data = await member.ok("mutation($id: ID!) { approveRequest(id: $id) { state } }", {"id": request})
    assert data["approveRequest"]["state"] == "PENDING"
    # the same token again changes nothing
    await member.ok(ME)
    assert await GroupMember.filter(user_id=nobody.id).count() == 1

    gone = bearer(world, rs256(claims("nobody@example.com", groups=["no-such-team"])))
    assert (await gone.ok("{ applications { name } }"))["applications"] == []
    assert await GroupMember.filter(user_id=nobody.id).count() == 0
    request2 = await world.request_approval(await world.register_image("dev"), "shop/prod", who="dev2")
    code = await gone.code("mutation($id: ID!) { approveRequest(id: $id) { state } }", {"id": request2})
    assert code == "NOT_FOUND"
    # the membership changes are in the audit log
    assert await AuditEvent.filter(action="sync_groups").count() == 2


async def test_no_groups_claim_configured_leaves_memberships_alone(world, settings):
    """Without jwt_groups_claim, a `groups` claim is ignored and admin-made memberships stay."""
    admin = world["admin"]
    group_id = (await admin.ok('mutation { createGroup(name: "team") { id } }'))["createGroup"]["id"]
    await admin.ok(
        "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }",
        {"g": group_id, "u": world["nobody"].user_id},
    )
    async with other_app(dataclasses.replace(settings, jwt_groups_claim=None)) as http:
        token = rs256(claims("nobody@example.com", groups=[]))
        assert await email_of(Client(http, token)) == "nobody@example.com"
    assert await GroupMember.filter(group__name="team").count() == 1


# --- HS256 mode ------------------------------------------------------------------------------------


async def test_hs256_mode_accepts_only_hs256_with_the_secret(world, settings):
    """With jwt_secret, an HS256 token signed with it works; RS256 (even from the JWKS keys),
    another secret, alg none, expired and wrong-audience tokens are UNAUTHENTICATED."""
    hs_settings = dataclasses.replace(settings, jwt_jwks_url=None, jwt_secret=SECRET)
    async with other_app(hs_settings) as http:

        def client(token: str) -> Client:
            return Client(http, token)

        good = jwt.encode(claims("approver2@example.com"), SECRET, algorithm="HS256")
        assert await email_of(client(good)) == "approver2@example.com"
        refused = {
            "RS256": rs256(claims("approver2@example.com")),
            "ES256": es256(claims("approver2@example.com")),
            "other secret": jwt.encode(claims(), "x" * 40, algorithm="HS256"),
            "HS512": jwt.encode(claims(), SECRET, algorithm="HS512"),
            "alg none": hand_made({"alg": "none", "typ": "JWT"}, claims(), None),
            "expired": jwt.encode(claims(exp=int(time.time()) - 120), SECRET, algorithm="HS256"),
            "wrong audience": jwt.encode(claims(aud="other"), SECRET, algorithm="HS256"),
            "wrong issuer": jwt.encode(claims(iss="https://evil.example.com/"), SECRET, algorithm="HS256"),
        }
        for case, token in refused.items():
            error = await client(token).fails(ME)
            assert error["extensions"]["code"] == "UNAUTHENTICATED", case
        assert await email_of(client(world["dev"].token)) == "dev@example.com"


async def test_r5_a_membership_dropped_by_a_jwts_groups_is_in_force_at_once(world):
    """R5: the groups claim syncs memberships while the request authenticates, before its
    roles are brought up to date. An answer given before (the member may see shop/prod
    through the group) is not given after the membership is gone: the pipeline is
    NOT_FOUND (R1) on that very request."""
    admin = world["admin"]
    group_id = (await admin.ok('mutation { createGroup(name: "shop-approvers") { id } }'))["createGroup"][
        "id"
    ]
    await admin.ok(
        """mutation($g: ID!) { grantGroupRole(input: {groupId: $g, role: IMAGE_APPROVER,
             application: "shop", environment: "prod"}) { id } }""",
        {"g": group_id},
    )
    nobody = await User.get(email="nobody@example.com")
    member = bearer(world, rs256(claims("nobody@example.com", groups=["shop-approvers"])))
    variables = {"id": world.ids["shop/prod"]}
    pipeline = "query($id: ID!) { pipeline(id: $id) { id } }"
    for _ in range(3):  # the first joins the group
        assert (await member.ok(pipeline, variables))["pipeline"]["id"] == world.ids["shop/prod"]
    gone = bearer(world, rs256(claims("nobody@example.com", groups=[])))
    assert await gone.code(pipeline, variables) == "NOT_FOUND"
    assert await GroupMember.filter(user_id=nobody.id).count() == 0


# --- email_verified, the groups claim, and what a failing provider says -----------------------------


@pytest.mark.parametrize("value", [False, "false", 0, "0", "no", None, "true", 1])
async def test_email_verified_other_than_json_true_is_refused(world, value):
    """A token whose email_verified claim is present and anything but a JSON true (the
    string "false", 0, even "true" or 1) is UNAUTHENTICATED: the provider has not vouched
    for the address."""
    token = rs256({**claims("dev@example.com"), "email_verified": value})
    error = await bearer(world, token).fails(ME)
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "verified" in error["message"]


async def test_email_verified_true_or_absent_is_accepted(world):
    assert (
        await email_of(bearer(world, rs256(claims("dev@example.com", email_verified=True))))
        == "dev@example.com"
    )
    assert await email_of(bearer(world, rs256(claims("dev@example.com")))) == "dev@example.com"


async def test_groups_claim_absent_changes_no_membership_and_an_empty_list_empties(world):
    """A membership a super-admin added stays while the user signs in with JWTs that carry
    no groups claim (or a null one); a token whose claim is an empty list ends it."""
    admin = world["admin"]
    group_id = (await admin.ok('mutation { createGroup(name: "shop-approvers") { id } }'))["createGroup"][
        "id"
    ]
    await admin.ok(
        "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }",
        {"g": group_id, "u": world["nobody"].user_id},
    )
    nobody = await User.get(email="nobody@example.com")
    for token in (
        rs256(claims("nobody@example.com")),
        rs256(claims("nobody@example.com") | {"groups": None}),
    ):
        assert await email_of(bearer(world, token)) == "nobody@example.com"
        assert await GroupMember.filter(user_id=nobody.id).count() == 1
    assert (
        await email_of(bearer(world, rs256(claims("nobody@example.com", groups=[])))) == "nobody@example.com"
    )
    assert await GroupMember.filter(user_id=nobody.id).count() == 0


async def test_jwks_unavailable_tells_the_caller_only_that_sign_in_is_unavailable(
    world, jwks, settings, caplog
):
    """The JWKS answers 404: the caller learns neither its URL nor the server's answer,
    only that sign-in is unavailable; the log says what failed, and where."""
    missing = jwks.url.replace("jwks.json", "missing.json")
    broken = dataclasses.replace(settings, jwt_jwks_url=missing)
    with caplog.at_level("WARNING", logger="greenlight.sso"):
        async with other_app(broken) as http:
            error = await Client(http, rs256(claims())).fails(ME)
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert error["message"] == greenlight.sso.UNAVAILABLE
    for secret in ("127.0.0.1", "missing.json", "404", "http"):
        assert secret not in json.dumps(error)
    assert missing in caplog.text


# --- OpenID Connect discovery ----------------------------------------------------------------------


def discovering(settings: Settings, jwks: Jwks) -> Settings:
    return dataclasses.replace(settings, jwt_jwks_url=None, jwt_issuer=None, oidc_issuer=jwks.issuer)


async def test_oidc_discovery_gives_the_keys_the_algorithms_and_the_issuer(world, jwks, settings):
    """GREENLIGHT_OIDC_ISSUER: the discovery document, served over HTTP by the issuer, names
    the JWKS and the algorithms. Tokens of that issuer signed with an offered algorithm are
    accepted; ES256 (not offered) and tokens of another issuer are refused. The document is
    fetched once and kept."""
    async with other_app(discovering(settings, jwks)) as http:
        good = Client(http, rs256(claims("dev@example.com", iss=jwks.issuer)))
        assert await email_of(good) == "dev@example.com"
        assert await email_of(good) == "dev@example.com"
        refused = {
            "ES256, not offered": es256(claims("dev@example.com", iss=jwks.issuer)),
            "another issuer": rs256(claims("dev@example.com")),
            "expired": rs256(claims("dev@example.com", iss=jwks.issuer, exp=int(time.time()) - 120)),
        }
        for case, token in refused.items():
            assert await Client(http, token).code(ME) == "UNAUTHENTICATED", case
        assert jwks.discovery_hits == 1
        assert jwks.hits == 1

        jwks.discovery["id_token_signing_alg_values_supported"] = ["RS256", "ES256"]
        greenlight.sso._discovery.fetched_at -= 301  # refresh_seconds defaults to 300
        assert (
            await email_of(Client(http, es256(claims("dev@example.com", iss=jwks.issuer))))
            == "dev@example.com"
        )
        assert jwks.discovery_hits == 2


UNUSABLE_DISCOVERY = {
    "no document (404)": lambda served: None,
    "another issuer": lambda served: {"issuer": "https://evil.example.com/", "jwks_uri": served.url},
    "no jwks_uri": lambda served: {"issuer": served.issuer},
    "only HS256": lambda served: {
        "issuer": served.issuer,
        "jwks_uri": served.url,
        "id_token_signing_alg_values_supported": ["HS256"],
    },
}


@pytest.mark.parametrize("case", list(UNUSABLE_DISCOVERY))
async def test_oidc_discovery_unusable_refuses_sign_in_and_says_nothing_of_the_provider(
    world, jwks, settings, caplog, case
):
    """A discovery document that is missing, of another issuer, without keys or offering no
    algorithm Greenlight accepts: JWTs are refused as "sign-in unavailable", the caller
    learns no URL; the log says what is wrong. API tokens keep working."""
    document = UNUSABLE_DISCOVERY[case](jwks)
    jwks.discovery = document
    with caplog.at_level("WARNING", logger="greenlight.sso"):
        async with other_app(discovering(settings, jwks)) as http:
            error = await Client(http, rs256(claims("dev@example.com", iss=jwks.issuer))).fails(ME)
            assert await email_of(Client(http, world["dev"].token)) == "dev@example.com"
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert error["message"] == greenlight.sso.UNAVAILABLE
    assert "127.0.0.1" not in json.dumps(error)
    assert "openid-configuration" in caplog.text


def test_oidc_issuer_is_read_and_checked_at_start():
    from greenlight.config import ConfigError

    env = {"GREENLIGHT_OIDC_ISSUER": "https://idp.example.com/realms/acme", "GREENLIGHT_JWT_AUDIENCE": "gl"}
    settings = Settings.from_env(env)
    assert settings.oidc_issuer == "https://idp.example.com/realms/acme"
    for bad in (
        {"GREENLIGHT_JWT_AUDIENCE": ""},
        {"GREENLIGHT_OIDC_ISSUER": "idp.example.com"},
        {"GREENLIGHT_JWT_JWKS_URL": "https://idp.example.com/jwks"},
        {"GREENLIGHT_JWT_SECRET": "s" * 40},
    ):
        with pytest.raises(ConfigError):
            Settings.from_env({**env, **bad})
