"""Software that registers itself: registration tokens, and RFC 7591/7592 registration.

Design: the portal's own registration endpoint (apikeys/views/registration.py), not Keycloak's.
A registered client is made exactly as every key is (`lifecycle.issue_key`: the record and its
quota first, then one POST of the whole client, the portal's secret format, approval, audit,
webhooks); Keycloak's own registration endpoints stay closed to everyone by realm policy
(`desired.registration_closed`). So there is one path that makes keys and one set of rules.

A registration token (`kcrt_…`, shown once, SHA-256 kept) belongs to a person or a team, names
an API and the permissions its keys get, and limits how many keys it registers, until when,
and from which networks. Each key it registers gets a registration access token (`kcra_…`,
RFC 7592) that reads, updates and deletes that one key; it changes with every update. Tokens
are made and revoked in apikeys/operations/registration_tokens.py (`create_token` and
`revoke_token` are named here too, as they were first).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apikeys.credentials import networks
from apikeys.credentials.public_keys import AcceptedKey
from apikeys.credentials.secret_format import (
    REGISTRATION_ACCESS_PREFIX,
    is_well_formed,
    new_secret,
)
from apikeys.keycloak import client as keycloak
from apikeys.keycloak import desired
from apikeys.models import (
    ApiKey,
    AuditEntry,
    Membership,
    RegistrationToken,
    TeamRole,
    WrongState,
)
from apikeys.operations import lifecycle, permissions
from apikeys.operations.lifecycle import KeyOrder
from apikeys.operations.registration_tokens import NewRegistrationToken as NewRegistrationToken
from apikeys.operations.registration_tokens import create_token as create_token
from apikeys.operations.registration_tokens import digest
from apikeys.operations.registration_tokens import revoke_token as revoke_token
from apikeys.operations.registration_tokens import token_for as token_for

# Who makes a team's keys (apikeys/access.py): a team's token registers while its maker does.
MAKERS = (TeamRole.OWNER, TeamRole.DEVELOPER)


class RegistrationRefused(Exception):
    """The registration breaks a rule: RFC 7591's error code, and a description for people."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True)
class Metadata:
    """A registration request's client metadata, checked (RFC 7591 §2)."""

    client_name: str
    contacts: list[str]
    auth_method: str  # client_secret_basic, client_secret_post or private_key_jwt
    scope: list[str] | None  # permissions asked for; None: the token's
    public_keys: Sequence[AcceptedKey] = ()
    jwks_uri: str = ""
    # RFC 9449 §5.2: tokens bound to a DPoP key; None (not said): false for a new key, kept
    # as it is by an update.
    dpop: bool | None = None


@dataclass(frozen=True)
class Registered:
    key: ApiKey
    secret: str = field(repr=False)  # "" for private_key_jwt
    access_token: str = field(repr=False)  # the registration access token (RFC 7592)


@sensitive_variables()
def register(secret: str, metadata: Metadata, *, ip_address: str | None) -> Registered:
    """Register a key with the registration token `secret`.

    The key's record is made under the token's lock, and the token's uses are the records
    made with it, so two registrations never both take its last use, and a key that is
    discarded (Keycloak refused it) gives its use back by being gone. Then the client is made
    as every key's is; if Keycloak fails, the key is taken apart (or left unfinished, still
    counted, for its owner to finish or discard)."""
    access = new_secret(REGISTRATION_ACCESS_PREFIX)
    with transaction.atomic():
        token = _locked_usable(secret, ip_address)
        key = _reserve(token, metadata, digest(access))
    try:
        revealed = lifecycle.complete_key(key, actor=token.owner, ip_address=ip_address)
    except lifecycle.KeyNotIssued as refused:
        raise RegistrationRefused("temporarily_unavailable", str(refused), status=503) from refused
    AuditEntry.record(
        revealed.key,
        AuditEntry.Action.REGISTERED,
        actor=None,
        ip_address=ip_address,
        reason=f"By “{metadata.client_name or key.name}” with the registration token "
        f"“{token.name}”"
        + (f" (contacts: {', '.join(metadata.contacts)})." if metadata.contacts else "."),
    )
    return Registered(revealed.key, revealed.secret, access)


def _locked_usable(secret: str, ip_address: str | None) -> RegistrationToken:
    """The token `secret` is, its row locked, if it may register now (else refused)."""
    found = token_for(secret)
    if found is None:
        raise RegistrationRefused(
            "invalid_token", "The registration token is not valid.", status=401
        )
    token = (
        RegistrationToken.objects.select_related("api", "owner", "team")
        .select_for_update(of=("self",))
        .get(pk=found.pk)
    )
    token.registrations = token.keys.count()  # the records made with it: its uses
    if refusal := token.refusal(timezone.now()) or _maker_gone(token):
        raise RegistrationRefused("invalid_token", refusal, status=401)
    if token.networks and not networks.allows(token.networks, ip_address):
        raise RegistrationRefused(
            "access_denied",
            "The registration token does not register from this address.",
            status=403,
        )
    return token


def _maker_gone(token: RegistrationToken) -> str | None:
    """A token registers only while its maker still makes keys in its space: an active
    account, and for a team's token a developer or owner of the team."""
    if not token.owner.is_active:
        return "The registration token's maker no longer has an active account."
    makes = Membership.objects.filter(team=token.team_id, user=token.owner, role__in=MAKERS)
    if token.team is not None and not makes.exists():
        return "The registration token's maker no longer makes this team's keys."
    return None


def _reserve(token: RegistrationToken, metadata: Metadata, access_digest: str) -> ApiKey:
    """The key's record, under the token's lock, counted as one of its uses."""
    names = _within_token(token, metadata.scope)
    order = KeyOrder(
        api=token.api,
        name=_free_name(token, metadata.client_name),
        lifetime_days=min(token.key_lifetime_days, token.api.max_key_lifetime_days),
        description=f"Registered with the token “{token.name}”.",
        justification=f"Registered by software ({metadata.client_name or 'unnamed'}) with "
        f"the registration token “{token.name}”.",
        credential=ApiKey.Credential.SIGNED_JWT
        if metadata.auth_method == "private_key_jwt"
        else ApiKey.Credential.SECRET,
        public_keys=metadata.public_keys,
        jwks_url=metadata.jwks_uri,
        team=token.team,
        permissions=names,
        registered_with=token,
        registration_access_digest=access_digest,
        software_metadata=_software(metadata),
        request_id=uuid.uuid4(),
        requires_dpop=bool(metadata.dpop),
    )
    try:
        key = lifecycle.reserve_key(token.owner, order)
    except lifecycle.KeyNotIssued as refused:  # the quota, the API's rules, a permission
        raise RegistrationRefused("invalid_client_metadata", str(refused)) from refused
    RegistrationToken.objects.filter(pk=token.pk).update(registrations=token.registrations + 1)
    return key


def _within_token(token: RegistrationToken, scope: list[str] | None) -> list[str]:
    """The permissions a registered key gets: what `scope` names (None: all the token's),
    never one the token does not give (a token made without any gives none)."""
    allowed = sorted(p.name for p in token.permissions.all())
    if scope is None:
        return allowed
    if not set(scope) <= set(allowed):
        raise RegistrationRefused(
            "invalid_client_metadata",
            f"scope may name only the registration token's permissions: "
            f"{', '.join(allowed) or 'none'}.",
        )
    return sorted(set(scope))


def _free_name(token: RegistrationToken, wanted: str, *, besides: ApiKey | None = None) -> str:
    """The software's name, made unique among the space's live keys ("name (2)")."""
    base = (wanted or f"Registered with {token.name}")[:56]
    others = ApiKey.objects.held_by(token.owner, token.team).live()
    if besides is not None:
        others = others.exclude(pk=besides.pk)
    taken = set(others.filter(name__startswith=base).values_list("name", flat=True))
    if base not in taken:
        return base
    return next(f"{base} ({n})" for n in range(2, 10_000) if f"{base} ({n})" not in taken)


@sensitive_variables()
def registered_key(client_id: str, access_token: str) -> ApiKey | None:
    """The key `access_token` manages (RFC 7592), if it is that key's and the key lives."""
    if not is_well_formed(access_token, REGISTRATION_ACCESS_PREFIX):
        return None
    key = (
        ApiKey.objects.select_related("api", "owner", "team", "registered_with")
        .filter(client_id=client_id, registration_access_digest=digest(access_token))
        .live()
        .first()
    )
    token = key.registered_with if key is not None else None
    if key is None or token is None or key.team_id != token.team_id:
        return None  # moved to another space: no longer the registering software's
    if token.team_id is None and key.owner_id != token.owner_id:
        return None
    return key


@sensitive_variables()
def update(
    key: ApiKey, metadata: Metadata, *, used: str, ip_address: str | None
) -> tuple[ApiKey, str]:
    """RFC 7592 update, within the same rules: its name, contacts and permissions (narrowed,
    or widened within the token's); not how it authenticates, nor its public keys. A new
    registration access token replaces `used`, the one presented: checked again under the
    key's lock, so of two updates with one token only the first succeeds."""
    token = key.registered_with
    if token is None:
        raise WrongState(f"{key.client_id} was not registered by software.")
    wanted = None if metadata.scope is None else _within_token(token, metadata.scope)
    if metadata.public_keys or metadata.jwks_uri not in ("", key.jwks_url):
        raise RegistrationRefused(
            "invalid_client_metadata",
            "Public keys are changed on the key's page or through the portal's API, not here.",
        )
    secret_methods = ("client_secret_basic", "client_secret_post")
    if (metadata.auth_method in secret_methods) != key.uses_secret:
        raise RegistrationRefused(
            "invalid_client_metadata",
            "token_endpoint_auth_method cannot change: register a new client instead.",
        )
    access = new_secret(REGISTRATION_ACCESS_PREFIX)
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        if key.registration_access_digest != digest(used):
            raise RegistrationRefused(
                "invalid_token", "The registration access token is not valid.", status=401
            )
        if metadata.dpop is not None and metadata.dpop != key.requires_dpop:
            key = lifecycle.set_dpop(key, metadata.dpop, actor=key.owner, ip_address=ip_address)
        if wanted is not None:
            permissions.set_key_permissions(
                key, wanted, justification="", actor=key.owner, ip_address=ip_address
            )
            key = ApiKey.objects.locked(key.pk)
        if metadata.client_name and metadata.client_name != key.name:
            key.name = _free_name(token, metadata.client_name, besides=key)
        key.software_metadata = _software(metadata)
        key.registration_access_digest = digest(access)
        key.save(update_fields=["name", "software_metadata", "registration_access_digest"])
        if key.keycloak_id:  # the digest is on the client too, for a restore (desired.py)
            keycloak.update_client(
                keycloak.portal_connection(),
                key.keycloak_id,
                {"attributes": desired.registration_marks(key)},
            )
        AuditEntry.record(
            key,
            AuditEntry.Action.REGISTRATION_UPDATED,
            actor=None,
            ip_address=ip_address,
            reason=f"Name “{key.name}”; contacts: {', '.join(metadata.contacts) or 'none'}.",
        )
    return key, access


def _software(metadata: Metadata) -> dict[str, Any]:
    return {"contacts": metadata.contacts, "token_endpoint_auth_method": metadata.auth_method}


def delete(key: ApiKey, *, ip_address: str | None) -> None:
    """RFC 7592 delete: the key is revoked (its record stays, for history)."""
    lifecycle.revoke_key(
        key,
        actor=None,
        ip_address=ip_address,
        reason="Deleted by the software that registered it (RFC 7592).",
    )


def client_metadata(key: ApiKey) -> dict[str, Any]:
    """What the registration endpoint says of a registered key (RFC 7591 §3.2.1)."""
    default = "private_key_jwt" if not key.uses_secret else "client_secret_basic"
    auth = key.software_metadata.get("token_endpoint_auth_method") or default
    data: dict[str, Any] = {
        "client_id": key.client_id,
        "client_id_issued_at": int(key.created_at.timestamp()),
        "client_name": key.name,
        "contacts": list(key.software_metadata.get("contacts") or []),
        "grant_types": ["client_credentials"],
        "response_types": [],
        "token_endpoint_auth_method": auth,
        "scope": " ".join(key.permission_names),
        "dpop_bound_access_tokens": key.requires_dpop,  # RFC 9449 §5.2
        # Not RFC 7591's: "pending" while an administrator approves the key (no token yet).
        "key_status": key.status,
    }
    if key.uses_secret:
        data["client_secret_expires_at"] = int(key.expires_at.timestamp())
    if key.jwks_url:
        data["jwks_uri"] = key.jwks_url
    return data
