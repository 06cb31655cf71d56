"""Keys signed with a private key (private_key_jwt), against the real Keycloak.

The partner keeps the private key; the portal receives public keys only, checks them, and
makes the client in one POST. These tests sign assertions as a partner would (PyJWT).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from django.test import Client
from django.urls import reverse

from apikeys.credentials import public_keys
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.models import Api, ApiKey, AuditEntry, PublicKey, User
from apikeys.operations import lifecycle
from apikeys.operations.reconcile import reconcile
from tests.assertions import KeyPair, gets_token, jwks_server, token_with_assertion
from tests.factories import issue

pytestmark = pytest.mark.usefixtures("key_clients")


def make_signed_key(owner: User, api: Api, *pairs: KeyPair, name: str = "signed") -> ApiKey:
    """A key with the pairs' public keys, given as PEM (each pair then signs with the kid
    the portal gave it: the key's thumbprint)."""
    accepted = [key for pair in pairs for key in public_keys.parse(pair.public_pem())]
    for pair, public in zip(pairs, accepted, strict=True):
        pair.kid = public.kid
    revealed = issue(
        owner,
        api,
        name=name,
        lifetime_days=30,
        credential=ApiKey.Credential.SIGNED_JWT,
        public_keys=accepted,
    )
    assert revealed.secret == ""
    return revealed.key


def certificate(pair: KeyPair, *, days: int = 30) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "partner")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pair.private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=2))
        .not_valid_after(now + timedelta(days=days))
        .sign(pair.private, hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM).decode()


# What the portal accepts (no Keycloak needed)


@pytest.mark.parametrize(
    ("given", "summary"),
    [
        (lambda: KeyPair.rsa().public_pem(), "RSA 2048 bits"),
        (lambda: json.dumps(KeyPair.rsa(3072).public_jwk()), "RSA 3072 bits"),
        (lambda: json.dumps({"keys": [KeyPair.ec().public_jwk()]}), "EC P-256"),
        (lambda: KeyPair.ed25519().public_pem(), "Ed25519"),
        (lambda: certificate(KeyPair.ec()), "EC P-256"),
    ],
)
def test_it_reads_public_keys_as_pem_certificate_jwk_or_jwks(given: Any, summary: str) -> None:
    [accepted] = public_keys.parse(given())

    assert accepted.summary == summary
    assert not public_keys.PRIVATE_MEMBERS & accepted.jwk.keys()
    assert accepted.jwk["use"] == "sig"
    assert accepted.kid  # given, or its RFC 7638 thumbprint


def test_the_kid_defaults_to_the_rfc7638_thumbprint() -> None:
    # RFC 7638 section 3.1's example key and thumbprint.
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhD"
        "R1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ"
        "5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08q"
        "NLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awap"
        "JzKnqDKgw",
        "e": "AQAB",
    }
    [accepted] = public_keys.parse(json.dumps(jwk))

    assert accepted.kid == accepted.thumbprint == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (lambda: KeyPair.rsa(1024).public_pem(), "RSA key of 1024 bits is too weak"),
        (lambda: certificate(KeyPair.rsa(), days=-1), "certificate has expired"),
        (lambda: json.dumps({"kty": "oct", "k": "c2VjcmV0"}), "private key"),
        (lambda: json.dumps({"keys": []}), "has no keys"),
        (lambda: "ssh-rsa AAAAB3NzaC1yc2E", "not a key we can read"),
        (lambda: "-----BEGIN PUBLIC KEY-----\nAAAA", "cut short"),
        (lambda: json.dumps({"kty": ["RSA"], "n": "x", "e": "AQAB"}), "needs a kty"),
        (lambda: "[" * 10_000, "not valid JSON"),
        (lambda: json.dumps({"kty": "RSA", "n": 5, "e": None}), "could not be read"),
    ],
)
def test_it_refuses_weak_expired_or_unreadable_keys_clearly(given: Any, message: str) -> None:
    with pytest.raises(public_keys.Refused, match=message):
        public_keys.parse(given())


def test_it_refuses_curves_and_kinds_keycloak_is_not_asked_to_take() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    p521 = ec.generate_private_key(ec.SECP521R1()).public_key()
    ed = ed448.Ed448PrivateKey.generate().public_key()
    for public, message in ((p521, "P-256 or P-384"), (ed, "Ed448")):
        pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
        with pytest.raises(public_keys.Refused, match=message):
            public_keys.parse(pem)


@pytest.mark.parametrize("form", ["pem", "jwk", "jwks", "list", "openssh", "pgp"])
def test_private_key_material_is_refused_loudly_as_exposed(form: str) -> None:
    from cryptography.hazmat.primitives import serialization

    pair = KeyPair.rsa()
    openssh = pair.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    given = {
        "pem": pair.private_pem(),
        "jwk": json.dumps(pair.private_jwk()),
        "jwks": json.dumps({"keys": [pair.public_jwk(), pair.private_jwk()]}),
        "list": json.dumps([pair.private_jwk()]),
        "openssh": openssh,
        "pgp": "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF...\n-----END PGP PRIVATE KEY "
        "BLOCK-----",
    }[form]

    with pytest.raises(public_keys.PrivateKeyMaterial, match="treat it as exposed"):
        public_keys.parse(given)


# The key's client in Keycloak, and what it takes


def test_a_signed_assertion_gets_a_token_and_everything_else_is_refused(
    owner: User, sample: Api, bootstrapped: Connection
) -> None:
    pair = KeyPair.rsa()
    key = make_signed_key(owner, sample, pair)
    client = keycloak.get_client(bootstrapped, key.keycloak_id)
    assert client["clientAuthenticatorType"] == "client-jwt"
    assert client["attributes"]["use.jwks.string"] == "true"
    [held] = json.loads(client["attributes"]["jwks.string"])["keys"]
    assert not public_keys.PRIVATE_MEMBERS & held.keys()
    assert held["kid"] == pair.kid

    assertion = pair.assertion(key.client_id)
    answer = token_with_assertion(assertion)
    assert answer.status_code == 200, answer.text
    assert "sample-api" in jwt_audience(answer.json()["access_token"])

    replayed = token_with_assertion(assertion)
    assert replayed.status_code == 400
    assert "reuse" in replayed.json()["error_description"].lower()
    stranger = KeyPair.rsa()
    stranger.kid = pair.kid  # same kid, another key: the signature does not verify
    assert not gets_token(stranger, key.client_id)
    assert not gets_token(pair, key.client_id, audience="https://elsewhere.example")
    assert not gets_token(pair, key.client_id, lifetime=30, issued_ago=120)  # expired
    assert not gets_token(pair, key.client_id, issued_ago=90)  # older than Keycloak takes
    assert gets_token(pair, key.client_id)  # and a fresh one still works


def jwt_audience(access_token: str) -> list[str]:
    from tests.tokens import claims

    aud = claims(access_token)["aud"]
    return aud if isinstance(aud, list) else [aud]


@pytest.mark.parametrize("make", [KeyPair.ec, KeyPair.ed25519])
def test_ec_and_ed25519_keys_work_too(owner: User, sample: Api, make: Any) -> None:
    pair = make()
    key = make_signed_key(owner, sample, pair)

    assert gets_token(pair, key.client_id)


@pytest.mark.embedded
def test_rotation_add_move_over_remove_with_both_keys_working_between(
    owner: User, sample: Api, client: Client
) -> None:
    old, new = KeyPair.rsa(), KeyPair.ec()
    key = make_signed_key(owner, sample, old)
    client.force_login(owner)
    page = reverse("key_detail", args=[key.pk])

    added = client.post(reverse("add_public_key", args=[key.pk]), {"public_key": new.public_pem()})
    assert added.status_code == 302
    new_kid = pem_kid(new)
    assert gets_token(old, key.client_id)
    assert gets_token(new, key.client_id)
    assert set(key.public_keys.values_list("kid", flat=True)) == {old.kid, new_kid}
    assert new_kid in client.get(page).content.decode()

    removed = client.post(reverse("remove_public_key", args=[key.pk, old.kid]))
    assert removed.status_code == 302
    assert not gets_token(old, key.client_id)
    assert gets_token(new, key.client_id)
    last = client.post(reverse("remove_public_key", args=[key.pk, new_kid]), follow=True)
    assert "only public key" in last.content.decode()
    assert gets_token(new, key.client_id)
    actions = set(key.audit_entries.values_list("action", flat=True))
    assert {AuditEntry.Action.PUBLIC_KEY_ADDED, AuditEntry.Action.PUBLIC_KEY_REMOVED} <= actions


def pem_kid(pair: KeyPair) -> str:
    """The kid the portal gives a PEM key (its thumbprint), which the partner then uses."""
    [accepted] = public_keys.parse(pair.public_pem())
    pair.kid = accepted.kid
    return pair.kid


def test_a_jwks_url_served_by_the_partner_works_and_follows_their_rotation(
    owner: User, sample: Api, client: Client
) -> None:
    first, second = KeyPair.rsa(), KeyPair.ed25519()
    with jwks_server() as partner:
        partner.keys = [first.public_jwk()]
        client.force_login(owner)
        made = client.post(
            reverse("new_key"),
            {
                "name": "from a url",
                "api": "sample",
                "lifetime_days": 30,
                "credential": "private_key_jwt",
                "jwks_url": partner.url,
            },
        )
        assert made.status_code == 200, made.content
        key = ApiKey.objects.get(name="from a url")
        assert key.jwks_url == partner.url
        assert not key.public_keys.exists()
        assert "client_assertion" in made.content.decode()  # the reveal shows how to sign
        assert gets_token(first, key.client_id)

        partner.keys = [first.public_jwk(), second.public_jwk()]
        time.sleep(11)  # Keycloak reads a URL again at most every 10 seconds
        assert gets_token(second, key.client_id)
        partner.keys = [second.public_jwk()]
        assert gets_token(first, key.client_id)  # Keycloak still holds what it read
        client.post(reverse("refresh_public_keys", args=[key.pk]))
        assert not gets_token(first, key.client_id)  # forgotten: read again, and gone
        assert gets_token(second, key.client_id)


@pytest.mark.embedded
def test_a_pasted_private_key_is_refused_not_shown_back_and_not_kept(
    owner: User, sample: Api, client: Client
) -> None:
    pair = KeyPair.rsa()
    private = pair.private_pem()
    client.force_login(owner)

    answer = client.post(
        reverse("new_key"),
        {
            "name": "oops",
            "api": "sample",
            "lifetime_days": 30,
            "credential": "private_key_jwt",
            "public_key": private,
        },
    )

    page = answer.content.decode()
    assert "This is a private key" in page
    assert "treat it as exposed" in page
    body = private.splitlines()[1]
    assert body not in page  # not echoed into the form
    assert not ApiKey.objects.filter(name="oops").exists()
    assert not PublicKey.objects.exists()


@pytest.mark.embedded
def test_a_weak_key_or_a_missing_key_gets_a_clear_message_on_the_form(
    owner: User, sample: Api, client: Client
) -> None:
    client.force_login(owner)
    form = {"name": "weak", "api": "sample", "lifetime_days": 30, "credential": "private_key_jwt"}

    weak = client.post(reverse("new_key"), form | {"public_key": KeyPair.rsa(1024).public_pem()})
    missing = client.post(reverse("new_key"), form)

    assert "1024 bits is too weak" in weak.content.decode()
    assert "Give either a public key or the URL of your JWKS" in missing.content.decode()
    assert not ApiKey.objects.exists()


def test_the_reveal_page_snippet_gets_a_token_as_pasted(
    owner: User, sample: Api, client: Client, tmp_path: Path
) -> None:
    pair = KeyPair.ec()
    client.force_login(owner)
    answer = client.post(
        reverse("new_key"),
        {
            "name": "snippet",
            "api": "sample",
            "lifetime_days": 30,
            "credential": "private_key_jwt",
            "public_key": pair.public_pem(),
        },
    )
    page = answer.content.decode()
    key = ApiKey.objects.get(name="snippet")
    assert f'KEY_ID = "{key.public_keys.get().kid}"' in page
    snippet = snippet_text(page, f"snippet-jwt-{key.pk}")
    (tmp_path / "private_key.pem").write_text(pair.private_pem())
    script = snippet + "\nprint(access_token)\n"

    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout.count(".") == 2  # a JWT


def snippet_text(page: str, element_id: str) -> str:
    import html
    import re

    found = re.search(rf'<pre id="{element_id}"><code>(.*?)</code></pre>', page, re.DOTALL)
    assert found, f"no snippet {element_id}"
    return html.unescape(found.group(1))


def test_reconcile_puts_back_the_public_keys_the_records_hold(
    owner: User, sample: Api, bootstrapped: Connection
) -> None:
    pair, intruder = KeyPair.rsa(), KeyPair.rsa()
    key = make_signed_key(owner, sample, pair)
    jwks = {"keys": [intruder.public_jwk()]}
    keycloak.update_client(
        bootstrapped, key.keycloak_id, {"attributes": {"jwks.string": json.dumps(jwks)}}
    )
    assert gets_token(intruder, key.client_id)

    report = reconcile()

    assert any(f.client_id == key.client_id and f.done for f in report.findings)
    assert not gets_token(intruder, key.client_id)
    assert gets_token(pair, key.client_id)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://keys.example.com/jwks.json", "https://"),
        ("https://127.0.0.1/jwks.json", "private or reserved address"),
        ("https://localhost/jwks.json", "private or reserved address"),
        ("https://keys.example.com:8443/jwks.json", "standard https port"),
        ("https://10.1.2.3/jwks.json", "private or reserved address"),
        ("https://user:pw@keys.example.com/jwks.json", "passwords"),
        ("https://keys.example.com:99999/jwks.json", "not a valid port"),
        ("https://[::ffff:10.0.0.1]/jwks.json", "private or reserved address"),
    ],
)
def test_in_production_the_portal_fetches_only_public_https_addresses(
    settings: Any, url: str, message: str
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = False

    with pytest.raises(public_keys.Refused, match=message):
        public_keys.from_url(url)


def test_a_removal_keycloak_is_not_told_of_is_said_and_finished_by_sending_again(
    owner: User, sample: Api, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = KeyPair.rsa(), KeyPair.ec()
    key = make_signed_key(owner, sample, old, new)
    real = keycloak.update_client

    def unreachable(conn: Connection, client_uuid: str, rep: dict[str, Any]) -> None:
        raise keycloak.KeycloakUnavailable("read timed out (injected)")

    monkeypatch.setattr(keycloak, "update_client", unreachable)
    client.force_login(owner)

    answer = client.post(reverse("remove_public_key", args=[key.pk, old.kid]), follow=True)

    assert "Keycloak could not be told yet" in answer.content.decode()
    assert list(key.public_keys.values_list("kid", flat=True)) == [new.kid]
    assert gets_token(old, key.client_id)  # Keycloak still has it: the page said so
    monkeypatch.setattr(keycloak, "update_client", real)
    client.post(reverse("refresh_public_keys", args=[key.pk]))
    assert not gets_token(old, key.client_id)
    assert gets_token(new, key.client_id)


def test_an_addition_keycloak_refuses_is_taken_back(
    owner: User, sample: Api, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = KeyPair.rsa(), KeyPair.ec()
    key = make_signed_key(owner, sample, old)

    def unreachable(conn: Connection, client_uuid: str, rep: dict[str, Any]) -> None:
        raise keycloak.KeycloakUnavailable("read timed out (injected)")

    monkeypatch.setattr(keycloak, "update_client", unreachable)
    with pytest.raises(keycloak.KeycloakUnavailable):
        lifecycle.add_public_keys(key, public_keys.parse(new.public_pem()), actor=owner)

    assert list(key.public_keys.values_list("kid", flat=True)) == [old.kid]
    pem_kid(new)
    assert not gets_token(new, key.client_id)


def test_sending_the_keys_again_remakes_a_deleted_client_and_suspends_the_key(
    owner: User, sample: Api, bootstrapped: Connection
) -> None:
    pair = KeyPair.rsa()
    key = make_signed_key(owner, sample, pair)
    keycloak.delete_client(bootstrapped, key.keycloak_id)  # by an operator

    lifecycle.refresh_public_keys(key, actor=owner)

    key.refresh_from_db()
    assert key.status == ApiKey.Status.SUSPENDED
    assert "Send its public keys" in key.status_reason
    assert not gets_token(pair, key.client_id)  # made disabled, for an admin to reinstate
    admin = User.objects.create(username="admin-x", email="admin-x@example.com", is_staff=True)
    lifecycle.reinstate_key(key, actor=admin)
    assert gets_token(pair, key.client_id)
