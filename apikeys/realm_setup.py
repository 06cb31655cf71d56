"""The Keycloak objects the portal owns, and how `bootstrap_keycloak` keeps them in shape.

Each `ensure_*` function reads the object, compares it with the representation built here,
and writes only what differs, so a second run changes nothing. They return a line for each
change they made.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from django.conf import settings

from apikeys import keycloak
from apikeys.keycloak import Connection, Representation
from apikeys.models import Api

ADMIN_ROLE = "portal-admin"
# The least realm-management roles the portal's run-time identity needs: create, update and
# delete key clients and client scopes (manage-clients), read CLIENT_LOGIN events (view-events).
SERVICE_ROLES = frozenset({"manage-clients", "view-events"})
# Which user events Keycloak stores, and for how long.
STORED_EVENTS = ["CLIENT_LOGIN", "CLIENT_LOGIN_ERROR", "DELETE_ACCOUNT"]
EVENTS_EXPIRATION_SECONDS = 90 * 24 * 3600
PASSWORD_POLICY = " and ".join(  # a policy, not a password
    ["length(12)", "maxLength(128)", "notUsername(undefined)", "notEmail(undefined)",
     "passwordHistory(3)"]
)  # fmt: skip
# Grants that no portal-owned client may use unless it says so.
FLOWS_OFF = {
    "standardFlowEnabled": False,
    "implicitFlowEnabled": False,
    "directAccessGrantsEnabled": False,
    "serviceAccountsEnabled": False,
}
EXTRA_GRANTS_OFF = {
    "oauth2.device.authorization.grant.enabled": "false",
    "oidc.ciba.grant.enabled": "false",
    "standard.token.exchange.enabled": "false",
}


def realm_representation() -> Representation:
    return {
        "realm": settings.KEYCLOAK_REALM,
        "displayName": "API key portal",
        "enabled": True,
        "sslRequired": "external",
        "registrationAllowed": True,
        "registrationEmailAsUsername": True,
        "loginWithEmailAllowed": True,
        "duplicateEmailsAllowed": False,
        "verifyEmail": True,
        "resetPasswordAllowed": True,
        "editUsernameAllowed": False,
        "rememberMe": False,
        "passwordPolicy": PASSWORD_POLICY,
        "bruteForceProtected": True,
        "permanentLockout": False,
        "failureFactor": 10,
        "waitIncrementSeconds": 60,
        "maxFailureWaitSeconds": 900,
        "maxDeltaTimeSeconds": 12 * 3600,
        "smtpServer": {
            "host": settings.KEYCLOAK_SMTP_HOST,
            "port": str(settings.KEYCLOAK_SMTP_PORT),
            "from": settings.KEYCLOAK_SMTP_FROM,
            "fromDisplayName": "API key portal",
        },
        "eventsEnabled": True,
        "eventsExpiration": EVENTS_EXPIRATION_SECONDS,
        "enabledEventTypes": STORED_EVENTS,
        "adminEventsEnabled": True,
        "adminEventsDetailsEnabled": True,
    }


def login_client_representation() -> Representation:
    """The portal's sign-in client: confidential, code + PKCE S256, exact URIs, nothing else."""
    portal = settings.PORTAL_URL
    return {
        "clientId": settings.OIDC_RP_CLIENT_ID,
        "name": "API key portal",
        "protocol": "openid-connect",
        "enabled": True,
        "publicClient": False,
        "bearerOnly": False,
        "consentRequired": False,
        "clientAuthenticatorType": "client-secret",
        "secret": settings.OIDC_RP_CLIENT_SECRET,
        **FLOWS_OFF,
        "standardFlowEnabled": True,
        "fullScopeAllowed": False,
        "baseUrl": f"{portal}/",
        "redirectUris": [f"{portal}/oidc/callback/"],
        "webOrigins": [],
        "attributes": {
            **EXTRA_GRANTS_OFF,
            "pkce.code.challenge.method": "S256",
            "post.logout.redirect.uris": f"{portal}/",
        },
        "defaultClientScopes": ["basic", "profile", "email"],
        "optionalClientScopes": [],
        "protocolMappers": [
            {
                # With fullScopeAllowed off, only roles in the client's scope (portal-admin)
                # reach this claim, whatever other roles the user holds.
                "name": "portal roles",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-usermodel-realm-role-mapper",
                "consentRequired": False,
                "config": {
                    "multivalued": "true",
                    "claim.name": settings.OIDC_ROLES_CLAIM,
                    "jsonType.label": "String",
                    "id.token.claim": "true",
                    "userinfo.token.claim": "true",
                    "access.token.claim": "false",
                    "introspection.token.claim": "false",
                },
            }
        ],
    }


def service_client_representation() -> Representation:
    """The portal's own admin identity: a service account and nothing else."""
    return {
        "clientId": settings.KEYCLOAK_SERVICE_CLIENT_ID,
        "name": "API key portal (admin API identity)",
        "protocol": "openid-connect",
        "enabled": True,
        "publicClient": False,
        "bearerOnly": False,
        "consentRequired": False,
        "clientAuthenticatorType": "client-secret",
        "secret": settings.KEYCLOAK_SERVICE_CLIENT_SECRET,
        **FLOWS_OFF,
        "serviceAccountsEnabled": True,
        "fullScopeAllowed": False,
        "redirectUris": [],
        "webOrigins": [],
        "attributes": {**EXTRA_GRANTS_OFF, "access.token.lifespan": "300"},
        # Keycloak attaches `service_account` to every service-account client on creation.
        "defaultClientScopes": ["basic", "service_account"],
        "optionalClientScopes": [],
        "protocolMappers": [],
    }


def api_scope_representation(api: Api) -> Representation:
    """The client scope of one catalog API: it puts the API's audience into `aud`."""
    return {
        "name": api.scope_name,
        "description": f"Audience of {api.name}",
        "protocol": "openid-connect",
        "attributes": {"include.in.token.scope": "true", "display.on.consent.screen": "false"},
        "protocolMappers": [
            {
                "name": "audience",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "consentRequired": False,
                "config": {
                    "included.custom.audience": api.audience,
                    "access.token.claim": "true",
                    "id.token.claim": "false",
                    "introspection.token.claim": "true",
                },
            }
        ],
    }


def bootstrap(conn: Connection, apis: Iterable[Api]) -> list[str]:
    """Bring the realm and everything the portal owns in it to the wanted state."""
    changes = ensure_realm(conn)
    changes += ensure_realm_role(conn, ADMIN_ROLE, "Administrators of the API key portal")
    changes += ensure_client(conn, login_client_representation())
    changes += ensure_client_realm_scope(conn, settings.OIDC_RP_CLIENT_ID, {ADMIN_ROLE})
    changes += ensure_client(conn, service_client_representation())
    changes += ensure_service_account_roles(conn, settings.KEYCLOAK_SERVICE_CLIENT_ID)
    for api in apis:
        changes += ensure_api_scope(conn, api)
    return changes


def ensure_realm(conn: Connection) -> list[str]:
    wanted = realm_representation()
    current = keycloak.get_realm(conn)
    if current is None:
        keycloak.create_realm(conn, wanted)
        return [f"created realm {conn.realm}"]
    if differs(current, wanted):
        keycloak.update_realm(conn, wanted)
        return [f"updated realm {conn.realm}"]
    return []


def ensure_realm_role(conn: Connection, name: str, description: str) -> list[str]:
    current = keycloak.get_realm_role(conn, name)
    wanted = {"name": name, "description": description}
    if current is None:
        keycloak.create_realm_role(conn, wanted)
        return [f"created realm role {name}"]
    if differs(current, wanted):
        keycloak.update_realm_role(conn, name, {**current, **wanted})
        return [f"updated realm role {name}"]
    return []


def ensure_client(conn: Connection, wanted: Representation) -> list[str]:
    """Create the client in one request, or bring its settings, scopes and mappers in line."""
    client_id = wanted["clientId"]
    current = keycloak.find_client(conn, client_id)
    if current is None:
        keycloak.create_client(conn, wanted)
        return [f"created client {client_id}"]
    changes = []
    nested = {"defaultClientScopes", "optionalClientScopes", "protocolMappers"}
    settings_part = {k: v for k, v in wanted.items() if k not in nested}
    if differs(current, settings_part):
        merged = {**current, **settings_part}
        merged["attributes"] = {**current.get("attributes", {}), **settings_part["attributes"]}
        keycloak.update_client(conn, current["id"], merged)
        changes.append(f"updated client {client_id}")
    for kind in ("default", "optional"):
        names = set(wanted[f"{kind}ClientScopes"])
        changes += _ensure_client_scopes(conn, current["id"], client_id, kind, names)
    changes += _ensure_mappers(
        conn, current, wanted["protocolMappers"], keycloak.add_client_mapper,
        keycloak.update_client_mapper,
    )  # fmt: skip
    return changes


def ensure_client_realm_scope(conn: Connection, client_id: str, roles: set[str]) -> list[str]:
    """Put exactly `roles` (realm roles) in the client's scope (fullScopeAllowed is off)."""
    client = _require_client(conn, client_id)
    missing = roles - keycloak.get_realm_scope_mappings(conn, client["id"])
    if not missing:
        return []
    reps = [_require_role(conn, name) for name in sorted(missing)]
    keycloak.add_realm_scope_mappings(conn, client["id"], reps)
    return [f"added realm roles {sorted(missing)} to the scope of {client_id}"]


def ensure_service_account_roles(conn: Connection, client_id: str) -> list[str]:
    """Grant the service account exactly SERVICE_ROLES of realm-management, no more.

    The roles are both held by the service-account user and put in the client's scope,
    since fullScopeAllowed is off.
    """
    client = _require_client(conn, client_id)
    user = keycloak.get_service_account_user(conn, client["id"])
    management = _require_client(conn, "realm-management")
    roles = {r["name"]: r for r in keycloak.get_client_roles(conn, management["id"])}

    def grant(names: Collection[str], granted: bool) -> None:
        reps = [roles[name] for name in sorted(names)]
        keycloak.set_user_client_roles(conn, user["id"], management["id"], reps, granted=granted)

    def scope(names: Collection[str], granted: bool) -> None:
        reps = [roles[name] for name in sorted(names)]
        keycloak.set_client_scope_mappings(
            conn, client["id"], management["id"], reps, granted=granted
        )

    held = keycloak.get_user_client_roles(conn, user["id"], management["id"])
    scoped = keycloak.get_client_scope_mappings(conn, client["id"], management["id"])
    return _converge_roles(held, grant, f"roles of {client_id}") + _converge_roles(
        scoped, scope, f"scope of {client_id}"
    )


def _converge_roles(
    have: set[str], apply: Callable[[Collection[str], bool], None], what: str
) -> list[str]:
    changes = []
    if extra := have - SERVICE_ROLES:
        apply(extra, False)
        changes.append(f"removed {sorted(extra)} from the {what}")
    if missing := SERVICE_ROLES - have:
        apply(missing, True)
        changes.append(f"added {sorted(missing)} to the {what}")
    return changes


def ensure_api_scope(conn: Connection, api: Api) -> list[str]:
    """Create or repair the client scope that carries `api`'s audience."""
    wanted = api_scope_representation(api)
    current = keycloak.find_client_scope(conn, wanted["name"])
    if current is None:
        keycloak.create_client_scope(conn, wanted)
        return [f"created client scope {wanted['name']}"]
    changes = []
    settings_part = {k: v for k, v in wanted.items() if k != "protocolMappers"}
    if differs(current, settings_part):
        keycloak.update_client_scope(conn, current["id"], {**current, **settings_part})
        changes.append(f"updated client scope {wanted['name']}")
    changes += _ensure_mappers(
        conn, current, wanted["protocolMappers"], keycloak.add_client_scope_mapper,
        keycloak.update_client_scope_mapper,
    )  # fmt: skip
    return changes


def differs(current: Any, wanted: Any) -> bool:
    """True if `current` lacks anything in `wanted`; lists of names compare as sets."""
    if isinstance(wanted, dict):
        if not isinstance(current, dict):
            return True
        return any(differs(current.get(key), value) for key, value in wanted.items())
    if isinstance(wanted, list) and all(isinstance(item, str) for item in wanted):
        return not isinstance(current, list) or set(current) != set(wanted)
    return bool(current != wanted)


def _ensure_client_scopes(
    conn: Connection, client_uuid: str, client_id: str, kind: str, wanted: set[str]
) -> list[str]:
    current = keycloak.get_client_scopes_of_client(conn, client_uuid, kind)
    if current == wanted:
        return []
    scope_ids = {s["name"]: s["id"] for s in keycloak.list_client_scopes(conn)}
    for name in sorted(current ^ wanted):
        if name not in scope_ids:
            raise keycloak.NotFound(404, f"client scope {name} does not exist")
        keycloak.set_client_scope_of_client(
            conn, client_uuid, kind, scope_ids[name], attached=name in wanted
        )
    return [f"set {kind} client scopes of {client_id} to {sorted(wanted)}"]


def _ensure_mappers(
    conn: Connection,
    owner: Representation,
    wanted: list[Representation],
    add: Any,
    update: Any,
) -> list[str]:
    current = {m["name"]: m for m in owner.get("protocolMappers", [])}
    changes = []
    for mapper in wanted:
        have = current.get(mapper["name"])
        if have is None:
            add(conn, owner["id"], mapper)
            changes.append(f"added mapper {mapper['name']!r} to {_label(owner)}")
        elif differs(have, mapper):
            update(conn, owner["id"], have["id"], {**mapper, "id": have["id"]})
            changes.append(f"updated mapper {mapper['name']!r} of {_label(owner)}")
    return changes


def _label(owner: Representation) -> str:
    return str(owner.get("clientId") or owner.get("name"))


def _require_client(conn: Connection, client_id: str) -> Representation:
    client = keycloak.find_client(conn, client_id)
    if client is None:
        raise keycloak.NotFound(404, f"client {client_id} does not exist")
    return client


def _require_role(conn: Connection, name: str) -> Representation:
    role = keycloak.get_realm_role(conn, name)
    if role is None:
        raise keycloak.NotFound(404, f"realm role {name} does not exist")
    return role
