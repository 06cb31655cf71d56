"""A key's client as Keycloak holds it (`KeyClient`), and the marks the portal puts on it.

The gateway (apikeys/keycloak/client.py) reads key clients into `KeyClient`, so that the
operations ask `client.enabled` or `client.owner` and Keycloak's JSON names stay in this
folder. The marks are client attributes: with them a lost record can be rebuilt
(apikeys/operations/recovery.py), and two portal deployments on one realm tell their clients
apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

Representation = dict[str, Any]

# Client attributes that tie a Keycloak client to its portal record.
MANAGED_ATTRIBUTE = "portal.managed"
KEY_ATTRIBUTE = "portal.key"
OWNER_ATTRIBUTE = "portal.owner"
API_ATTRIBUTE = "portal.api"
# The team that holds the key (its id), beside its maker (OWNER_ATTRIBUTE); none for a
# personal key.
TEAM_ATTRIBUTE = "portal.team"
# Set on a key registered by software (RFC 7591): the registration token's id, and the
# SHA-256 of its registration access token (RFC 7592), so that a restore keeps both.
REGISTERED_WITH_ATTRIBUTE = "portal.registered_with"
REGISTRATION_DIGEST_ATTRIBUTE = "portal.registration_digest"
# Which portal deployment made it (settings.PORTAL_INSTANCE_ID), and the key's expiry as
# epoch seconds: with the four above, enough to rebuild a lost record (recovery.examine).
INSTANCE_ATTRIBUTE = "portal.instance"
EXPIRES_ATTRIBUTE = "portal.expires"
# A MAC of the client's ids and the four marks above it, under a key only the portal holds
# (`seal`): anyone who may make clients in the realm can copy marks, nobody can seal them.
SEAL_ATTRIBUTE = "portal.seal"
# Set by reconcile on a marked client of this portal with no record whose owner or API
# cannot be found: when it was disabled (epoch seconds), and whether it was enabled before.
QUARANTINED_ATTRIBUTE = "portal.quarantined"
QUARANTINED_ENABLED_ATTRIBUTE = "portal.quarantined.enabled"
# Keycloak's own: epoch seconds after which ClientIdAndSecretAuthenticator refuses the secret.
SECRET_EXPIRY_ATTRIBUTE = "client.secret.expiration.time"  # noqa: S105 - a name, no secret
# Keycloak's rotated-secret slot (ClientSecretConstants): the previous secret, and when it
# stops. The portal fills it for a rotation's grace period (lifecycle.rotate_secret); it
# survives admin updates because the portal's secret-rotation policy applies to key clients.
ROTATED_SECRET_ATTRIBUTE = "client.secret.rotated"  # noqa: S105
ROTATED_CREATED_ATTRIBUTE = "client.secret.rotated.creation.time"
ROTATED_EXPIRY_ATTRIBUTE = "client.secret.rotated.expiration.time"
# Keycloak's own (OIDCConfigAttributes): tokens only with a DPoP proof, bound to its key.
DPOP_ATTRIBUTE = "dpop.bound.access.tokens"
# Keycloak's federated client authentication (FederatedJWTClientAuthenticator): the client
# presents a token of the identity provider ISSUER (its alias) whose `sub` is SUBJECT.
FEDERATED_AUTHENTICATOR = "federated-jwt"
WORKLOAD_ISSUER_ATTRIBUTE = "jwt.credential.issuer"
WORKLOAD_SUBJECT_ATTRIBUTE = "jwt.credential.sub"


@dataclass(frozen=True)
class KeyClient:
    """A client named like a key's (`apikey-…`), as Keycloak holds it."""

    id: str  # Keycloak's UUID of the client
    client_id: str
    enabled: bool
    signs_with_jwt: bool  # private_key_jwt, not a secret
    federated: bool  # a workload identity's token, not a secret
    marks: Mapping[str, str]  # its attributes: the portal's marks and Keycloak's own
    representation: Representation = field(repr=False)  # as read, secret included

    @classmethod
    @sensitive_variables()  # the representation holds the client's secret
    def read(cls, representation: Representation) -> KeyClient:
        return cls(
            id=str(representation["id"]),
            client_id=str(representation["clientId"]),
            enabled=bool(representation.get("enabled")),
            signs_with_jwt=representation.get("clientAuthenticatorType") == "client-jwt",
            federated=representation.get("clientAuthenticatorType") == FEDERATED_AUTHENTICATOR,
            marks=dict(representation.get("attributes") or {}),
            representation=representation,
        )

    @property
    def canonical_id(self) -> bool:
        """Keycloak's id is a UUID, as Keycloak makes them (whoever makes a client may choose
        another: it goes into admin paths, so the portal acts on no other)."""
        try:
            return str(uuid.UUID(self.id)) == self.id
        except ValueError:
            return False

    @property
    def sealed(self) -> bool:
        """Its marks carry this portal's seal: the portal made it, for the key it names."""
        wanted = seal(
            self.id,
            self.client_id,
            self.key_id,
            self.owner,
            self.api,
            self.marks.get(INSTANCE_ATTRIBUTE, ""),
            self.team,
        )
        return hmac.compare_digest(self.marks.get(SEAL_ATTRIBUTE, ""), wanted)

    @property
    def managed(self) -> bool:
        """Carries the portal's marker: made by a portal for a key."""
        return self.marks.get(MANAGED_ATTRIBUTE) == "true"

    @property
    def instance(self) -> str | None:
        """The portal deployment that made it; None if made before instance ids."""
        return self.marks.get(INSTANCE_ATTRIBUTE) or None

    @property
    def is_own(self) -> bool:
        """True unless another portal deployment stamped it (unstamped ones may be ours)."""
        return self.instance in (None, settings.PORTAL_INSTANCE_ID)

    def is_for(self, key_id: object) -> bool:
        """The client this portal made for the key `key_id` (not one made by hand with its
        clientId, nor another deployment's client for a copy of this record)."""
        return self.marks.get(KEY_ATTRIBUTE) == str(key_id) and self.is_own

    @property
    def requires_dpop(self) -> bool:
        return self.marks.get(DPOP_ATTRIBUTE) == "true"

    @property
    def key_id(self) -> str:
        return self.marks.get(KEY_ATTRIBUTE, "")

    @property
    def owner(self) -> str:
        """The `sub` of the key's owner in Keycloak."""
        return self.marks.get(OWNER_ATTRIBUTE, "")

    @property
    def team(self) -> str:
        """The id of the team that holds the key; "" for a personal key."""
        return self.marks.get(TEAM_ATTRIBUTE, "")

    @property
    def registered_with(self) -> str:
        """The id of the registration token software registered it with; "" if none."""
        return self.marks.get(REGISTERED_WITH_ATTRIBUTE, "")

    @property
    def api(self) -> str:
        """The slug of the key's API."""
        return self.marks.get(API_ATTRIBUTE, "")

    @property
    def expires(self) -> datetime | None:
        """The key's expiry the client carries: the portal's mark, else Keycloak's."""
        return _epoch(self.marks.get(EXPIRES_ATTRIBUTE)) or _epoch(
            self.marks.get(SECRET_EXPIRY_ATTRIBUTE)
        )

    @property
    def quarantined_since(self) -> datetime | None:
        return _epoch(self.marks.get(QUARANTINED_ATTRIBUTE))

    @property
    def enabled_before_quarantine(self) -> bool:
        return self.marks.get(QUARANTINED_ENABLED_ATTRIBUTE) == "true"

    @property
    def jwks_url(self) -> str | None:
        """Where Keycloak reads a private_key_jwt key's public keys, if from a URL."""
        return self.marks.get("jwks.url", "") if self.marks.get("use.jwks.url") == "true" else None

    @property
    def jwks(self) -> str:
        """A private_key_jwt key's public keys held inline, as a JWKS document."""
        return self.marks.get("jwks.string", "")

    @property
    def rotated_at(self) -> datetime | None:
        """When the secret was last rotated with a grace period, if Keycloak says."""
        return _epoch(self.marks.get(ROTATED_CREATED_ATTRIBUTE))

    @property
    def rotated_secret_until(self) -> int | None:
        """When the previous secret stops (epoch seconds), if the client holds one."""
        if not self.marks.get(ROTATED_SECRET_ATTRIBUTE):
            return None
        try:
            return int(self.marks.get(ROTATED_EXPIRY_ATTRIBUTE) or 0)
        except ValueError:
            return 0


def seal(
    client_uuid: str, client_id: str, key_id: str, owner: str, api: str, instance: str, team: str
) -> str:
    """The MAC of a key client's identity (Keycloak's id of it, which the portal chooses, and
    its marks), under a key derived from SECRET_FINGERPRINT_KEY (a secret the portal keeps out
    of its database and of Keycloak): copied onto another client, it does not fit. A personal
    key's seal leaves the team out, so seals made before teams still fit."""
    key = hmac.new(settings.SECRET_FINGERPRINT_KEY.encode(), b"portal.seal", hashlib.sha256)
    parts = (client_uuid, client_id, key_id, owner, api, instance) + ((team,) if team else ())
    message = "\n".join(parts).encode()
    digest = hmac.new(key.digest(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _epoch(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value or ""), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
