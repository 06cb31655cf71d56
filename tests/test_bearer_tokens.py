"""The token validator and the sample API, with real tokens from real keys in Keycloak."""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from jwt import PyJWKSet
from jwt.algorithms import RSAAlgorithm

from apikeys.credentials import bearer as bearer_tokens
from apikeys.credentials.bearer import TokenValidator
from apikeys.credentials.challenge import TokenError
from apikeys.keycloak import bootstrap
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.models import Api, ApiKey, User
from apikeys.operations import lifecycle
from tests.factories import issue
from tests.tokens import claims, request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]


class Clock:
    """The validator's clock: real time, moved on by `offset` seconds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def set(self, when: float) -> None:
        self.offset = when - time.time()


def make_validator(**overrides: Any) -> TokenValidator:
    options: dict[str, Any] = {
        "issuer": settings.TOKEN_ISSUER,
        "jwks_url": settings.OIDC_OP_JWKS_ENDPOINT,
        "leeway": 10,
        "refetch_seconds": 30,
    }
    return TokenValidator(**options | overrides)


def new_token(revealed: lifecycle.Revealed) -> str:
    response = request_token(revealed.key.client_id, revealed.secret)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def part(token: str, index: int) -> dict[str, Any]:
    segment = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))  # type: ignore[no-any-return]


def realm_public_key_pem() -> bytes:
    jwks = PyJWKSet.from_dict(requests.get(settings.OIDC_OP_JWKS_ENDPOINT, timeout=5).json())
    key = next(k.key for k in jwks.keys if k.algorithm_name == "RS256")
    return key.public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def revealed(owner: User, sample: Api) -> lifecycle.Revealed:
    return issue(owner, sample, name="partner app", lifetime_days=30)


@pytest.fixture
def token(revealed: lifecycle.Revealed) -> str:
    return new_token(revealed)


def test_a_real_token_of_a_real_key_is_accepted(token: str, revealed: lifecycle.Revealed) -> None:
    accepted = make_validator().validate(token, "sample-api")
    assert accepted["azp"] == revealed.key.client_id


def forge_alg_none(token: str) -> str:
    header = part(token, 0) | {"alg": "none"}
    return f"{b64(json.dumps(header).encode())}.{token.split('.')[1]}."


def forge_hs256_with_the_public_key(token: str) -> str:
    header = b64(json.dumps(part(token, 0) | {"alg": "HS256"}).encode())
    signing_input = f"{header}.{token.split('.')[1]}".encode()
    signature = hmac.new(realm_public_key_pem(), signing_input, hashlib.sha256).digest()
    return f"{header}.{token.split('.')[1]}.{b64(signature)}"


def tamper_payload(token: str) -> str:
    header, _, signature = token.split(".")
    payload = part(token, 1) | {"azp": "apikey-someone-else"}
    return f"{header}.{b64(json.dumps(payload).encode())}.{signature}"


def tamper_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"


def standard_base64_signature(token: str) -> str:
    """The same signature bytes written in standard base64 (`+` and `/`), unpadded."""
    header, payload, signature = token.split(".")
    standard = base64.b64encode(base64.urlsafe_b64decode(signature + "==")).decode().rstrip("=")
    assert standard != signature  # this token's signature has a character that differs
    return f"{header}.{payload}.{standard}"


def padded_signature(token: str) -> str:
    return token + "=" * (-len(token.rpartition(".")[2]) % 4 or 4)


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (lambda t: "not-a-jwt", "three dot-separated parts"),
        (lambda t: t + ".x", "three dot-separated parts"),
        (standard_base64_signature, "not valid base64url"),
        (padded_signature, "not valid base64url"),
        (lambda t: "a.b.c", "not valid base64url"),
        (forge_alg_none, "must be signed with RS256"),
        (forge_hs256_with_the_public_key, "must be signed with RS256"),
        (tamper_payload, "signature is not valid"),
        (tamper_signature, "signature is not valid"),
    ],
    ids=[
        "malformed",
        "four-parts",
        "standard-base64",
        "padded",
        "garbage",
        "alg-none",
        "hs256-with-public-key",
        "payload",
        "signature",
    ],
)
def test_forged_and_tampered_tokens_are_refused(
    token: str, forge: Callable[[str], str], reason: str
) -> None:
    with pytest.raises(TokenError, match=reason):
        make_validator().validate(forge(token), "sample-api")


def test_a_token_for_another_api_is_refused(
    owner: User, key_clients: Connection, revealed: lifecycle.Revealed
) -> None:
    other = Api.objects.create(name="Other API", slug="other", audience="other-api")
    bootstrap.ensure_api_scope(key_clients, other)
    other_token = new_token(issue(owner, other, name="other", lifetime_days=9))

    validator = make_validator()
    assert validator.validate(other_token, "other-api")["aud"] == "other-api"
    with pytest.raises(TokenError, match="not meant for this API"):
        validator.validate(other_token, "sample-api")


def test_a_token_from_another_issuer_is_refused(revealed: lifecycle.Revealed) -> None:
    # The same realm and signing key, reached by another host name: Keycloak's `iss` follows.
    other_host = settings.TOKEN_ENDPOINT.replace("127.0.0.1", "localhost")
    response = requests.post(
        other_host,
        data={"grant_type": "client_credentials"},
        auth=(revealed.key.client_id, revealed.secret),
        timeout=10,
    )
    other_issuer_token = response.json()["access_token"]
    assert claims(other_issuer_token)["iss"] != settings.TOKEN_ISSUER

    with pytest.raises(TokenError, match="another issuer"):
        make_validator().validate(other_issuer_token, "sample-api")


@pytest.fixture
def other_realm(keycloak_admin: Connection) -> Iterator[tuple[str, str, str]]:
    admin = keycloak_admin.admin
    name = f"elsewhere-{uuid.uuid4().hex[:6]}"
    admin.create_realm({"realm": name, "enabled": True})
    admin.change_current_realm(name)
    admin.create_client(
        {
            "clientId": "intruder",
            "secret": "intruder-secret",
            "publicClient": False,
            "serviceAccountsEnabled": True,
            "standardFlowEnabled": False,
            "protocolMappers": [
                {
                    "name": "aud",
                    "protocol": "openid-connect",
                    "protocolMapper": "oidc-audience-mapper",
                    "config": {
                        "included.custom.audience": "sample-api",
                        "access.token.claim": "true",
                    },
                }
            ],
        }
    )
    admin.change_current_realm(settings.KEYCLOAK_REALM)
    yield name, "intruder", "intruder-secret"
    admin.delete_realm(name)


def test_a_token_from_another_realm_is_refused(other_realm: tuple[str, str, str]) -> None:
    realm, client_id, secret = other_realm
    response = requests.post(
        settings.TOKEN_ENDPOINT.replace(f"/realms/{settings.KEYCLOAK_REALM}/", f"/realms/{realm}/"),
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=10,
    )
    foreign = response.json()["access_token"]
    assert "sample-api" in claims(foreign)["aud"]

    with pytest.raises(TokenError, match="does not publish"):
        make_validator().validate(foreign, "sample-api")


def test_an_expired_token_is_refused_after_the_leeway(token: str) -> None:
    clock = Clock()
    validator = make_validator(clock=clock, leeway=10)
    expires = claims(token)["exp"]

    clock.set(expires + 9)  # within the leeway
    validator.validate(token, "sample-api")
    clock.set(expires + 11)

    with pytest.raises(TokenError, match="expired"):
        validator.validate(token, "sample-api")


def test_a_token_seen_before_is_not_verified_again_but_still_expires(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified = []
    key_for = TokenValidator._key_for

    class SpyKey:  # the realm's key, counting the signatures checked with it
        def __init__(self, key: Any) -> None:
            self.key = key

        def verify(self, *args: Any) -> None:
            verified.append(1)
            self.key.verify(*args)

    def spied_key_for(validator: TokenValidator, header: bytes) -> tuple[str, Any]:
        kid, key = key_for(validator, header)
        return kid, SpyKey(key)

    monkeypatch.setattr(TokenValidator, "_key_for", spied_key_for)
    clock = Clock()
    validator = make_validator(clock=clock)

    validator.validate(token, "sample-api")
    validator.validate(token, "sample-api")
    assert len(verified) == 1

    clock.set(claims(token)["exp"] + 60)
    with pytest.raises(TokenError, match="expired"):
        validator.validate(token, "sample-api")


def test_the_cache_of_verified_tokens_is_bounded(revealed: lifecycle.Revealed) -> None:
    validator = make_validator(remember=2)
    for _ in range(4):
        validator.validate(new_token(revealed), "sample-api")
    assert len(validator._verified) == 2


@contextmanager
def rotated_realm_key(keycloak_admin: Connection) -> Iterator[None]:
    """A new RS256 key with the highest priority: Keycloak signs new tokens with it."""
    admin = keycloak_admin.admin
    realm_id = admin.get_realm(settings.KEYCLOAK_REALM)["id"]
    component_id = admin.create_component(
        {
            "name": f"rotated-{uuid.uuid4().hex[:6]}",
            "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": realm_id,
            "config": {
                "priority": ["1000"],
                "keySize": ["2048"],
                "algorithm": ["RS256"],
                "active": ["true"],
                "enabled": ["true"],
            },
        }
    )
    try:
        yield
    finally:
        admin.delete_component(component_id)


def test_after_realm_key_rotation_new_tokens_validate_after_one_refetch(
    revealed: lifecycle.Revealed, keycloak_admin: Connection
) -> None:
    clock = Clock()
    validator = make_validator(clock=clock, refetch_seconds=30)
    before = new_token(revealed)
    validator.validate(before, "sample-api")
    assert validator.jwks_fetches == 1

    with rotated_realm_key(keycloak_admin):
        after = new_token(revealed)
        assert part(after, 0)["kid"] != part(before, 0)["kid"]
        assert validator.validate(after, "sample-api")["azp"] == revealed.key.client_id
        assert validator.jwks_fetches == 2
        validator.validate(before, "sample-api")  # the old key is still published
        assert validator.jwks_fetches == 2


def test_refetching_the_jwks_for_unknown_keys_is_rate_limited(token: str) -> None:
    clock = Clock()
    validator = make_validator(clock=clock, refetch_seconds=30)
    validator.validate(token, "sample-api")
    _, payload, signature = token.split(".")
    unknown = b64(json.dumps(part(token, 0) | {"kid": "no-such-key"}).encode())

    for _ in range(5):
        with pytest.raises(TokenError, match="does not publish"):
            validator.validate(f"{unknown}.{payload}.{signature}", "sample-api")
    assert validator.jwks_fetches == 2  # the first use, and one refetch for the unknown kid

    clock.offset = 31
    with pytest.raises(TokenError, match="does not publish"):
        validator.validate(f"{unknown}.{payload}.{signature}", "sample-api")
    assert validator.jwks_fetches == 3


def whoami(client: Client, token: str | None = None, header: str | None = None) -> Any:
    authorization = header if header is not None else f"Bearer {token}"
    headers = {"Authorization": authorization} if token or header is not None else {}
    return client.get(reverse("whoami"), headers=headers)


def test_whoami_answers_with_the_key_behind_the_token(
    client: Client, token: str, revealed: lifecycle.Revealed, owner: User
) -> None:
    owner.first_name, owner.last_name = "Ada", "Lovelace"
    owner.save()

    response = whoami(client, token)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["client_id"] == revealed.key.client_id
    assert body["key_name"] == "partner app"
    assert body["owner"] == "Ada Lovelace"
    assert body["api"] == "Sample API"
    expires = datetime.fromtimestamp(claims(token)["exp"], tz=UTC)
    assert datetime.fromisoformat(body["token_expires_at"]) == expires


def test_without_a_token_whoami_challenges_without_an_error_code(client: Client) -> None:
    response = whoami(client)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="sample-api"'
    assert response.json()["error"] == "unauthorized"


def test_a_bad_token_gets_an_rfc_6750_error(client: Client, token: str) -> None:
    response = whoami(client, tamper_signature(token))
    assert response.status_code == 401
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="sample-api", error="invalid_token"')
    assert 'error_description="The token' in challenge
    assert response.json() == {
        "error": "invalid_token",
        "error_description": "The token's signature is not valid.",
    }


def test_a_malformed_authorization_header_is_an_invalid_request(client: Client) -> None:
    response = whoami(client, header="Bearer ")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_a_token_in_the_query_string_is_not_accepted(client: Client, token: str) -> None:
    response = client.get(reverse("whoami"), {"access_token": token})
    assert response.status_code == 401


def test_a_revoked_key_gets_no_new_token_and_strict_mode_refuses_its_old_one_at_once(
    client: Client, token: str, revealed: lifecycle.Revealed, owner: User
) -> None:
    assert whoami(client, token).status_code == 200

    lifecycle.revoke_key(revealed.key, actor=owner)

    assert request_token(revealed.key.client_id, revealed.secret).status_code == 401
    response = whoami(client, token)
    assert response.status_code == 401
    assert "is revoked" in response.json()["error_description"]
    # Without strict mode the token, signed and unexpired, would still pass.
    assert make_validator().validate(token, "sample-api")


def test_strict_mode_refuses_a_key_past_its_expiry_before_the_job_runs(
    client: Client, token: str, revealed: lifecycle.Revealed
) -> None:
    ApiKey.objects.filter(pk=revealed.key.pk).update(expires_at=timezone.now())

    response = whoami(client, token)

    assert response.status_code == 401
    assert "has expired" in response.json()["error_description"]


@pytest.mark.usefixtures("sample")
def test_the_partner_guide_is_public_and_names_the_real_endpoints(client: Client) -> None:
    response = client.get(reverse("partner_docs"))
    html = response.content.decode()
    assert response.status_code == 200
    assert settings.TOKEN_ENDPOINT in html
    assert f"{settings.PORTAL_URL}/api/v1/whoami/" in html
    assert "300 seconds" in html


# What strict mode and the validator refuse (fail closed)


def test_a_key_for_one_api_is_refused_by_another_even_with_its_audience(
    owner: User, key_clients: Connection, client: Client, sample: Api
) -> None:
    other = Api.objects.create(name="Other API", slug="other", audience="other-api")
    bootstrap.ensure_api_scope(key_clients, other)
    revealed = issue(owner, other, name="other", lifetime_days=9)
    scope = keycloak.find_client_scope(key_clients, "api-other")
    assert scope is not None
    keycloak.add_mapper(  # someone adds the sample API's audience to it, in Keycloak
        key_clients,
        f"/client-scopes/{scope['id']}",
        {
            "name": "smuggled",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {"included.custom.audience": "sample-api", "access.token.claim": "true"},
        },
    )
    token = new_token(revealed)
    assert "sample-api" in claims(token)["aud"]

    response = whoami(client, token)

    assert response.status_code == 401
    assert "issued for Other API" in response.json()["error_description"]
    assert bootstrap.ensure_api_scope(key_clients, other) == [
        "removed mapper 'smuggled' from api-other"
    ]


def test_strict_is_the_default_and_refuses_the_key_of_a_disabled_owner(
    client: Client, token: str, owner: User
) -> None:
    assert inspect.signature(bearer_tokens.bearer_token_required).parameters["strict"].default
    User.objects.filter(pk=owner.pk).update(is_active=False)

    response = whoami(client, token)

    assert response.status_code == 401
    assert "owner" in response.json()["error_description"]


class OwnIssuer:
    """A token issuer of the test's own: its keys, published as a JWKS on loopback."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"keys": [issuer.jwk(kid) for kid in issuer.published]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/certs"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def publish(self, kid: str) -> None:
        self.keys.setdefault(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        self.published = [kid]

    def jwk(self, kid: str) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}

    def token(self, kid: str, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": "https://issuer.test", "aud": "sample-api", "exp": now + 300} | claims
        return jwt.encode(payload, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def own_issuer() -> Iterator[OwnIssuer]:
    issuer = OwnIssuer()
    yield issuer
    issuer.server.shutdown()
    issuer.server.server_close()


def test_a_token_without_typ_bearer_is_refused(own_issuer: OwnIssuer) -> None:
    own_issuer.publish("k1")
    validator = make_validator(issuer="https://issuer.test", jwks_url=own_issuer.url)

    assert validator.validate(own_issuer.token("k1", typ="Bearer"), "sample-api")
    for token in (own_issuer.token("k1"), own_issuer.token("k1", typ="ID")):
        with pytest.raises(TokenError, match="not an access token"):
            validator.validate(token, "sample-api")


def test_keys_no_longer_published_are_dropped_with_their_tokens(own_issuer: OwnIssuer) -> None:
    own_issuer.publish("old")
    clock = Clock()
    validator = make_validator(
        issuer="https://issuer.test", jwks_url=own_issuer.url, clock=clock, max_age=60
    )
    token = own_issuer.token("old", typ="Bearer")
    validator.validate(token, "sample-api")  # verified, and remembered
    own_issuer.publish("new")  # the issuer rotated and dropped its old key

    clock.offset = 30
    validator.validate(token, "sample-api")  # the JWKS is not due for a refresh yet
    clock.offset = 61
    with pytest.raises(TokenError, match="does not publish"):
        validator.validate(token, "sample-api")
    assert validator.jwks_fetches == 3  # the timed refresh, then one refetch for its kid
    assert validator.validate(own_issuer.token("new", typ="Bearer"), "sample-api")
    assert validator.jwks_fetches == 3
