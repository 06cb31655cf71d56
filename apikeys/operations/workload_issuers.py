"""Trusted workload issuers: an administrator trusts one (a Kubernetes cluster's
service-account issuer, a CI system's OIDC issuer), customers bind workload identity keys to
it, and Keycloak checks the workloads' tokens against its keys.

Keycloak holds each as an identity provider that only checks client assertions
(`desired.workload_provider`), made in the same transaction as the record: if Keycloak refuses,
nothing is trusted. Bootstrap and reconcile converge the providers; a provider of the portal's
with no record (a lost answer, a restore to before the issuer was trusted) is removed, so
Keycloak trusts no issuer the portal does not list.
"""

from __future__ import annotations

import contextlib

from django.conf import settings
from django.db import IntegrityError, transaction

from apikeys.credentials import workloads
from apikeys.credentials.workloads import IssuerOrder as IssuerOrder  # re-exported for callers
from apikeys.keycloak import bootstrap, convergence, desired
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection, Representation
from apikeys.models import LIVE_STATUSES, AuditEntry, User, WorkloadIssuer

OFF = (
    "Workload identity is off in this portal: an operator turns it on with "
    "KEYCLOAK_WORKLOAD_ISSUERS=true (the portal's Keycloak identity then manages identity "
    "providers; see docs/security.md)."
)


class IssuerRefused(Exception):
    """Why an issuer cannot be trusted, or removed, in words for the administrator."""


class IssuerTaken(IssuerRefused):
    """An issuer of that short name or issuer URL is trusted already (a 409 at the API)."""


def check_url(url: str, what: str) -> str:
    """An https URL (http only on a loopback address, for a local issuer), or IssuerRefused."""
    try:
        return workloads.check_issuer_url(url, what)
    except ValueError as bad:
        raise IssuerRefused(str(bad)) from None


def trust_issuer(
    order: IssuerOrder, *, actor: User, ip_address: str | None = None
) -> WorkloadIssuer:
    """Trust an issuer: its record, audited, and its identity provider in Keycloak, together."""
    if not settings.KEYCLOAK_WORKLOAD_ISSUERS:
        raise IssuerRefused(OFF)
    try:
        workloads.check_issuer_slug(order.slug)
    except ValueError as bad:
        raise IssuerRefused(str(bad)) from None
    check_url(order.issuer, "issuer")
    check_url(order.jwks_url, "JWKS URL")
    if not order.name.strip():
        raise IssuerRefused("Give the issuer a name people will recognise.")
    shortest, longest = WorkloadIssuer.TOKEN_AGES
    if not shortest <= order.max_token_age <= longest:
        raise IssuerRefused(f"The longest token age is {shortest} to {longest:,} seconds.")
    conn = keycloak.portal_connection()
    if clash := _same_issuer(keycloak.list_identity_providers(conn), order.issuer, ""):
        raise IssuerRefused(
            f"Keycloak's identity provider {clash} has that issuer already, and Keycloak "
            "refuses tokens of an issuer two providers name: remove it there first."
        )
    try:
        with transaction.atomic():
            issuer = WorkloadIssuer.objects.create(
                slug=order.slug,
                name=order.name.strip(),
                issuer=order.issuer,
                jwks_url=order.jwks_url,
                allows_reuse=order.allows_reuse,
                subject_hint=order.subject_hint.strip(),
                max_token_age=order.max_token_age,
                keys_need_approval=order.keys_need_approval,
            )
            reuse = "a token more than once" if order.allows_reuse else "each token once"
            AuditEntry.record(
                None,
                AuditEntry.Action.ISSUER_ADDED,
                actor=actor,
                ip_address=ip_address,
                reason=f"{issuer.name} ({issuer.issuer}), keys at {issuer.jwks_url}: Keycloak "
                f"takes {reuse}, at most {issuer.max_token_age} s after it was issued.",
            )
            bootstrap.ensure_workload_provider(conn, issuer)
    except IntegrityError:
        raise IssuerTaken(
            "An issuer with that short name or issuer URL is trusted already."
        ) from None
    return issuer


def distrust_issuer(issuer: WorkloadIssuer, *, actor: User, ip_address: str | None = None) -> None:
    """Stop trusting an issuer whose keys have all ended: record and provider go together."""
    with transaction.atomic():
        locked = WorkloadIssuer.objects.select_for_update().filter(pk=issuer.pk).first()
        if locked is None:
            return  # removed meanwhile
        live = locked.keys.filter(status__in=LIVE_STATUSES).count()
        if live:
            keys = "key is" if live == 1 else "keys are"
            raise IssuerRefused(
                f"{live} live {keys} bound to {locked.name}: revoke them first, so that no "
                "partner loses access unannounced."
            )
        AuditEntry.record(
            None,
            AuditEntry.Action.ISSUER_REMOVED,
            actor=actor,
            ip_address=ip_address,
            reason=f"{locked.name} ({locked.issuer}) is no longer trusted.",
        )
        locked.delete()
        with contextlib.suppress(keycloak.NotFound):  # gone already: the wanted end
            keycloak.delete_identity_provider(keycloak.portal_connection(), locked.alias)


def drift(conn: Connection) -> list[tuple[str, str, str]]:
    """What differs between the trusted issuers and Keycloak's providers: (alias, problem,
    what reconcile does: restore, remove or leave), for reconcile's report. Providers another
    portal deployment made on the realm are left to it."""
    every = keycloak.list_identity_providers(conn)
    providers = {p["alias"]: p for p in every if desired.is_own_provider(p)}
    found = []
    for issuer in WorkloadIssuer.objects.all():
        current = providers.pop(issuer.alias, None)
        if current is None:
            found.append((issuer.alias, _missing_or_foreign(every, issuer.alias), "restore"))
        elif convergence.differs(current, desired.workload_provider(issuer)):
            found.append((issuer.alias, "drift in the issuer's identity provider", "restore"))
        elif keycloak.list_provider_mappers(conn, issuer.alias):
            found.append((issuer.alias, "mappers added to the issuer's provider", "restore"))
        if clash := _same_issuer(every, issuer.issuer, issuer.alias):
            problem = f"the identity provider {clash} names its issuer too: Keycloak refuses both"
            found.append((issuer.alias, problem, "leave"))
    for alias in providers:
        found.append((alias, "an identity provider of an issuer not trusted here", "remove"))
    return found


def _missing_or_foreign(providers: list[Representation], alias: str) -> str:
    if any(p.get("alias") == alias for p in providers):
        return "an identity provider the portal did not make has its alias"
    return "the issuer's identity provider is missing"


def _same_issuer(providers: list[Representation], issuer: str, alias: str) -> str | None:
    """Another enabled provider of the realm naming `issuer` (Keycloak finds one by `iss`)."""
    return next(
        (
            str(p.get("alias"))
            for p in providers
            if p.get("alias") != alias
            and p.get("enabled", True)
            and (p.get("config") or {}).get("issuer") == issuer
        ),
        None,
    )


def restore(conn: Connection, alias: str) -> None:
    """Make the provider of the issuer `alias` what the record says (reconcile)."""
    issuer = WorkloadIssuer.objects.filter(slug=alias.removeprefix(WorkloadIssuer.ALIAS_PREFIX))
    if found := issuer.first():
        bootstrap.ensure_workload_provider(conn, found)
        for mapper in keycloak.list_provider_mappers(conn, alias):  # none belongs there
            keycloak.delete_provider_mapper(conn, alias, mapper["id"])


def remove_untrusted(conn: Connection, alias: str) -> None:
    """Remove a provider of the portal's whose issuer is not trusted here (reconcile)."""
    slug = alias.removeprefix(WorkloadIssuer.ALIAS_PREFIX)
    if not WorkloadIssuer.objects.filter(slug=slug).exists():
        keycloak.delete_identity_provider(conn, alias)
