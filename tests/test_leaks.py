"""Leaked secrets: signed reports in GitHub's secret scanning format, "check a secret", and
the fingerprints the portal keeps (real Keycloak, real mail sink)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import connection
from django.test import Client
from django.urls import reverse

from apikeys.credentials.secret_format import new_secret
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.models import Api, ApiKey, AuditEntry, LeakReport, SecretFingerprint, User
from apikeys.operations import leaks, lifecycle
from tests.accounts import force_login_with_second_factor
from tests.factories import issue, secret_works
from tests.mail import plain_text, wait_for_message

pytestmark = pytest.mark.usefixtures("key_clients", "real_smtp")

KEY_ID = "test-reporter-key-1"


class Reporter:
    """A secret scanner with its own ECDSA pair, trusted through SECRET_SCANNING_KEYS."""

    def __init__(self, private: ec.EllipticCurvePrivateKey, key_id: str = KEY_ID) -> None:
        self.private = private
        self.key_id = key_id

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.private.sign(body, ec.ECDSA(hashes.SHA256()))).decode()

    def report(self, client: Client, found: list[dict[str, Any]], **headers: str) -> Any:
        body = json.dumps(found).encode()
        signed = {
            "Github-Public-Key-Identifier": self.key_id,
            "Github-Public-Key-Signature": self.sign(body),
        }
        return client.post(
            reverse("secret_scanning"),
            body,
            content_type="application/json",
            headers=signed | headers,
        )


@pytest.fixture
def reporter(settings: Any, tmp_path: Path) -> Iterator[Reporter]:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    keys = tmp_path / "scanning-keys.json"
    entry = {"key_identifier": KEY_ID, "key": pem.decode(), "is_current": True}
    keys.write_text(json.dumps({"public_keys": [entry]}))
    settings.SECRET_SCANNING_KEYS = str(keys)
    leaks.forget_trusted_keys()
    yield Reporter(private)
    leaks.forget_trusted_keys()


def found(
    secret: str, url: str = "https://github.com/octo/app/blob/abc/settings.py"
) -> dict[str, str]:
    return {"token": secret, "type": "apikey_portal_secret", "url": url, "source": "content"}


@pytest.mark.embedded
def test_a_reported_current_secret_suspends_the_key_at_once_and_mails_the_owner(
    reporter: Reporter, customer: User, sample: Api, client: Client, bootstrapped: Connection
) -> None:
    revealed = issue(customer, sample)

    answer = reporter.report(client, [found(revealed.secret)])

    assert answer.status_code == 200
    assert answer.json() == [
        {
            "token_hash": hashlib.sha256(revealed.secret.encode()).hexdigest(),
            "token_type": "apikey_portal_secret",
            "label": "true_positive",
        }
    ]
    key = ApiKey.objects.get(pk=revealed.key.pk)
    assert key.status == ApiKey.Status.SUSPENDED
    assert key.secret_exposed_at is not None
    assert not keycloak.get_client(bootstrapped, key.keycloak_id)["enabled"]
    assert not secret_works(key, revealed.secret)
    entry = key.audit_entries.get(action=AuditEntry.Action.SUSPENDED)
    assert entry.actor is None
    assert "github.com/octo/app" in entry.reason
    reported = key.audit_entries.get(action=AuditEntry.Action.LEAK_REPORTED)
    assert "current secret" in reported.reason
    message = plain_text(wait_for_message(customer.email))
    assert "https://github.com/octo/app/blob/abc/settings.py" in message
    assert f"/keys/{key.pk}/rotate/" in message
    assert revealed.secret not in message
    assert LeakReport.objects.get(key=key).verdict == LeakReport.Verdict.CURRENT


def test_the_owners_one_click_rotate_brings_the_key_back_with_a_new_secret(
    reporter: Reporter, customer: User, sample: Api, client: Client
) -> None:
    revealed = issue(customer, sample)
    reporter.report(client, [found(revealed.secret)])
    owner = Client()
    owner.force_login(customer)
    form = owner.get(reverse("rotate_key", args=[revealed.key.pk])).content.decode()
    assert "found exposed: it must stop now" in form
    assert "1 hour" not in form  # no grace for an exposed secret

    rotated = owner.post(reverse("rotate_key", args=[revealed.key.pk]), {"grace_hours": "0"})

    assert rotated.status_code == 200
    key = ApiKey.objects.get(pk=revealed.key.pk)
    assert key.status == ApiKey.Status.ACTIVE
    assert key.secret_exposed_at is None
    new = rotated.content.decode().split('data-testid="client-secret">')[1].split("<")[0]
    assert secret_works(key, new)
    assert not secret_works(key, revealed.secret)
    entry = key.audit_entries.filter(action=AuditEntry.Action.REINSTATED).get()
    assert entry.reason == "Its exposed secret was replaced."


def test_an_exposed_key_cannot_be_reinstated_or_approved_before_its_secret_is_rotated(
    reporter: Reporter, customer: User, sample: Api, client: Client, admin_user: User
) -> None:
    revealed = issue(customer, sample)
    reporter.report(client, [found(revealed.secret)])

    with pytest.raises(Exception, match="must rotate it first"):
        lifecycle.reinstate_key(revealed.key, actor=admin_user)

    assert not secret_works(revealed.key, revealed.secret)


def test_the_admin_setting_revokes_instead(
    reporter: Reporter, customer: User, sample: Api, client: Client, admin_user: User
) -> None:
    admin = Client()
    force_login_with_second_factor(admin, admin_user)
    saved = admin.post(reverse("manage_leaks"), {"action": "revoke"}, follow=True)
    assert "will be revoked" in saved.content.decode()
    assert AuditEntry.objects.filter(action=AuditEntry.Action.SETTING_CHANGED).exists()
    revealed = issue(customer, sample)

    reporter.report(client, [found(revealed.secret)])

    key = ApiKey.objects.get(pk=revealed.key.pk)
    assert key.status == ApiKey.Status.REVOKED
    assert not secret_works(key, revealed.secret)
    listing = admin.get(reverse("manage_leaks")).content.decode()
    assert key.client_id in listing
    assert "github.com/octo/app" in listing


def test_a_reported_previous_secret_ends_its_grace_and_leaves_the_current_one(
    reporter: Reporter, customer: User, sample: Api, client: Client
) -> None:
    first = issue(customer, sample)
    second = lifecycle.rotate_secret(first.key, actor=customer, grace=timedelta(hours=2))

    answer = reporter.report(client, [found(first.secret)])

    assert answer.json()[0]["label"] == "true_positive"
    key = ApiKey.objects.get(pk=first.key.pk)
    assert key.status == ApiKey.Status.ACTIVE
    assert not secret_works(key, first.secret)
    assert secret_works(key, second.secret)
    assert LeakReport.objects.get(key=key).verdict == LeakReport.Verdict.PREVIOUS


def test_a_bad_signature_is_refused_and_changes_nothing(
    reporter: Reporter, customer: User, sample: Api, client: Client
) -> None:
    revealed = issue(customer, sample)
    impostor = Reporter(ec.generate_private_key(ec.SECP256R1()))

    forged = impostor.report(client, [found(revealed.secret)])
    unsigned = client.post(
        reverse("secret_scanning"), json.dumps([found(revealed.secret)]), "application/json"
    )
    unknown_key = Reporter(reporter.private, key_id="not-a-trusted-key").report(
        client, [found(revealed.secret)]
    )

    assert forged.status_code == 401
    assert unsigned.status_code == 401
    assert unknown_key.status_code == 401
    assert forged["Content-Type"] == "application/problem+json"
    assert ApiKey.objects.get(pk=revealed.key.pk).status == ApiKey.Status.ACTIVE
    assert secret_works(revealed.key, revealed.secret)
    assert not LeakReport.objects.exists()


def test_unknown_or_ill_formed_tokens_are_answered_false_positive_and_change_nothing(
    reporter: Reporter, customer: User, sample: Api, client: Client
) -> None:
    revealed = issue(customer, sample)
    not_ours = new_secret()  # well formed, never issued
    tampered = revealed.secret[:-1] + ("A" if revealed.secret[-1] != "A" else "B")
    tokens = [not_ours, tampered, "kcak_short", "", "x" * 10_000]

    items: list[Any] = [found(token) for token in tokens] + ["not an object", {"token": 7}]
    answer = reporter.report(client, items)

    assert answer.status_code == 200
    assert [item["label"] for item in answer.json()] == ["false_positive"] * len(items)
    assert ApiKey.objects.get(pk=revealed.key.pk).status == ApiKey.Status.ACTIVE
    assert not LeakReport.objects.exists()
    broken = reporter.sign(b"{not json")
    bad_body = client.post(
        reverse("secret_scanning"),
        b"{not json",
        content_type="application/json",
        headers={"Github-Public-Key-Identifier": KEY_ID, "Github-Public-Key-Signature": broken},
    )
    assert bad_body.status_code == 400


def test_the_endpoint_is_rate_limited_per_address(
    reporter: Reporter, client: Client, settings: Any, db: None
) -> None:
    settings.RATE_LIMITS = settings.RATE_LIMITS | {"leaks": {"address": "3/m"}}
    answers = [reporter.report(client, [found(new_secret())]).status_code for _ in range(5)]

    assert answers == [200, 200, 200, 429, 429]


def test_the_fingerprint_table_holds_no_secret(
    customer: User, sample: Api, bootstrapped: Connection
) -> None:
    made = [issue(customer, sample, name=f"k{n}") for n in range(3)]
    rotated = [lifecycle.rotate_secret(r.key, actor=customer) for r in made[:2]]
    another = issue(customer, sample, name="another", lifetime_days=30)
    secrets = [r.secret for r in made + rotated + [another]]

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM apikeys_secretfingerprint")
        rows = cursor.fetchall()
    dump = repr(rows)

    assert len(rows) == len(secrets)
    for secret in secrets:
        assert secret not in dump
        assert secret[5:] not in dump  # nor its random part
    assert SecretFingerprint.objects.filter(replaced_at__isnull=True).count() == 4


def test_check_a_secret_tells_the_owner_which_key_and_others_nothing(
    customer: User, other_user: User, admin_user: User, sample: Api
) -> None:
    first = issue(customer, sample)
    second = lifecycle.rotate_secret(first.key, actor=customer)

    def check(user: User, secret: str, *, level_2: bool = False) -> str:
        browser = Client()
        if level_2:
            force_login_with_second_factor(browser, user)
        else:
            browser.force_login(user)
        answer = browser.post(reverse("check_secret"), {"secret": secret})
        assert answer.status_code == 200
        assert answer["Cache-Control"].startswith("max-age=0")
        page = answer.content.decode()
        assert secret not in page  # never shown back
        return page

    mine = check(customer, second.secret)
    retired = check(customer, first.secret)
    theirs = check(other_user, second.secret)
    for_admin = check(admin_user, second.secret, level_2=True)
    admin_at_level_1 = check(admin_user, second.secret)
    garbage = check(customer, "hello")

    assert "the current secret" in mine
    assert first.key.client_id in mine
    assert "It can get tokens" in mine
    assert "a former secret, retired" in retired
    assert "no longer works" in retired
    assert first.key.client_id not in theirs
    assert "not the secret of any of your keys" in theirs
    assert customer.email in for_admin
    assert customer.email not in admin_at_level_1  # an administrator's reach needs level 2
    assert "not a secret of this portal" in garbage


def test_a_reported_previous_secret_stops_even_if_keycloak_cannot_be_told_at_once(
    reporter: Reporter,
    customer: User,
    sample: Api,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = issue(customer, sample)
    second = lifecycle.rotate_secret(first.key, actor=customer, grace=timedelta(hours=2))
    real = keycloak.delete_rotated_secret

    def unreachable(conn: Connection, client_uuid: str) -> None:
        raise keycloak.KeycloakUnavailable("read timed out (injected)")

    monkeypatch.setattr(keycloak, "delete_rotated_secret", unreachable)

    answer = reporter.report(client, [found(first.secret)])

    assert answer.json()[0]["label"] == "true_positive"
    key = ApiKey.objects.get(pk=first.key.pk)
    assert key.previous_secret_until is None  # recorded as ended
    assert "reconcile will" in LeakReport.objects.get(key=key).action
    monkeypatch.setattr(keycloak, "delete_rotated_secret", real)
    from apikeys.operations.reconcile import reconcile

    reconcile()

    assert not secret_works(key, first.secret)
    assert secret_works(key, second.secret)
