"""`bootstrap_keycloak`: make the realm and every object the portal owns in it what it wants.

The order matters only where one object needs another: the admin role before the login
client's scope holds it, the clients before their roles, the API scopes whenever. Each
`ensure_*` reads the object, compares it with `apikeys/keycloak/desired.py` and writes only what
differs (`apikeys/keycloak/convergence.py`), so a second run changes nothing. Each returns a line
per change it made.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable

from django.conf import settings

from apikeys.keycloak import client as keycloak
from apikeys.keycloak import convergence, desired, signin_flow
from apikeys.keycloak.client import Connection, Representation
from apikeys.models import Api, ApiKey, Permission, WorkloadIssuer


def run(
    conn: Connection,
    apis: Iterable[Api],
    *,
    issuers: Iterable[WorkloadIssuer] = (),
    tell: Callable[[str], None] = lambda line: None,
) -> list[str]:
    """Bring the realm and everything the portal owns in it to the wanted state: the APIs'
    scopes and the trusted issuers' providers given (the caller reads them, as it may have
    no database yet); `tell` hears what a long step waits for."""
    changes = ensure_realm(conn, tell=tell)
    changes += ensure_messages(conn, "en", desired.MESSAGES_EN)
    changes += ensure_realm_role(conn, desired.admin_role())
    changes += signin_flow.ensure_signin(conn)  # the levels the clients' `acr` values name
    changes += ensure_client(conn, desired.login_client())
    changes += ensure_client_realm_scope(
        conn, settings.OIDC_RP_CLIENT_ID, {settings.OIDC_ADMIN_ROLE}
    )
    changes += ensure_client_scope(conn, desired.portal_api_scope())
    changes += ensure_client(conn, desired.cli_client())
    changes += ensure_client_realm_scope(conn, settings.CLI_CLIENT_ID, {settings.OIDC_ADMIN_ROLE})
    changes += ensure_client(conn, desired.service_client())
    changes += ensure_service_account_roles(conn, settings.KEYCLOAK_SERVICE_CLIENT_ID)
    _require_networks_executor(conn)
    changes += ensure_client_policy(conn, "profiles", desired.key_secrets_profile())
    changes += ensure_client_policy(conn, "policies", desired.key_secrets_policy())
    changes += ensure_registration_closed(conn)
    for api in apis:
        changes += ensure_api_scope(conn, api)
        held = api.permissions.select_related("api") if api.pk else []  # in the catalog
        for permission in held:
            changes += ensure_permission_scope(conn, permission)
    for issuer in issuers:
        changes += ensure_workload_provider(conn, issuer)
    return changes


class ProviderTaken(keycloak.KeycloakRejected):
    """An identity provider with a workload issuer's alias exists; the portal did not make it."""

    for_people = (
        "Keycloak already has an identity provider of that alias that the portal did not make: "
        "choose another short name, or remove that provider in Keycloak first."
    )


def ensure_workload_provider(conn: Connection, issuer: WorkloadIssuer) -> list[str]:
    """Create or repair the identity provider of a trusted workload issuer. One the portal did
    not make (no marker in its config) is never taken over (ProviderTaken)."""
    wanted = desired.workload_provider(issuer)
    current = keycloak.get_identity_provider(conn, issuer.alias)
    if current is None:
        keycloak.create_identity_provider(conn, wanted)
        return [f"created identity provider {issuer.alias}"]
    config = current.get("config") or {}
    if not desired.is_own_provider(current):
        raise ProviderTaken(409, f"identity provider {issuer.alias} exists and is not the portal's")
    if not convergence.differs(current, wanted):
        return []
    merged = current | wanted | {"config": config | wanted["config"]}
    keycloak.update_identity_provider(conn, issuer.alias, merged)
    return [f"updated identity provider {issuer.alias}"]


def ensure_realm(conn: Connection, *, tell: Callable[[str], None] = lambda line: None) -> list[str]:
    """Create the realm, or bring what the portal sets in it in line.

    What an operator added stays: SMTP settings the portal does not set (TLS, a login),
    more stored event types, other realm attributes. Keycloak never shows the SMTP password
    (it answers with a mask), so it is set whenever the realm is updated, and not compared.
    """
    wanted = desired.realm()
    current = keycloak.get_realm(conn)
    wanted["eventsListeners"] = _event_listeners(conn, current)
    if current is None:
        _create_realm(conn, wanted, tell)
        return [f"created realm {conn.realm}"]
    wanted["smtpServer"] = {**(current.get("smtpServer") or {}), **wanted["smtpServer"]}
    events = set(current.get("enabledEventTypes") or []) | set(wanted["enabledEventTypes"])
    wanted["enabledEventTypes"] = sorted(events)
    attributes = current.get("attributes") or {}
    wanted["attributes"] = {**attributes, **wanted["attributes"]}
    if operators := _levels(attributes.get("acr.loa.map")):  # their own names for levels stay
        wanted["attributes"]["acr.loa.map"] = json.dumps(operators | desired.ACR_LEVELS)
    compared = {**wanted, "smtpServer": {**wanted["smtpServer"]}}
    compared["smtpServer"].pop("password", None)
    if convergence.differs(current, compared):
        keycloak.update_realm(conn, wanted)
        return [f"updated realm {conn.realm}"]
    return []


def ensure_messages(conn: Connection, locale: str, wanted: dict[str, str]) -> list[str]:
    """The realm's own wording of Keycloak's texts the portal words again; an operator's
    other texts stay."""
    current = keycloak.get_messages(conn, locale)
    if changed := {key: text for key, text in wanted.items() if current.get(key) != text}:
        keycloak.set_messages(conn, locale, changed)
        return [f"worded again {', '.join(sorted(changed))} ({locale})"]
    return []


def _levels(text: str | None) -> dict[str, int]:
    """An `acr.loa.map` as Keycloak keeps it (a JSON object); {} if absent or unreadable."""
    try:
        found = json.loads(text or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _create_realm(conn: Connection, wanted: Representation, tell: Callable[[str], None]) -> None:
    """The one-time heavy step: a busy Keycloak may take a minute, or answer after the
    portal gave up waiting while it carries on. Then the realm appears a little later: it
    is waited for (and a 409 means an earlier attempt made it)."""
    limit = settings.KEYCLOAK_BOOTSTRAP_TIMEOUT
    tell(f"Creating the realm {conn.realm} in Keycloak (once; up to {limit} s on a busy machine)")
    try:
        keycloak.create_realm(conn, wanted)
        return
    except keycloak.AlreadyExists:
        return  # made by an attempt whose answer was lost
    except keycloak.KeycloakUnavailable as error:
        if not error.reached:
            raise
        tell(f"Keycloak did not answer in time ({error}); waiting for the realm to appear")
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(2)
        with contextlib.suppress(keycloak.KeycloakUnavailable):
            if keycloak.get_realm(conn) is not None:
                return
    raise keycloak.KeycloakUnavailable(
        f"Keycloak did not create the realm {conn.realm} within {limit} s "
        "(KEYCLOAK_BOOTSTRAP_TIMEOUT); run bootstrap_keycloak again once it answers"
    )


def _event_listeners(conn: Connection, current: Representation | None) -> list[str]:
    """The realm's event listeners: the operator's, and the portal's when it takes pushed
    events (KEYCLOAK_PUSH_EVENTS), which needs the extension installed in Keycloak."""
    listeners = list((current or {}).get("eventsListeners") or ["jboss-logging"])
    listeners = [name for name in listeners if name != desired.EVENT_LISTENER]
    if not settings.KEYCLOAK_PUSH_EVENTS:
        return listeners
    if desired.EVENT_LISTENER not in keycloak.event_listeners(conn):
        raise MissingListener(
            f"Keycloak has no {desired.EVENT_LISTENER!r} event listener: put "
            "keycloak-extension/target/apikey-portal-event-listener.jar (bin/setup builds it) "
            "in its providers/ directory and start it again, or set KEYCLOAK_PUSH_EVENTS=false "
            "to follow Keycloak by polling alone."
        )
    return [*listeners, desired.EVENT_LISTENER]


def ensure_realm_role(conn: Connection, wanted: Representation) -> list[str]:
    name = wanted["name"]
    current = keycloak.get_realm_role(conn, name)
    if current is None:
        keycloak.create_realm_role(conn, wanted)
        return [f"created realm role {name}"]
    if convergence.differs(current, wanted):
        keycloak.update_realm_role(conn, name, {**current, **wanted})
        return [f"updated realm role {name}"]
    return []


def ensure_client_policy(conn: Connection, kind: str, wanted: Representation) -> list[str]:
    """Put the portal's client policy (or profile) in the realm's list, leaving the others."""
    current = keycloak.get_client_policies(conn, kind)
    have = next((item for item in current if item.get("name") == wanted["name"]), None)
    if have is not None and not convergence.differs(have, wanted):
        return []
    others = [item for item in current if item.get("name") != wanted["name"]]
    keycloak.set_client_policies(conn, kind, [*others, wanted])
    what = {"profiles": "client profile", "policies": "client policy"}[kind]
    return [f"{'created' if have is None else 'updated'} {what} {wanted['name']}"]


def ensure_client(conn: Connection, wanted: Representation) -> list[str]:
    """Create the client in one request, or bring its settings, scopes and mappers in line."""
    current = keycloak.find_client(conn, wanted["clientId"])
    if current is None:
        keycloak.create_client(conn, wanted)
        return [f"created client {wanted['clientId']}"]
    plan = convergence.plan(current, wanted)
    convergence.apply(conn, plan)
    return plan.describe()


class MissingListener(keycloak.KeycloakFailure):
    """Push is on, and Keycloak has no portal event listener to push with."""


class MissingExecutor(keycloak.KeycloakFailure):
    """Keycloak has not loaded the extension's executors that network ranges and permissions
    need (or they are turned off while keys count on them)."""


def _require_networks_executor(conn: Connection) -> None:
    """Ranges on: Keycloak has the executor. Off: no live key counts on ranges (the profile
    without the executor would let them get tokens from anywhere: fail closed, say so)."""
    if not settings.KEYCLOAK_NETWORK_RANGES:
        limited = ApiKey.objects.live().exclude(networks=[]).count()
        if limited:
            raise MissingExecutor(
                f"KEYCLOAK_NETWORK_RANGES is false, but {limited} live keys are limited to "
                "network ranges, which Keycloak would stop enforcing: set them to anywhere "
                "first, or keep it true."
            )
        if Permission.objects.exists():
            raise MissingExecutor(
                "KEYCLOAK_NETWORK_RANGES is false, but the catalog has permissions: without "
                "the extension's executors a token request asking for fewer would get all of "
                "its key's. Keep it true."
            )
        return
    loaded = keycloak.providers(conn, "client-policy-executor")
    for executor in (desired.NETWORKS_EXECUTOR, desired.PERMISSIONS_EXECUTOR):
        if executor in loaded:
            continue
        raise MissingExecutor(
            f"Keycloak has no {executor!r} client policy executor: put "
            "keycloak-extension's jar in its providers/ (and run `kc.sh build`), or set "
            "KEYCLOAK_NETWORK_RANGES=false (no key can then be limited to network ranges, "
            "nor a token to fewer permissions than its key has)."
        )


def ensure_registration_closed(conn: Connection) -> list[str]:
    """Keycloak's own registration endpoints refuse every client (desired.registration_closed);
    the realm's other registration policies stay as they are."""
    current = {
        c["name"]: c for c in keycloak.list_components(conn, desired.REGISTRATION_POLICY_TYPE)
    }
    changes = []
    for wanted in desired.registration_closed():
        have = current.get(wanted["name"])
        if have is None:
            keycloak.create_component(conn, wanted)
            changes.append(f"closed Keycloak's {wanted['subType']} client registration")
        elif convergence.differs(have, wanted):
            keycloak.update_component(conn, have["id"], {**have, **wanted})
            changes.append(f"closed Keycloak's {wanted['subType']} client registration again")
    return changes


class ScopeTaken(keycloak.KeycloakRejected):
    """A client scope with the API's scope name exists, and the portal did not make it."""

    for_people = (
        "Keycloak already has a client scope of that name that the portal did not make: choose "
        "another slug, or remove that scope in Keycloak first."
    )


def ensure_api_scope(conn: Connection, api: Api, *, adopt: bool = True) -> list[str]:
    """Create or repair the client scope that carries `api`'s audience; exactly, mappers too.

    A scope of that name without the portal's marker is someone else's: a new API refuses it
    (`adopt=False`, ScopeTaken). For an API already in the catalog it is the portal's own,
    made before scopes were marked, and is marked (and said so).
    """
    return ensure_client_scope(conn, desired.api_scope(api), adopt=adopt)


def ensure_permission_scope(
    conn: Connection, permission: Permission, *, adopt: bool = False
) -> list[str]:
    """Create or repair a permission's client scope (see ensure_api_scope), and remember its
    id on the record: keys' clients are given the scope by id. A scope of that name the portal
    did not make is never taken over (ScopeTaken): permissions have no unmarked past."""
    changes = ensure_client_scope(conn, desired.permission_scope(permission), adopt=adopt)
    if permission.scope_id and not any(c.startswith("created") for c in changes):
        return changes  # the scope the record names is still there: no second read
    scope = keycloak.find_client_scope(conn, permission.name)
    if scope is not None and scope["id"] != permission.scope_id:
        permission.scope_id = scope["id"]
        Permission.objects.filter(pk=permission.pk).update(scope_id=scope["id"])
    return changes


def ensure_client_scope(
    conn: Connection, wanted: Representation, *, adopt: bool = True
) -> list[str]:
    """Create or repair one of the portal's client scopes (see ensure_api_scope)."""
    current = keycloak.find_client_scope(conn, wanted["name"])
    if current is None:
        keycloak.create_client_scope(conn, wanted)
        return [f"created client scope {wanted['name']}"]
    changes = []
    if not desired.is_managed(current):
        if not adopt:
            raise ScopeTaken(409, f"client scope {wanted['name']} exists and is not the portal's")
        changes.append(f"adopted client scope {wanted['name']} (made before scopes were marked)")
    plan = convergence.plan(current, wanted, kind="client scope")
    convergence.apply(conn, plan)
    return changes + plan.describe()


def ensure_client_realm_scope(conn: Connection, client_id: str, roles: set[str]) -> list[str]:
    """Put exactly `roles` (realm roles) in the client's scope (fullScopeAllowed is off)."""
    path = keycloak.scope_roles_path(_require_client(conn, client_id)["id"])
    missing = roles - keycloak.get_roles(conn, path)
    if not missing:
        return []
    keycloak.set_roles(
        conn, path, [_require_role(conn, name) for name in sorted(missing)], granted=True
    )
    return [f"added realm roles {sorted(missing)} to the scope of {client_id}"]


def ensure_service_account_roles(conn: Connection, client_id: str) -> list[str]:
    """Grant the service account exactly `desired.service_roles()` of realm-management, no more.

    The roles are both held by the service-account user and put in the client's scope,
    since fullScopeAllowed is off.
    """
    client = _require_client(conn, client_id)
    user = keycloak.get_service_account_user(conn, client["id"])
    management = _require_client(conn, "realm-management")
    roles = {r["name"]: r for r in keycloak.get_client_roles(conn, management["id"])}
    held = keycloak.user_roles_path(user["id"], management["id"])
    scoped = keycloak.scope_roles_path(client["id"], management["id"])
    return _converge_roles(conn, held, roles, f"roles of {client_id}") + _converge_roles(
        conn, scoped, roles, f"scope of {client_id}"
    )


def _converge_roles(
    conn: Connection, path: str, roles: dict[str, Representation], what: str
) -> list[str]:
    """Make the roles mapped at `path` exactly `desired.service_roles()`."""
    have = keycloak.get_roles(conn, path)
    changes = []
    if extra := have - desired.service_roles():
        keycloak.set_roles(conn, path, [roles[n] for n in sorted(extra)], granted=False)
        changes.append(f"removed {sorted(extra)} from the {what}")
    if missing := desired.service_roles() - have:
        keycloak.set_roles(conn, path, [roles[n] for n in sorted(missing)], granted=True)
        changes.append(f"added {sorted(missing)} to the {what}")
    return changes


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
