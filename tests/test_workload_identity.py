"""Workload identity keys against the real Keycloak, with a real token issuer of the tests'
own (tests/issuer.py) standing for a workload platform: a Kubernetes cluster, a CI system.

An administrator trusts the issuer, a customer binds a key to one of its workloads, and the
workload gets Keycloak tokens with its platform's token alone. Then what keeps Keycloak and
the records in agreement: distrust, bootstrap, reconcile, recovery, DPoP changed by hand.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from requests_oauth2client import DPoPKey, OAuth2Client

from apikeys.credentials import workloads
from apikeys.keycloak import bootstrap, desired
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.keycloak.key_clients import DPOP_ATTRIBUTE
from apikeys.models import Api, ApiKey, AuditEntry, User, WorkloadIssuer
from apikeys.operations import lifecycle, workload_issuers
from apikeys.operations.reconcile import reconcile
from apikeys.operations.workload_issuers import IssuerOrder, IssuerRefused
from tests.assertions import token_with_assertion
from tests.conftest import sample_api
from tests.factories import issue
from tests.issuer import Issuer, WorkloadAssertion, serving
from tests.tokens import claims, request_token

SUBJECT = "system:serviceaccount:billing:invoicer"
INVALID_CLIENT = "Invalid client or Invalid client credentials"  # Keycloak says no more
NO_PROOF = "DPoP proof is missing"
TOO_OLD = "Token was issued too far in the past to be used now"

pytestmark = pytest.mark.usefixtures("key_clients", "providers_removed")


def trust(
    issuer: Issuer, admin: User, slug: str = "cluster", *, allows_reuse: bool = False
) -> WorkloadIssuer:
    described = IssuerOrder(
        slug=slug,
        name=f"Cluster {slug}",
        issuer=issuer.url,
        jwks_url=issuer.jwks_url,
        allows_reuse=allows_reuse,
        keys_need_approval=False,  # what Keycloak does with the keys is tested here
    )
    return workload_issuers.trust_issuer(described, actor=admin)


def workload_key(
    owner: User, api: Api, trusted: WorkloadIssuer, name: str = "invoicer", **order: bool
) -> ApiKey:
    revealed = issue(
        owner,
        api,
        name,
        credential=ApiKey.Credential.WORKLOAD,
        workload_issuer=trusted,
        workload_subject=SUBJECT,
        **order,
    )
    assert revealed.secret == ""  # nothing to leak
    return revealed.key


def token_for(issuer: Issuer, subject: str = SUBJECT, **token_claims: int) -> requests.Response:
    """A token request with a fresh token of the workload's platform, as it would send."""
    return token_with_assertion(issuer.token(subject, settings.TOKEN_ISSUER, **token_claims))


def refusal(answer: requests.Response) -> str:
    """Why Keycloak gave no token (its error_description); fails if it gave one."""
    assert answer.status_code in (400, 401), answer.text
    return str(answer.json()["error_description"])


def dpop_client(issuer: Issuer) -> OAuth2Client:
    """requests-oauth2client, authenticating as the workload and proving a DPoP key
    (`testing`: the test Keycloak answers on loopback over http, which it refuses otherwise)."""
    auth = WorkloadAssertion(issuer, SUBJECT, settings.TOKEN_ISSUER)
    return OAuth2Client(
        settings.TOKEN_ENDPOINT, auth=auth, dpop_bound_access_tokens=True, testing=True
    )


def test_a_workload_gets_tokens_with_its_platforms_token_and_with_nothing_else(
    customer: User,
    admin_user: User,
    sample: Api,
    loopback_issuer: Issuer,
    client: Client,
    bootstrapped: Connection,
) -> None:
    trusted = trust(loopback_issuer, admin_user)
    provider = keycloak.get_identity_provider(bootstrapped, "workload-cluster")
    assert provider is not None
    assert provider["config"]["issuer"] == loopback_issuer.url
    assert provider["config"]["supportsClientAssertions"] == "true"
    assert provider["hideOnLogin"] is True
    added = AuditEntry.objects.get(action=AuditEntry.Action.ISSUER_ADDED)
    assert added.actor == admin_user
    assert loopback_issuer.url in added.reason
    key = workload_key(customer, sample, trusted)
    held = keycloak.get_client(bootstrapped, key.keycloak_id)
    assert held["clientAuthenticatorType"] == "federated-jwt"
    assert held["attributes"]["jwt.credential.issuer"] == "workload-cluster"
    assert held["attributes"]["jwt.credential.sub"] == SUBJECT

    platform_token = loopback_issuer.token(SUBJECT, settings.TOKEN_ISSUER)
    answer = token_with_assertion(platform_token)
    assert answer.status_code == 200, answer.text
    access_token = answer.json()["access_token"]
    assert claims(access_token)["azp"] == key.client_id
    whoami = client.get(reverse("whoami"), headers={"Authorization": f"Bearer {access_token}"})
    assert whoami.status_code == 200, whoami.content
    assert whoami.json()["client_id"] == key.client_id
    assert loopback_issuer.jwks_fetches >= 1  # Keycloak read the platform's keys itself

    assert refusal(token_with_assertion(platform_token)) == "Token reuse detected"  # by default
    intruder = token_for(loopback_issuer, "system:serviceaccount:billing:intruder")
    assert refusal(intruder) == INVALID_CLIENT
    now = int(time.time())
    expired = token_for(loopback_issuer, iat=now - 90, exp=now - 30)
    assert refusal(expired) == "Token is not active"
    assert token_for(loopback_issuer).status_code == 200  # a fresh one still works
    with serving() as elsewhere:
        assert refusal(token_for(elsewhere)) == INVALID_CLIENT  # an issuer not trusted
        lenient = trust(elsewhere, admin_user, slug="ci", allows_reuse=True)
        other = workload_key(customer, sample, lenient, name="ci job")
        reusable = elsewhere.token(SUBJECT, settings.TOKEN_ISSUER)
        for _ in range(2):
            again = token_with_assertion(reusable)
            assert again.status_code == 200, again.text
            assert claims(again.json()["access_token"])["azp"] == other.client_id
        # Reused or not, Keycloak takes a token up to 5 minutes after its iat, whatever its exp.
        kept = elsewhere.token(SUBJECT, settings.TOKEN_ISSUER, iat=now - 310, exp=now + 3000)
        assert refusal(token_with_assertion(kept)) == TOO_OLD


def test_a_workload_key_that_requires_dpop_gets_tokens_only_with_a_proof(
    customer: User, admin_user: User, sample: Api, loopback_issuer: Issuer
) -> None:
    trusted = trust(loopback_issuer, admin_user)
    workload_key(customer, sample, trusted, requires_dpop=True)

    bare = token_for(loopback_issuer)
    proof_key = DPoPKey.generate()
    token = dpop_client(loopback_issuer).client_credentials(dpop_key=proof_key)

    assert refusal(bare) == NO_PROOF
    assert token.token_type.lower() == "dpop"
    assert claims(str(token.access_token))["cnf"]["jkt"] == proof_key.dpop_jkt


@pytest.mark.embedded
def test_an_issuer_is_distrusted_only_once_its_keys_have_ended(
    customer: User,
    admin_user: User,
    sample: Api,
    loopback_issuer: Issuer,
    bootstrapped: Connection,
) -> None:
    trusted = trust(loopback_issuer, admin_user)
    key = workload_key(customer, sample, trusted)
    everything = [sample_api()]
    assert bootstrap.run(bootstrapped, everything, issuers=WorkloadIssuer.objects.all()) == []

    with pytest.raises(IssuerRefused, match="1 live key is bound to Cluster cluster: revoke"):
        workload_issuers.distrust_issuer(trusted, actor=admin_user)
    assert keycloak.get_identity_provider(bootstrapped, trusted.alias) is not None
    # Ended, the key keeps its disabled client (an expired key's), bound to the issuer.
    lifecycle.expire_due_keys(key.expires_at + timedelta(seconds=1))
    workload_issuers.distrust_issuer(trusted, actor=admin_user)

    assert keycloak.get_identity_provider(bootstrapped, trusted.alias) is None
    assert not WorkloadIssuer.objects.exists()
    removed = AuditEntry.objects.get(action=AuditEntry.Action.ISSUER_REMOVED)
    assert (removed.actor, removed.reason) == (
        admin_user,
        f"Cluster cluster ({loopback_issuer.url}) is no longer trusted.",
    )
    key.refresh_from_db()
    assert (key.status, key.workload_issuer) == (ApiKey.Status.EXPIRED, None)
    # Reconcile still reads the ended key's client as it is: nothing to fix, nothing breaks.
    report = reconcile()
    assert [f for f in report.findings if f.client_id == key.client_id] == []


def test_reconcile_restores_a_changed_provider_and_removes_one_no_issuer_stands_for(
    customer: User,
    admin_user: User,
    sample: Api,
    loopback_issuer: Issuer,
    bootstrapped: Connection,
) -> None:
    trusted = trust(loopback_issuer, admin_user)
    workload_key(customer, sample, trusted)
    provider = keycloak.get_identity_provider(bootstrapped, trusted.alias)
    assert provider is not None
    changed = provider | {"config": provider["config"] | {"supportsClientAssertions": "false"}}
    keycloak.update_identity_provider(bootstrapped, trusted.alias, changed)  # by an operator
    assert refusal(token_for(loopback_issuer)) == INVALID_CLIENT
    gone = WorkloadIssuer(  # trusted once, its record lost since (a restore)
        slug="gone", name="Gone", issuer="http://127.0.0.1:9", jwks_url="http://127.0.0.1:9/jwks"
    )
    keycloak.create_identity_provider(bootstrapped, desired.workload_provider(gone))

    report = reconcile()

    found = {f.client_id: (f.action, f.done) for f in report.findings}
    assert found == {trusted.alias: ("restore it", True), gone.alias: ("remove it", True)}
    restored = keycloak.get_identity_provider(bootstrapped, trusted.alias)
    assert restored is not None
    assert restored["config"]["supportsClientAssertions"] == "true"
    assert keycloak.get_identity_provider(bootstrapped, gone.alias) is None
    assert token_for(loopback_issuer).status_code == 200
    assert reconcile().findings == []


@pytest.mark.embedded
def test_a_lost_workload_key_is_recovered_with_its_issuer_subject_and_dpop(
    customer: User,
    admin_user: User,
    sample: Api,
    loopback_issuer: Issuer,
    bootstrapped: Connection,
) -> None:
    trusted = trust(loopback_issuer, admin_user)
    lost = ApiKey(  # its client made as the portal makes it, its record never saved
        owner=customer,
        api=sample,
        name="x",
        expires_at=timezone.now() + timedelta(days=30),
        credential=ApiKey.Credential.WORKLOAD,
        workload_issuer=trusted,
        workload_subject=SUBJECT,
        requires_dpop=True,
    )
    lost.client_id = f"{ApiKey.CLIENT_ID_PREFIX}{lost.pk.hex}"
    keycloak.create_client(bootstrapped, desired.key_client(lost, now=timezone.now()))

    report = reconcile(grace=timedelta(0))

    assert [f.done for f in report.findings] == [True], report.findings
    key = ApiKey.objects.get(pk=lost.pk)
    assert key.credential == ApiKey.Credential.WORKLOAD
    assert (key.workload_issuer, key.workload_subject) == (trusted, SUBJECT)
    assert key.requires_dpop is True
    assert (key.status, key.owner) == (ApiKey.Status.ACTIVE, customer)
    assert AuditEntry.objects.filter(key=key, action=AuditEntry.Action.RECOVERED).exists()
    token = dpop_client(loopback_issuer).client_credentials()
    assert claims(str(token.access_token))["azp"] == key.client_id
    assert reconcile().findings == []


def test_reconcile_keeps_dpop_an_operator_turned_on_and_restores_it_turned_off(
    customer: User, sample: Api, bootstrapped: Connection
) -> None:
    plain = issue(customer, sample, "plain")
    bound = issue(customer, sample, "bound", requires_dpop=True)
    for revealed, value in ((plain, "true"), (bound, "false")):  # by an operator
        change = {"attributes": {DPOP_ATTRIBUTE: value}}
        keycloak.update_client(bootstrapped, revealed.key.keycloak_id, change)

    report = reconcile()

    found = {f.client_id: f for f in report.findings}
    assert set(found) == {plain.key.client_id, bound.key.client_id}
    assert all(f.done for f in found.values())
    assert "DPoP narrowed in Keycloak" in found[plain.key.client_id].problem
    for revealed in (plain, bound):
        held = keycloak.get_client(bootstrapped, revealed.key.keycloak_id)
        assert held["attributes"][DPOP_ATTRIBUTE] == "true"
        assert refusal(request_token(revealed.key.client_id, revealed.secret)) == NO_PROOF
    plain.key.refresh_from_db()
    assert plain.key.requires_dpop is True
    entry = AuditEntry.objects.get(key=plain.key, action=AuditEntry.Action.DPOP_CHANGED)
    assert entry.actor is None
    assert "outside the portal" in entry.reason
    assert reconcile().findings == []


@pytest.mark.embedded
def test_without_the_operators_opt_in_no_issuer_is_trusted(
    admin_user: User, loopback_issuer: Issuer, bootstrapped: Connection, settings: Any
) -> None:
    settings.KEYCLOAK_WORKLOAD_ISSUERS = False

    with pytest.raises(IssuerRefused, match="KEYCLOAK_WORKLOAD_ISSUERS=true"):
        trust(loopback_issuer, admin_user)
    assert not WorkloadIssuer.objects.exists()
    assert desired.WORKLOAD_ISSUERS_ROLE not in desired.service_roles()


def test_in_production_an_issuer_is_trusted_over_https_only(settings: Any) -> None:
    settings.PROFILE = "production"

    with pytest.raises(ValueError, match="must use https"):
        workloads.check_issuer_url("http://127.0.0.1:8799/", "issuer")
    assert workloads.check_issuer_url("https://oidc.example.com/id/1", "issuer")
