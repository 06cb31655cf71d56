"""The pages of DPoP-bound keys and workload identity keys, without JavaScript, against the
real Keycloak: the create form, the reveal, the key page, and the admin's trusted issuers.

The issuer is trusted at a loopback URL nothing serves: Keycloak reads an issuer's keys only
when a workload's token arrives, and none does here (tests/test_workload_identity.py does).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from html import unescape
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from apikeys.credentials import workloads
from apikeys.credentials.secret_format import PATTERN
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.keycloak.key_clients import DPOP_ATTRIBUTE
from apikeys.models import Api, ApiKey, Membership, TeamRole, User, WorkloadIssuer
from apikeys.operations import lifecycle, teams
from tests.accounts import force_login_with_second_factor
from tests.factories import submit_key_form, unique_user
from tests.tokens import request_token

pytestmark = pytest.mark.usefixtures("key_clients", "sample")

SUBJECT = "system:serviceaccount:billing:invoicer"


def signed_in(person: User) -> Client:
    client = Client()
    force_login_with_second_factor(client, person)  # administrators need it; others may
    return client


def dpop_of(conn: Connection, key: ApiKey) -> str | None:
    return keycloak.get_key_client(conn, key.keycloak_id).marks.get(DPOP_ATTRIBUTE)


def snippet(html: str, kind: str) -> str:
    """The code of the page's snippet `kind`, as a partner copies it."""
    found = re.search(rf'<pre id="snippet-{kind}-[^"]+">(.*?)</pre>', html, re.S)
    assert found is not None, kind
    return unescape(re.sub(r"<[^>]+>", "", found.group(1)))


def assert_a_refusal_is_told_with_its_reason(html: str, key: ApiKey) -> None:
    """The key's pasted snippets, its key suspended between the token and the call: the
    call prints the API's 401 and its reason, not the library's word for it."""
    program = snippet(html, "dpop") + "\nprint('token', flush=True)\ninput()\n"
    program += snippet(html, "dpopcall")
    pasted = subprocess.Popen(
        [sys.executable, "-c", program],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert pasted.stdout is not None
    assert pasted.stdout.readline() == "token\n"
    lifecycle.suspend_key(key, actor=None, reason="a test")
    out, err = pasted.communicate("\n", timeout=30)
    assert out.startswith("401 "), err
    assert "suspended" in out, out
    lifecycle.reinstate_key(key, actor=None)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_server")
def test_a_dpop_key_from_the_form_needs_proofs_until_a_developer_not_a_viewer_turns_it_off(
    key_clients: Connection, sample: Api
) -> None:
    developer, viewer = unique_user(), unique_user()
    team = teams.create_team(developer, "Acme")
    Membership.objects.create(team=team, user=viewer, role=TeamRole.VIEWER)
    as_developer = signed_in(developer)

    made = submit_key_form(as_developer, "bound", requires_dpop="on", team=str(team.pk))

    html = made.content.decode()

    key = ApiKey.objects.get(name="bound")
    secret = PATTERN.findall(html)[0]
    assert key.requires_dpop
    assert dpop_of(key_clients, key) == "true"
    assert "DPoP proof is missing" in html
    assert request_token(key.client_id, secret).status_code == 400  # no proof, no token
    pasted = subprocess.run(
        [sys.executable, "-c", snippet(html, "dpop") + "\n" + snippet(html, "dpopcall")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    status, answer = pasted.stdout.split(" ", 1)
    assert (status, json.loads(answer)["key_name"]) == ("200", "bound"), pasted.stderr
    assert_a_refusal_is_told_with_its_reason(html, key)
    listed = as_developer.get(reverse("team", args=[team.pk])).content.decode()
    assert 'data-testid="dpop-badge"' in listed

    page = reverse("key_detail", args=[key.pk])
    as_viewer = signed_in(viewer)
    assert 'data-testid="dpop-form"' not in as_viewer.get(page).content.decode()
    refused = as_viewer.post(
        reverse("set_dpop", args=[key.pk]),
        {"requires_dpop": "false"},
        HTTP_REFERER=f"http://testserver{page}",
        follow=True,
    )
    assert "you may not change its keys" in refused.content.decode()
    assert dpop_of(key_clients, key) == "true"

    assert 'data-testid="dpop-form"' in as_developer.get(page).content.decode()
    turned = as_developer.post(
        reverse("set_dpop", args=[key.pk]), {"requires_dpop": "false"}, follow=True
    )

    shown = turned.content.decode()
    assert "DPoP proofs are no longer required" in shown
    assert "Proof of possession changed" in shown  # in the key's history
    assert dpop_of(key_clients, key) == "false"
    assert request_token(key.client_id, secret).status_code == 200


def workload_key_form(client: Client, name: str, subject: str, justification: str = "") -> Any:
    """The create form, for a workload of the issuer the test trusts."""
    return submit_key_form(
        client,
        name,
        credential="workload",
        workload_issuer="test-cluster",
        workload_subject=subject,
        justification=justification,
    )


@pytest.fixture
def issuer_url() -> str:
    """A loopback URL where nothing listens (a port the system just gave and took back)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.mark.usefixtures("providers_removed")
def test_an_admin_trusts_an_issuer_and_a_customer_binds_a_workload_key_to_it(
    key_clients: Connection, issuer_url: str
) -> None:
    as_admin, as_customer = signed_in(unique_user(staff=True)), signed_in(unique_user())
    offered = as_customer.get(reverse("new_key")).content.decode()
    assert "Workload identity (no issuer is trusted here yet: ask an administrator)" in offered
    issuers = reverse("manage_issuers")
    assert "No issuer is trusted yet" in as_admin.get(issuers).content.decode()
    described = {
        "slug": "test-cluster",
        "name": "Test cluster",
        "issuer": "ftp://127.0.0.1/",
        "jwks_url": "http://issuer.example.com/jwks",
        "allows_reuse": "on",
        "max_token_age": "3600",
        "keys_need_approval": "on",
        "subject_hint": "system:serviceaccount:<namespace>:<name>",
    }
    bad = as_admin.post(reverse("manage_issuer_add"), described).content.decode()
    assert "The issuer must be an https URL." in bad
    assert "The JWKS URL must use https." in bad
    assert not WorkloadIssuer.objects.exists()

    described |= {"issuer": issuer_url, "jwks_url": f"{issuer_url}jwks"}
    trusted = as_admin.post(reverse("manage_issuer_add"), described, follow=True)
    assert "Test cluster is trusted" in trusted.content.decode()
    assert "new ones wait for an administrator's approval" in trusted.content.decode()
    assert keycloak.get_identity_provider(key_clients, "workload-test-cluster") is not None

    form = as_customer.get(reverse("new_key")).content.decode()
    assert f"Test cluster ({issuer_url})" in form
    assert "Test cluster: system:serviceaccount:&lt;namespace&gt;:&lt;name&gt;." in form
    typo = workload_key_form(as_customer, "invoicer", "billing sa")
    assert "visible ASCII characters, no spaces" in typo.content.decode()
    assert 'value="billing sa"' in typo.content.decode()  # nothing typed is lost
    assert not ApiKey.objects.exists()

    unsaid = workload_key_form(as_customer, "invoicer", SUBJECT).content.decode()
    assert "a key for a workload of Test cluster needs an administrator" in unsaid
    why = "Our billing namespace's invoicer"
    made = workload_key_form(as_customer, "invoicer", SUBJECT, justification=why)
    reveal = made.content.decode()
    key = ApiKey.objects.get(name="invoicer")
    assert key.status == ApiKey.Status.PENDING  # an administrator checks the subject first
    queue = as_admin.get(reverse("manage_approvals")).content.decode()
    assert SUBJECT in queue
    as_admin.post(reverse("manage_approve", args=[key.pk]))
    key.refresh_from_db()
    assert key.status == ApiKey.Status.ACTIVE
    assert 'data-testid="workload-notice"' in reveal
    assert not PATTERN.findall(reveal)
    assert "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" in reveal
    assert f"audience: {settings.TOKEN_ISSUER}" in snippet(reveal, "kubernetes")
    assert "serviceAccountName: invoicer" in snippet(reveal, "kubernetes")
    assert "expirationSeconds: 3600" in snippet(reveal, "kubernetes")
    trusted_for = WorkloadIssuer.objects.filter(slug="test-cluster")
    trusted_for.update(max_token_age=300)  # younger than a projected token gets: no fit
    short = as_customer.get(reverse("key_detail", args=[key.pk])).content.decode()
    assert "expirationSeconds: 600" in snippet(short, "kubernetes")  # the shortest there is
    assert "ask an administrator to allow at least 480" in short
    trusted_for.update(max_token_age=3600)
    assert settings.TOKEN_ENDPOINT in snippet(reveal, "workloadcurl")
    client = keycloak.get_client(key_clients, key.keycloak_id)
    assert client["clientAuthenticatorType"] == "federated-jwt"
    assert client["attributes"]["jwt.credential.sub"] == SUBJECT
    assert client["attributes"]["jwt.credential.issuer"] == "workload-test-cluster"
    page = as_customer.get(reverse("key_detail", args=[key.pk])).content.decode()
    assert SUBJECT in page
    assert reverse("rotate_key", args=[key.pk]) not in page

    again = workload_key_form(as_customer, "invoicer 2", SUBJECT, justification=why)
    assert workloads.TAKEN in again.content.decode()

    remove = reverse("manage_issuer_remove", args=["test-cluster"])
    kept = as_admin.post(remove, follow=True).content.decode()
    assert "1 live key is bound to Test cluster: revoke them first" in kept
    assert WorkloadIssuer.objects.filter(slug="test-cluster").exists()

    lifecycle.revoke_key(key, actor=key.owner)
    assert "no longer trusted" in as_admin.post(remove, follow=True).content.decode()
    assert keycloak.get_identity_provider(key_clients, "workload-test-cluster") is None
    trail = as_admin.get(reverse("manage_audit")).content.decode()
    assert "Workload issuer trusted" in trail
    assert "Workload issuer no longer trusted" in trail
