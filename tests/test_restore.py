"""Restores and shared realms: reconcile never deletes a key a partner uses.

The drills back up the real database (pg_dump on PostgreSQL, a copy of the file on SQLite),
make keys, put the backup back and reconcile. A second portal deployment, with its own
database and instance id, runs as a real process beside the test's on the same realm.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

from apikeys.credentials import public_keys
from apikeys.credentials.secret_format import new_secret
from apikeys.keycloak import client as keycloak
from apikeys.keycloak import desired
from apikeys.keycloak.client import Connection
from apikeys.keycloak.key_clients import (
    EXPIRES_ATTRIBUTE,
    INSTANCE_ATTRIBUTE,
    QUARANTINED_ATTRIBUTE,
)
from apikeys.models import Api, ApiKey, AuditEntry, User, WrongState
from apikeys.operations import lifecycle
from apikeys.operations.reconcile import describe, reconcile
from devstack import postgres
from tests.assertions import KeyPair, gets_token
from tests.conftest import key_clients_in_keycloak
from tests.factories import issue
from tests.mail import messages_to, plain_text
from tests.tokens import request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients", "real_smtp")]
ROOT = Path(__file__).resolve().parent.parent


def take_backup(where: Path) -> Callable[[], None]:
    """Back up the test database now; the function returned puts the backup back."""
    connections.close_all()
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        with sqlite3.connect(db["NAME"]) as live, sqlite3.connect(where) as copy:
            live.backup(copy)

        def put_back() -> None:
            connections.close_all()
            with sqlite3.connect(where) as copy, sqlite3.connect(db["NAME"]) as live:
                copy.backup(live)

        return put_back
    target = ["-h", db["HOST"], "-p", str(db["PORT"]), "-U", db["USER"]]
    subprocess.run(
        [str(postgres.bin_dir() / "pg_dump"), *target, "-Fc", "-f", str(where), db["NAME"]],
        check=True,
    )

    def restore() -> None:
        connections.close_all()
        subprocess.run(
            [
                str(postgres.bin_dir() / "pg_restore"),
                *target,
                "--clean",
                "--if-exists",
                "--single-transaction",
                "-d",
                db["NAME"],
                str(where),
            ],
            check=True,
        )

    return restore


@dataclass
class Lost:
    """A key whose client is in Keycloak but whose record this database never had."""

    client_id: str
    secret: str
    keycloak_id: str
    pk: uuid.UUID


def lost_key(conn: Connection, owner: User, api: Api, **attributes: str) -> Lost:
    """A client as the portal made it, sealed, for a key whose record is gone."""
    key = ApiKey(owner=owner, api=api, name="x", expires_at=timezone.now() + timedelta(days=30))
    key.client_id = f"{ApiKey.CLIENT_ID_PREFIX}{key.pk.hex}"
    secret = new_secret()
    client = desired.key_client(key, now=timezone.now(), secret=secret)
    client["attributes"] |= attributes
    return Lost(key.client_id, secret, keycloak.create_client(conn, client), key.pk)


def signed_key(owner: User, api: Api, pair: KeyPair) -> ApiKey:
    accepted = public_keys.parse(pair.public_pem())
    pair.kid = accepted[0].kid
    return issue(
        owner,
        api,
        name="signed",
        lifetime_days=30,
        credential=ApiKey.Credential.SIGNED_JWT,
        public_keys=accepted,
    ).key


@pytest.mark.django_db(transaction=True)  # the backup must see what was committed
def test_a_restored_database_loses_no_key_made_after_the_backup(
    owner: User, sample: Api, admin_user: User, key_clients: Connection, tmp_path: Path
) -> None:
    before = issue(owner, sample, "before the backup")
    put_back = take_backup(tmp_path / "backup")
    after = issue(owner, sample, "after the backup")
    pair = KeyPair.rsa()
    signed = signed_key(owner, sample, pair)
    stopped = issue(owner, sample, "suspended after the backup").key
    lifecycle.suspend_key(stopped, actor=admin_user, reason="incident")
    clients_before_restore = {c["clientId"] for c in key_clients_in_keycloak(key_clients)}

    put_back()
    assert set(ApiKey.objects.values_list("name", flat=True)) == {"before the backup"}
    report = reconcile(grace=timedelta(0))

    assert all(f.done for f in report.findings), report.findings
    assert {c["clientId"] for c in key_clients_in_keycloak(key_clients)} == clients_before_restore
    mine = {k.client_id: k for k in ApiKey.objects.filter(owner=owner)}
    assert set(mine) == clients_before_restore
    assert request_token(after.key.client_id, after.secret).status_code == 200
    assert request_token(before.key.client_id, before.secret).status_code == 200
    assert gets_token(pair, signed.client_id)
    recovered = mine[after.key.client_id]
    assert recovered.status == "active"
    assert recovered.recovered_at is not None
    assert abs(recovered.expires_at - after.key.expires_at) < timedelta(seconds=1)
    assert mine[signed.client_id].public_keys.get().kid == pair.kid
    assert mine[stopped.client_id].status == "suspended"  # disabled stays disabled
    assert request_token(stopped.client_id, "kcak_any").status_code == 401
    recovered_entries = AuditEntry.objects.filter(action=AuditEntry.Action.RECOVERED)
    assert recovered_entries.count() == 3
    mail = [plain_text(m).replace("\n", "") for m in messages_to(owner.email)]
    for key in (recovered, mine[signed.client_id], mine[stopped.client_id]):
        told = [text for text in mail if f"/keys/{key.pk}/rename/" in text]
        assert len(told) == 1, key.client_id
    again = reconcile(grace=timedelta(0))
    assert again.findings == [], list(describe(again))


def test_the_owner_names_a_recovered_key_and_the_notice_goes(
    owner: User, sample: Api, key_clients: Connection, client: Any
) -> None:
    made = lost_key(key_clients, owner, sample)
    reconcile(grace=timedelta(0))
    client.force_login(owner)

    page = client.get(f"/keys/{made.pk}/").content.decode()
    assert 'data-testid="recovered"' in page
    taken = issue(owner, sample, "billing")
    refused = client.post(f"/keys/{made.pk}/rename/", {"name": "billing"})
    assert "already have a key with this name" in refused.content.decode()
    client.post(f"/keys/{made.pk}/rename/", {"name": "payments", "description": "prod"})

    key = ApiKey.objects.get(pk=made.pk)
    assert (key.name, key.description, key.recovered_at) == ("payments", "prod", None)
    assert 'data-testid="recovered"' not in client.get(f"/keys/{key.pk}/").content.decode()
    assert AuditEntry.objects.filter(key=key, action=AuditEntry.Action.RENAMED).exists()
    assert taken.key.name == "billing"


def test_a_client_whose_owner_is_unknown_is_quarantined_then_deleted(
    owner: User, sample: Api, key_clients: Connection, settings: Any
) -> None:
    stranger = str(uuid.uuid4())
    made = lost_key(key_clients, User(username=stranger), sample)  # no such account anywhere

    report = reconcile(grace=timedelta(0))

    assert [f.action for f in report.findings] == ["quarantine it (disable)"]
    client = keycloak.get_client(key_clients, made.keycloak_id)
    assert client["enabled"] is False
    assert request_token(made.client_id, made.secret).status_code == 401
    entry = AuditEntry.objects.get(action=AuditEntry.Action.QUARANTINED)
    assert entry.client_id == made.client_id
    assert stranger in entry.reason
    assert [f.action for f in reconcile(grace=timedelta(0)).findings] == [
        f"left disabled; deleted after {settings.QUARANTINE_DAYS} days"
    ]

    keycloak.update_client(key_clients, made.keycloak_id, {"enabled": True})  # by hand
    assert [f.action for f in reconcile(grace=timedelta(0)).findings] == ["disable it again"]
    assert keycloak.get_client(key_clients, made.keycloak_id)["enabled"] is False

    later = timezone.now() + timedelta(days=settings.QUARANTINE_DAYS, minutes=1)
    assert [f.action for f in reconcile(grace=timedelta(0), now=later).findings] == ["delete it"]
    assert keycloak.find_client(key_clients, made.client_id) is None
    assert AuditEntry.objects.filter(action=AuditEntry.Action.UNQUARANTINED).count() == 1


def test_a_quarantined_client_comes_back_enabled_once_its_owner_signs_in(
    sample: Api, key_clients: Connection
) -> None:
    late = User(username=str(uuid.uuid4()), email="late@example.com")  # not in this database
    made = lost_key(key_clients, late, sample)
    reconcile(grace=timedelta(0))
    assert request_token(made.client_id, made.secret).status_code == 401

    late.save()  # they sign in again
    reconcile(grace=timedelta(0))

    key = ApiKey.objects.get(client_id=made.client_id)
    assert key.status == "active"
    assert request_token(made.client_id, made.secret).status_code == 200
    marks = keycloak.get_client(key_clients, made.keycloak_id)["attributes"]
    assert QUARANTINED_ATTRIBUTE not in marks


def test_marked_clients_without_a_stamp_and_record_are_left_alone_unless_claimed(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    made = lost_key(key_clients, owner, sample, **{INSTANCE_ATTRIBUTE: ""})

    report = reconcile(grace=timedelta(0))
    assert [f.action.split(":")[0] for f in report.findings] == ["left alone"]
    assert not ApiKey.objects.exists()

    reconcile(grace=timedelta(0), claim_unstamped=True)
    key = ApiKey.objects.get(client_id=made.client_id)
    assert key.status == "active"
    stamp = keycloak.get_client(key_clients, key.keycloak_id)["attributes"]
    assert stamp[INSTANCE_ATTRIBUTE] == settings.PORTAL_INSTANCE_ID


def test_a_key_made_before_the_stamp_is_adopted_once(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    made = issue(owner, sample, "old")
    keycloak.update_client(
        key_clients, made.key.keycloak_id, {"attributes": {INSTANCE_ATTRIBUTE: ""}}
    )

    assert len(reconcile(grace=timedelta(0)).findings) == 1
    assert reconcile(grace=timedelta(0)).findings == []
    entry = AuditEntry.objects.filter(key=made.key, action=AuditEntry.Action.REPAIRED).get()
    assert "stamped" in entry.reason
    assert request_token(made.key.client_id, made.secret).status_code == 200


def test_after_a_keycloak_restore_the_owner_is_mailed_a_one_click_reissue(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    made = issue(owner, sample, "made after Keycloak's backup")
    keycloak.delete_client(key_clients, made.key.keycloak_id)  # what Keycloak's restore does

    reconcile(grace=timedelta(0))

    key = ApiKey.objects.get(pk=made.key.pk)
    assert key.status == "suspended"
    assert key.client_missing_since is not None
    assert keycloak.find_client(key_clients, key.client_id) is None  # nothing recreated
    mail = [plain_text(m).replace("\n", "") for m in messages_to(owner.email)]
    told = [text for text in mail if key.client_id in text and "suspended" in text]
    assert len(told) == 1
    assert f"/keys/{key.pk}/rotate/" in told[0]


class OtherPortal:
    """A second deployment of the portal on the same realm: its own database and instance id."""

    def __init__(self, where: Path) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{where / 'other.sqlite3'}",
            "PORTAL_INSTANCE_ID": "other-portal",
        }
        self.manage("migrate", "--no-input", "-v0")

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def issue_key(self) -> tuple[str, str]:
        script = (
            "from apikeys.models import Api, User; from tests.factories import issue;"
            "from tests.conftest import sample_api;"
            "owner = User.objects.create(username='other-owner', email='o@example.com');"
            "api = sample_api(); api.save();"
            "made = issue(owner, api, name='theirs', lifetime_days=30);"
            "print('made', made.key.client_id, made.secret)"
        )
        out = self.manage("shell", "-c", script)
        line = next(line for line in out.splitlines() if line.startswith("made "))
        _, client_id, secret = line.split()
        return client_id, secret


@pytest.mark.django_db(transaction=True)
def test_two_portals_on_one_realm_never_touch_each_others_keys(
    owner: User, sample: Api, key_clients: Connection, tmp_path: Path
) -> None:
    other = OtherPortal(tmp_path)
    theirs_id, theirs_secret = other.issue_key()
    mine = issue(owner, sample, "mine")

    for run in ("mine", "theirs", "mine"):  # both orders
        if run == "mine":
            report = reconcile(grace=timedelta(0))
            assert report.findings == [], list(describe(report))
            assert report.others == 1
        else:
            out = other.manage("reconcile_keycloak")
            assert "0 problems" in out, out
            assert "1 of other portal deployments" in out, out

    assert request_token(theirs_id, theirs_secret).status_code == 200
    assert request_token(mine.key.client_id, mine.secret).status_code == 200
    assert not ApiKey.objects.filter(client_id=theirs_id).exists()


def test_a_deactivated_owners_client_is_quarantined_and_a_far_expiry_is_cut_to_the_apis(
    owner: User, other_user: User, sample: Api, key_clients: Connection
) -> None:
    other_user.is_active = False
    other_user.save()
    gone = lost_key(key_clients, other_user, sample)
    far = str(int((timezone.now() + timedelta(days=3650)).timestamp()))
    kept = lost_key(key_clients, owner, sample, **{EXPIRES_ATTRIBUTE: far})

    reconcile(grace=timedelta(0))

    assert not ApiKey.objects.filter(client_id=gone.client_id).exists()
    assert keycloak.get_client(key_clients, gone.keycloak_id)["enabled"] is False
    assert request_token(gone.client_id, gone.secret).status_code == 401
    recovered = ApiKey.objects.get(client_id=kept.client_id)
    longest = timezone.now() + timedelta(days=sample.max_key_lifetime_days)
    assert recovered.expires_at <= longest


def test_a_copy_of_another_deployments_database_changes_none_of_its_clients(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    made = issue(owner, sample, "production's")
    theirs = ApiKey.objects.filter(pk=made.key.pk)
    theirs.update(instance="production", expires_at=timezone.now() - timedelta(minutes=1))
    key = theirs.get()

    report = reconcile(grace=timedelta(0))
    assert [f.action for f in report.findings] == [
        "left alone: this record is a copy of another deployment's"
    ]
    with pytest.raises(WrongState, match="made by the portal deployment 'production'"):
        lifecycle.rotate_secret(key, actor=owner)
    assert lifecycle.expire_due_keys().expired == []

    assert theirs.get().status == "active"
    assert request_token(key.client_id, made.secret).status_code == 200


@pytest.mark.django_db(transaction=True)  # the backup must see what was committed
def test_a_customer_who_joined_after_the_backup_keeps_their_key_working(
    sample: Api, key_clients: Connection, make_keycloak_user: Any, tmp_path: Path
) -> None:
    put_back = take_backup(tmp_path / "backup")
    account = make_keycloak_user()  # signs up after the backup, signs in, makes a key
    newcomer = User.objects.create(username=account.id, email=account.email)
    made = issue(newcomer, sample, "made by a newcomer")

    put_back()
    assert not User.objects.filter(username=account.id).exists()
    report = reconcile(grace=timedelta(0))

    assert [f.action for f in report.findings] == ["rebuild its record"], list(describe(report))
    assert all(f.done for f in report.findings)
    key = ApiKey.objects.get(client_id=made.key.client_id)
    assert key.status == "active"
    assert (key.owner.username, key.owner.email, key.owner.is_active) == (
        account.id,
        account.email,
        True,
    )
    assert request_token(made.key.client_id, made.secret).status_code == 200
    entry = AuditEntry.objects.get(key=key, action=AuditEntry.Action.RECOVERED)
    assert "rebuilt from Keycloak" in entry.reason
    assert any(f"/keys/{key.pk}/rename/" in plain_text(m) for m in messages_to(account.email))
    assert reconcile(grace=timedelta(0)).findings == []


def test_a_disabled_or_deleted_owner_in_keycloak_still_means_quarantine(
    sample: Api, key_clients: Connection, make_keycloak_user: Any
) -> None:
    disabled, deleted = make_keycloak_user(), make_keycloak_user()
    key_clients.admin.update_user(disabled.id, {"enabled": False})
    key_clients.admin.delete_user(deleted.id)
    lost = [
        lost_key(key_clients, User(username=account.id), sample) for account in (disabled, deleted)
    ]

    report = reconcile(grace=timedelta(0))

    assert [f.action for f in report.findings] == ["quarantine it (disable)"] * 2
    problems = {f.client_id: f.problem for f in report.findings}
    assert "disabled in Keycloak" in problems[lost[0].client_id]
    assert "no account in Keycloak" in problems[lost[1].client_id]
    assert not User.objects.exists()
    for made in lost:
        assert request_token(made.client_id, made.secret).status_code == 401


@pytest.mark.django_db(transaction=True)  # the backup must see what was committed
def test_a_rotation_made_after_the_backup_keeps_its_grace_period(
    owner: User, sample: Api, key_clients: Connection, tmp_path: Path
) -> None:
    before = issue(owner, sample, "rotated after the backup")
    put_back = take_backup(tmp_path / "backup")
    rotated = lifecycle.rotate_secret(before.key, actor=owner, grace=timedelta(hours=2))
    later = issue(owner, sample, "made and rotated after the backup")
    again = lifecycle.rotate_secret(later.key, actor=owner, grace=timedelta(hours=1))

    put_back()
    report = reconcile(grace=timedelta(0))

    assert "end it" not in [f.action for f in report.findings], list(describe(report))
    assert all(f.done for f in report.findings), list(describe(report))
    for old, new in ((before, rotated), (later, again)):
        assert request_token(old.key.client_id, old.secret).status_code == 200  # still in grace
        assert request_token(new.key.client_id, new.secret).status_code == 200
        recorded = ApiKey.objects.get(client_id=new.key.client_id).previous_secret_until
        assert recorded is not None
        assert new.key.previous_secret_until is not None
        assert abs(recorded - new.key.previous_secret_until) < timedelta(seconds=1)
    assert reconcile(grace=timedelta(0)).findings == []


@pytest.mark.django_db(transaction=True)  # the backup must see what was committed
def test_a_key_software_registered_after_the_backup_is_still_its_to_manage(
    owner: User, sample: Api, key_clients: Connection, tmp_path: Path
) -> None:
    from apikeys.operations import registration

    made = registration.create_token(
        owner, api=sample, name="ci", max_registrations=3, expires_in_days=7, key_lifetime_days=9
    )
    put_back = take_backup(tmp_path / "backup")
    metadata = registration.Metadata(
        client_name="deploy", contacts=[], auth_method="client_secret_basic", scope=None
    )
    registered = registration.register(made.secret, metadata, ip_address="127.0.0.1")

    put_back()
    reconcile(grace=timedelta(0))

    key = registration.registered_key(registered.key.client_id, registered.access_token)
    assert key is not None
    assert key.registered_with == made.token
    assert request_token(key.client_id, registered.secret).status_code == 200
    assert reconcile(grace=timedelta(0)).findings == []
