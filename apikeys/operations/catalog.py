"""Changes to the API catalog, carried to Keycloak: each API's audience scope, and the
token lifespan of its keys' clients."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from apikeys.keycloak import bootstrap, desired
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import KeycloakFailure
from apikeys.models import Api, AuditEntry, User, this_instance

log = logging.getLogger(__name__)


@dataclass
class CatalogChange:
    api: Api
    # Keys whose client could not be given the new token lifespan; reconcile repairs them.
    keys_not_updated: list[str] = field(default_factory=list)


def save_api(api: Api, *, actor: User, ip_address: str | None = None) -> CatalogChange:
    """Create or change an API: its record and its Keycloak client scope, together.

    The scope is written inside the database transaction, so if Keycloak refuses or is
    down, the record change is rolled back and the two never disagree about the audience.
    A changed token lifespan is then carried to the API's live keys, one client each.
    """
    creating = api.pk is None
    with transaction.atomic():
        before = None if creating else Api.objects.select_for_update().get(pk=api.pk)
        api.save()
        bootstrap.ensure_api_scope(keycloak.portal_connection(), api, adopt=not creating)
        action = AuditEntry.Action.API_CREATED if creating else AuditEntry.Action.API_CHANGED
        summary = _summary(before, api)
        AuditEntry.record(api, action, actor=actor, ip_address=ip_address, reason=summary)
    change = CatalogChange(api)
    if before is not None and before.access_token_lifespan != api.access_token_lifespan:
        change.keys_not_updated = _carry_lifespan(api)
    return change


def retire_api(api: Api, *, actor: User, ip_address: str | None = None) -> Api:
    """Take no new keys for the API. Its live keys keep working until they end."""
    with transaction.atomic():
        api = Api.objects.select_for_update().get(pk=api.pk)
        if api.retired_at is None:
            api.retired_at = timezone.now()
            api.save(update_fields=["retired_at"])
            AuditEntry.record(
                api, AuditEntry.Action.API_RETIRED, actor=actor, ip_address=ip_address
            )
    return api


def _carry_lifespan(api: Api) -> list[str]:
    conn = keycloak.portal_connection()
    failed = []
    attributes = desired.token_lifespan(api)
    for client_id, client_uuid in (
        api.keys.live()
        .filter(instance=this_instance())  # another deployment's records are not ours to act on
        .exclude(keycloak_id="")
        .values_list("client_id", "keycloak_id")
    ):
        try:
            keycloak.update_client(conn, client_uuid, attributes)
        except KeycloakFailure as error:
            log.warning("Token lifespan of %s not updated: %s", client_id, error)
            failed.append(client_id)
    return failed


def _summary(before: Api | None, after: Api) -> str:
    fields = [name for name in Api.EDITABLE_FIELDS if name != "slug"]
    if before is None:
        return ", ".join(f"{name}={getattr(after, name)!r}" for name in fields)
    changed = [
        f"{name}: {getattr(before, name)!r} → {getattr(after, name)!r}"
        for name in fields
        if getattr(before, name) != getattr(after, name)
    ]
    return "; ".join(changed) or "no change"
