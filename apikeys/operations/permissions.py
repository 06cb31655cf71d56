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

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction
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
    # Live keys that could not be given it (Keycloak failed); `give_to_keys_lacking`
    # gives it to the keys that still lack it.
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
    if not settings.KEYCLOAK_NETWORK_RANGES:
        raise ValidationError(
            {
                NON_FIELD_ERRORS: "This portal's Keycloak runs without the portal's extension "
                "(KEYCLOAK_NETWORK_RANGES=false), which narrows a token to the permissions "
                "its request asks for: turn it on first."
            }
        )
    permission.full_clean()  # the name's pattern, and unique in the catalog
    with transaction.atomic():
        try:
            with transaction.atomic():
                permission.save()
        except IntegrityError:  # the same name, defined at the same moment
            raise ValidationError({"name": "A permission with this name exists."}) from None
        bootstrap.ensure_permission_scope(keycloak.portal_connection(), permission)
        AuditEntry.record(
            api,
            AuditEntry.Action.PERMISSION_DEFINED,
            actor=actor,
            ip_address=ip_address,
            reason=f"{name}: {description} ({_terms(permission)})",
        )
    defined = PermissionDefined(Permission.objects.get(pk=permission.pk))
    if give_to_live_keys:
        defined.keys_not_updated = give_to_keys_lacking(
            defined.permission, actor=actor, ip_address=ip_address
        )
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


def give_to_keys_lacking(
    permission: Permission, *, actor: User, ip_address: str | None = None
) -> list[str]:
    """Give the permission to its API's keys that exist and lack it, one client at a time;
    the client ids of those Keycloak failed for (a second call retries them)."""
    failed = []
    keys = permission.api.keys.allowing("change_permissions").exclude(keycloak_id="")
    for key in keys.exclude(permissions=permission):
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
        # Even on a pending key: its approver approves what it held when asked, not more.
        waiting = {p for p in wanted - held if p.requires_approval}
        outcome = PermissionsOutcome(key)
        if waiting:
            outcome.requested = _request(key, waiting, justification, actor, ip_address)
        added, removed = (wanted - held) - waiting, held - wanted
        if added or removed:
            _change_client(key, removed=removed, added=added)
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
    if not justification.replace("\n", "").replace("\r", "").isprintable():
        raise PermissionRefused("Write the justification in printable characters only.")
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
            _change_client(key, removed=set(), added=set(new))
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
    notifications.permissions_decided(request, key)
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
            AuditEntry.Action.PERMISSIONS_WITHDRAWN,
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


def _change_client(key: ApiKey, *, removed: set[Permission], added: set[Permission]) -> None:
    """Take the `removed` permissions' scopes off the key's client, then give it the `added`.
    If Keycloak fails midway, what was done is undone (as far as Keycloak lets): the record's
    transaction rolls back, and the two agree again. What could not be undone, reconcile
    finds: a permission the client lacks leaves the record too (restrictive wins)."""
    done: list[tuple[Permission, bool]] = []
    try:
        for permission, attached in [(p, False) for p in removed] + [(p, True) for p in added]:
            _attach(key, [permission], attached=attached)
            done.append((permission, attached))
    except KeycloakFailure:
        for permission, attached in reversed(done):
            try:
                _attach(key, [permission], attached=not attached)
            except KeycloakFailure as error:
                log.warning("%s: %s not put back: %s", key.client_id, permission.name, error)
        raise


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
