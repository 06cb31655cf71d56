"""Permissions: what each key of an API may do.

An administrator defines an API's permissions in the catalog; Keycloak holds each as a client
scope of the same name (`desired.permission_scope`), a default scope of the keys that hold it,
so their tokens carry it in `scope`, and the API's servers check it (`bearer_token_required`).

A key's holder narrows its permissions at once. Widening to a permission that needs approval
waits for an administrator (a `PermissionRequest`): the key keeps working with what it has
meanwhile. Every change is made in Keycloak inside the transaction that records it, under the
key's lock, and audited (sent as `key.updated`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apikeys.keycloak import bootstrap
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import KeycloakFailure
from apikeys.models import (
    ACTIONS_ALLOWED,
    Api,
    ApiKey,
    AuditEntry,
    Permission,
    PermissionRequest,
    UnknownPermission,
    User,
    WrongState,
)
from apikeys.operations import notifications

log = logging.getLogger(__name__)


class PermissionRefused(Exception):
    """The change cannot be made as asked (an unknown permission, a missing justification, a
    request already waiting): the message says what to do."""


@dataclass
class PermissionDefined:
    permission: Permission
    # Live keys that could not be given it (Keycloak failed); the next attempt retries them.
    keys_not_updated: list[str] = field(default_factory=list)


def define_permission(
    api: Api,
    *,
    name: str,
    description: str,
    requires_approval: bool = False,
    default: bool = True,
    give_to_live_keys: bool = False,
    actor: User,
    ip_address: str | None = None,
) -> PermissionDefined:
    """Add a permission to an API: its record and its client scope, together (a Keycloak
    refusal, such as a scope of that name the portal did not make, changes nothing).

    `give_to_live_keys` gives it to the API's keys that exist now, one client at a time:
    what an API that starts checking permissions needs, so its partners keep working.
    """
    permission = Permission(
        api=api,
        name=name,
        description=description,
        requires_approval=requires_approval,
        default=default,
    )
    permission.full_clean()  # the name's pattern, and unique in the catalog
    with transaction.atomic():
        permission.save()
        bootstrap.ensure_permission_scope(keycloak.portal_connection(), permission, adopt=False)
        AuditEntry.record(
            api,
            AuditEntry.Action.PERMISSION_DEFINED,
            actor=actor,
            ip_address=ip_address,
            reason=f"{name}: {description} ({_terms(permission)})",
        )
    defined = PermissionDefined(Permission.objects.get(pk=permission.pk))
    if give_to_live_keys:
        defined.keys_not_updated = _give_to_live_keys(defined.permission, actor, ip_address)
    return defined


def change_permission(
    permission: Permission,
    *,
    description: str,
    requires_approval: bool,
    default: bool,
    actor: User,
    ip_address: str | None = None,
) -> Permission:
    """Change what people read of a permission and how it is granted (not its name: that is
    the scope in every token). Keys that hold it keep it."""
    with transaction.atomic():
        permission = Permission.objects.select_for_update().get(pk=permission.pk)
        before = f"{permission.description} ({_terms(permission)})"
        permission.description = description
        permission.requires_approval, permission.default = requires_approval, default
        permission.full_clean()
        permission.save(update_fields=list(Permission.EDITABLE_FIELDS))
        after = f"{description} ({_terms(permission)})"
        AuditEntry.record(
            permission.api,
            AuditEntry.Action.PERMISSION_CHANGED,
            actor=actor,
            ip_address=ip_address,
            reason=f"{permission.name}: {before} → {after}",
        )
    return permission


def _terms(permission: Permission) -> str:
    approval = "needs approval" if permission.requires_approval else "no approval"
    return f"{approval}, {'given' if permission.default else 'not given'} to new keys by default"


def _give_to_live_keys(permission: Permission, actor: User, ip_address: str | None) -> list[str]:
    failed = []
    for key in permission.api.keys.allowing("change_permissions").exclude(keycloak_id=""):
        try:
            with transaction.atomic():
                key = ApiKey.objects.locked(key.pk)
                if not key.allows("change_permissions"):
                    continue
                _attach(key, [permission], attached=True)
                key.permissions.add(permission)
                reason = f"Given {permission.name}, new in the catalog."
                _record_change(key, reason, actor, ip_address)
        except KeycloakFailure as error:
            log.warning("%s not given %s: %s", key.client_id, permission.name, error)
            failed.append(key.client_id)
    return failed


def resolve(api: Api, names: Iterable[str] | None) -> list[Permission]:
    """The API's permissions called `names`; None: those it gives new keys by default."""
    try:
        return api.permissions_called(names)
    except UnknownPermission as unknown:
        raise PermissionRefused(str(unknown)) from None


@dataclass
class PermissionsOutcome:
    key: ApiKey
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # Waiting for an administrator's approval (the key works without them meanwhile).
    requested: PermissionRequest | None = None


def set_key_permissions(
    key: ApiKey,
    names: Sequence[str],
    *,
    justification: str = "",
    actor: User,
    ip_address: str | None = None,
) -> PermissionsOutcome:
    """Give the key exactly the permissions `names`: fewer at once, more at once unless they
    need approval (those are requested, with the justification). Takes effect at its next
    token."""
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.require("change_permissions")
        wanted = set(resolve(key.api, names))
        held = set(key.permissions.all())
        waiting = {p for p in wanted - held if p.requires_approval}
        if key.status == ApiKey.Status.PENDING:
            waiting = set()  # the key's own approval covers what it asks for
        outcome = PermissionsOutcome(key)
        if waiting:
            outcome.requested = _request(key, waiting, justification, actor, ip_address)
        added, removed = (wanted - held) - waiting, held - wanted
        if added or removed:
            _attach(key, removed, attached=False)
            _attach(key, added, attached=True)
            key.permissions.remove(*removed)
            key.permissions.add(*added)
            outcome.added, outcome.removed = _names(added), _names(removed)
            _record_change(key, _change_reason(outcome.added, outcome.removed), actor, ip_address)
    if outcome.requested is not None:
        notifications.permissions_requested(outcome.requested)
    return outcome


def _request(
    key: ApiKey,
    permissions: set[Permission],
    justification: str,
    actor: User,
    ip_address: str | None,
) -> PermissionRequest:
    names = ", ".join(_names(permissions))
    if not justification.strip():
        raise PermissionRefused(
            f"{names} need an administrator's approval: say why the key needs them."
        )
    if key.permission_requests.filter(decided_at__isnull=True).exists():
        raise PermissionRefused(
            "This key already has a request waiting for an administrator: wait for the "
            "decision, or withdraw that request first."
        )
    request = PermissionRequest.objects.create(
        key=key, justification=justification.strip(), requested_by=actor
    )
    request.permissions.set(permissions)
    AuditEntry.record(
        key,
        AuditEntry.Action.PERMISSIONS_REQUESTED,
        actor=actor,
        ip_address=ip_address,
        reason=f"Asked for {names}: {justification.strip()}",
    )
    return request


def decide_request(
    request: PermissionRequest,
    *,
    approve: bool,
    actor: User,
    ip_address: str | None = None,
    reason: str = "",
) -> PermissionRequest:
    """An administrator grants (or refuses) what a request asks for. Nobody decides their own
    request; a key that has ended since cannot be given anything."""
    with transaction.atomic():
        key = ApiKey.objects.locked(request.key_id)
        request = _open_request(request)
        if actor == request.requested_by or (approve and actor == key.owner):
            raise WrongState("You cannot decide your own request: another administrator must.")
        names = request.names
        if approve:
            key.require("change_permissions")
            new = [p for p in request.permissions.all() if p not in set(key.permissions.all())]
            _attach(key, new, attached=True)
            key.permissions.add(*new)
            _record_change(key, f"Approved: {', '.join(names)}.", actor, ip_address)
        else:
            AuditEntry.record(
                key,
                AuditEntry.Action.PERMISSIONS_REFUSED,
                actor=actor,
                ip_address=ip_address,
                reason=f"Refused {', '.join(names)}: {reason}".rstrip(": "),
            )
        _close(request, actor, approved=approve, reason=reason)
    notifications.decision(key, f"{'given' if approve else 'refused'} {', '.join(names)}", reason)
    return request


def withdraw_request(
    request: PermissionRequest, *, actor: User, ip_address: str | None = None
) -> PermissionRequest:
    """The key's holder takes back a request no administrator has decided yet."""
    with transaction.atomic():
        key = ApiKey.objects.locked(request.key_id)
        request = _open_request(request)
        AuditEntry.record(
            key,
            AuditEntry.Action.PERMISSIONS_REFUSED,
            actor=actor,
            ip_address=ip_address,
            reason=f"Request for {', '.join(request.names)} withdrawn.",
        )
        _close(request, actor, approved=None, reason="withdrawn")
    return request


def _open_request(request: PermissionRequest) -> PermissionRequest:
    request = PermissionRequest.objects.select_for_update().get(pk=request.pk)
    if request.decided_at is not None:
        raise WrongState("This request was already decided or withdrawn.")
    return request


def _close(request: PermissionRequest, actor: User, *, approved: bool | None, reason: str) -> None:
    request.decided_at, request.decided_by = timezone.now(), actor
    request.approved, request.reason = approved, reason
    request.save(update_fields=["decided_at", "decided_by", "approved", "reason"])


def open_requests() -> Iterable[PermissionRequest]:
    """The requests waiting for an administrator, of keys that still work (the queue)."""
    return (
        PermissionRequest.objects.filter(
            decided_at__isnull=True, key__status__in=ACTIONS_ALLOWED["change_permissions"]
        )
        .select_related("key", "key__api", "key__owner", "key__team", "requested_by")
        .prefetch_related("permissions", "key__permissions")
    )


def _attach(key: ApiKey, permissions: Iterable[Permission], *, attached: bool) -> None:
    """Put the permissions' scopes among (or take them out of) the key client's defaults."""
    if not key.keycloak_id:
        return  # no client yet: it is made with the record's permissions
    conn = keycloak.portal_connection()
    for permission in permissions:
        if not permission.scope_id:
            raise WrongState(f"{permission.name} has no client scope in Keycloak yet.")
        keycloak.set_client_scope_of_client(
            conn, key.keycloak_id, "default", permission.scope_id, attached=attached
        )


def _record_change(key: ApiKey, reason: str, actor: User | None, ip_address: str | None) -> None:
    now_held = ", ".join(key.permission_names) or "none"
    AuditEntry.record(
        key,
        AuditEntry.Action.PERMISSIONS_CHANGED,
        actor=actor,
        ip_address=ip_address,
        reason=f"{reason} Now: {now_held}.",
    )


def _change_reason(added: list[str], removed: list[str]) -> str:
    parts = [f"added {', '.join(added)}"] if added else []
    parts += [f"removed {', '.join(removed)}"] if removed else []
    return "; ".join(parts).capitalize() + "."


def _names(permissions: Iterable[Permission]) -> list[str]:
    return sorted(p.name for p in permissions)


def field_errors(error: ValidationError) -> dict[str, list[str]]:
    """A model validation error as the doors show it, field by field."""
    return {name: [str(m) for m in messages] for name, messages in error.message_dict.items()}
