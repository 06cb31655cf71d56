"""The one module that talks to Keycloak's admin REST API.

Each function is one remote operation; its docstring names the endpoint. python-keycloak
provides the authenticated connection (token fetch and renewal, timeouts); the requests go
through `_request`, which turns every failure into one of the domain exceptions below, so
callers never see python-keycloak or requests.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from keycloak.exceptions import KeycloakError

from apikeys import observability
from apikeys.keycloak.key_clients import KeyClient
from apikeys.keycloak.key_clients import Representation as Representation

log = logging.getLogger(__name__)


class KeycloakFailure(Exception):
    """A call to Keycloak failed. `for_people` says so in words fit for any page."""

    for_people = "Keycloak, which issues the keys, failed."


class KeycloakUnavailable(KeycloakFailure):
    """Keycloak did not answer in time, or answered with a server error.

    `reached` is False when the request certainly never got to Keycloak (no connection, or
    no token to send it with), so it cannot have changed anything there.
    """

    for_people = "Keycloak, which issues the keys, is not answering right now."

    def __init__(self, message: str, *, reached: bool = True) -> None:
        super().__init__(message)
        self.reached = reached


class KeycloakRejected(KeycloakFailure):
    """Keycloak refused the request (4xx); the message says why."""

    for_people = "Keycloak, which issues the keys, refused the request."

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Keycloak answered {status}: {message}")
        self.status = status


class AlreadyExists(KeycloakRejected):
    """A create request met an object with the same unique name (409)."""


class NotFound(KeycloakRejected):
    """The object is not there (404)."""


@dataclass(frozen=True)
class Connection:
    """An authenticated admin connection, and the realm it works on."""

    admin: KeycloakAdmin
    realm: str


def connect(
    *,
    realm: str,
    client_id: str | None = None,
    client_secret: str | None = None,
    username: str | None = None,
    password: str | None = None,
    user_realm: str | None = None,
    timeout: int | None = None,
) -> Connection:
    """A connection as a service account (client credentials) or, to bootstrap, an admin user."""
    openid = KeycloakOpenIDConnection(
        server_url=settings.KEYCLOAK_URL,
        realm_name=realm,
        user_realm_name=user_realm or realm,
        client_id=client_id or "admin-cli",
        client_secret_key=client_secret,
        username=username,
        password=password,
        timeout=timeout or settings.KEYCLOAK_TIMEOUT,
        max_retries=0,
    )
    return Connection(KeycloakAdmin(connection=openid), realm)


_local = threading.local()


def portal_connection() -> Connection:
    """The portal's run-time identity: its own service account in the portal realm.

    One connection per thread: python-keycloak renews tokens without a lock (its issue #708).
    A thread may lend its connection to a worker while it waits for it (`start_create_client`).
    The settings are part of the key, so a test that points the portal elsewhere gets a new one.
    """
    key = (settings.KEYCLOAK_URL, settings.KEYCLOAK_TIMEOUT, settings.KEYCLOAK_SERVICE_CLIENT_ID)
    connections: dict[tuple[str, int, str], Connection] = _local.__dict__.setdefault("by_key", {})
    if key not in connections:
        connections[key] = connect(
            realm=settings.KEYCLOAK_REALM,
            client_id=settings.KEYCLOAK_SERVICE_CLIENT_ID,
            client_secret=settings.KEYCLOAK_SERVICE_CLIENT_SECRET,
        )
    return connections[key]


@sensitive_variables()  # bodies carry client secrets; frames below it (requests') too
def _request(
    conn: Connection,
    method: str,
    path: str,
    body: Any = None,
    *,
    params: dict[str, Any] | None = None,
) -> Any:
    """Send one admin request; `path` is relative to /admin/realms/{realm}. Counted, timed
    and logged (with the request id) by operation and outcome (apikeys/observability.py)."""
    started = time.monotonic()
    outcome = "ok"
    try:
        return _send(conn, method, path, body, params=params)
    except NotFound:
        outcome = "not found"
        raise
    except AlreadyExists:
        outcome = "conflict"
        raise
    except KeycloakRejected:
        outcome = "refused"
        raise
    except KeycloakUnavailable:
        outcome = "unavailable"
        raise
    except Exception:
        outcome = "error"
        raise
    finally:
        observability.keycloak_call(method, path, outcome, time.monotonic() - started)


@sensitive_variables()
def _send(
    conn: Connection,
    method: str,
    path: str,
    body: Any = None,
    *,
    params: dict[str, Any] | None = None,
) -> Any:
    url = f"admin/realms/{conn.realm}{path}" if not path.startswith("/admin/") else path[1:]
    connection = conn.admin.connection
    if connection.token is None:
        # Without this, python-keycloak sends the first request unauthenticated and fetches
        # a token only after the 401.
        try:
            connection.get_token()
        except KeycloakError as error:
            raise KeycloakUnavailable(
                f"Keycloak gave the portal no token: {_cause(error)}", reached=False
            ) from error
    try:
        if method == "GET":
            response = connection.raw_get(url, **(params or {}))
        elif method == "POST":
            response = connection.raw_post(url, data=json.dumps(body))
        elif method == "PUT":
            response = connection.raw_put(url, data=json.dumps(body))
        else:
            response = connection.raw_delete(url, data=json.dumps(body) if body else None)
    except KeycloakError as error:
        raise KeycloakUnavailable(
            f"Keycloak is unreachable: {_cause(error)}", reached=not _never_connected(error)
        ) from error
    status = response.status_code
    if status >= 500:
        raise KeycloakUnavailable(f"Keycloak answered {status} to {method} {path}")
    if status >= 400:
        message = _error_message(response.text) or response.reason
        if status == 404:
            raise NotFound(status, message)
        if status == 409:
            raise AlreadyExists(status, message)
        raise KeycloakRejected(status, message)
    if status == 201:
        return response.headers.get("Location", "")
    if not response.content:
        return None
    return response.json()


def _cause(error: KeycloakError) -> str:
    return str(error.__cause__ or error)


def _never_connected(error: KeycloakError) -> bool:
    """True if the request failed before a connection to Keycloak was made."""
    cause = error.__cause__
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(cause, requests.exceptions.ConnectionError) and cause.args:
        reason = getattr(cause.args[0], "reason", None)
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


def _error_message(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(data, dict):
        return str(data.get("errorMessage") or data.get("error_description") or data.get("error"))
    return text[:200]


def _created_id(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


Fetch = Callable[[int, int], list[Representation]]


def all_pages(fetch: Fetch, page: int = 200) -> Iterator[list[Representation]]:
    """Every page of a Keycloak list: `fetch(first, max)` until a page comes back short."""
    first = 0
    while True:
        found = fetch(first, page)
        yield found
        if len(found) < page:
            return
        first += page


# Realm


def event_listeners(conn: Connection) -> set[str]:
    """The event listener providers the server has (GET /admin/serverinfo; a master admin)."""
    return providers(conn, "eventsListener")


def providers(conn: Connection, spi: str) -> set[str]:
    """The providers of one SPI the server has loaded (GET /admin/serverinfo; a master admin)."""
    info = _request(conn, "GET", "/admin/serverinfo")
    found = (info.get("providers") or {}).get(spi) or {}
    return set(found.get("providers") or {})


def get_realm(conn: Connection) -> Representation | None:
    """GET /admin/realms/{realm}; None if the realm does not exist."""
    try:
        return _request(conn, "GET", "")  # type: ignore[no-any-return]
    except NotFound:
        return None


def create_realm(conn: Connection, rep: Representation) -> None:
    """POST /admin/realms."""
    _request(conn, "POST", "/admin/realms", rep)


def update_realm(conn: Connection, rep: Representation) -> None:
    """PUT /admin/realms/{realm} (fields not sent are left as they are)."""
    _request(conn, "PUT", "", rep)


def get_messages(conn: Connection, locale: str) -> dict[str, str]:
    """GET /admin/realms/{realm}/localization/{locale}: the realm's own texts for Keycloak's
    pages and mails (those that replace its theme's)."""
    return _request(conn, "GET", f"/localization/{locale}")  # type: ignore[no-any-return]


def set_messages(conn: Connection, locale: str, texts: dict[str, str]) -> None:
    """POST /admin/realms/{realm}/localization/{locale}: add or replace these texts; the
    realm's others stay."""
    _request(conn, "POST", f"/localization/{locale}", texts)


def get_events_config(conn: Connection) -> Representation:
    """GET /admin/realms/{realm}/events/config."""
    return _request(conn, "GET", "/events/config")  # type: ignore[no-any-return]


def set_events_config(conn: Connection, rep: Representation) -> None:
    """PUT /admin/realms/{realm}/events/config."""
    _request(conn, "PUT", "/events/config", rep)


def get_events(
    conn: Connection, event_type: str, *, since_ms: int, first: int, page: int
) -> list[Representation]:
    """GET /admin/realms/{realm}/events?type=…&dateFrom=<ms>&direction=asc: one page, oldest first.

    `dateFrom` in epoch milliseconds and `direction` are honoured by Keycloak 26.x.
    """
    params = {
        "type": event_type,
        "dateFrom": since_ms,
        "direction": "asc",
        "first": first,
        "max": page,
    }
    return _request(conn, "GET", "/events", params=params)  # type: ignore[no-any-return]


def has_logged_in(conn: Connection, client_id: str) -> bool:
    """GET /admin/realms/{realm}/events?type=CLIENT_LOGIN&client=…&max=1: whether Keycloak
    has a stored token grant of the client (events are kept 90 days)."""
    params = {"type": "CLIENT_LOGIN", "client": client_id, "max": 1}
    return bool(_request(conn, "GET", "/events", params=params))


def get_admin_events(
    conn: Connection,
    resource_type: str,
    operations: list[str],
    *,
    since_ms: int,
    first: int,
    page: int,
) -> list[Representation]:
    """GET /admin/realms/{realm}/admin-events?resourceTypes=…&operationTypes=…, oldest first.

    `representation` holds the JSON that was sent (admin events are stored with details).
    """
    params = {
        "resourceTypes": resource_type,
        "operationTypes": operations,
        "dateFrom": since_ms,
        "direction": "asc",
        "first": first,
        "max": page,
    }
    return _request(conn, "GET", "/admin-events", params=params)  # type: ignore[no-any-return]


# Client policies


def get_client_policies(conn: Connection, kind: str) -> list[Representation]:
    """GET /admin/realms/{realm}/client-policies/{kind}: kind is "profiles" or "policies"."""
    return _request(conn, "GET", f"/client-policies/{kind}").get(kind) or []


def set_client_policies(conn: Connection, kind: str, items: list[Representation]) -> None:
    """PUT /admin/realms/{realm}/client-policies/{kind}: the realm's whole list of them."""
    _request(conn, "PUT", f"/client-policies/{kind}", {kind: items})


# Roles


def get_realm_role(conn: Connection, name: str) -> Representation | None:
    """GET /admin/realms/{realm}/roles/{name}; None if missing."""
    try:
        return _request(conn, "GET", f"/roles/{name}")  # type: ignore[no-any-return]
    except NotFound:
        return None


def create_realm_role(conn: Connection, rep: Representation) -> None:
    """POST /admin/realms/{realm}/roles."""
    _request(conn, "POST", "/roles", rep)


def update_realm_role(conn: Connection, name: str, rep: Representation) -> None:
    """PUT /admin/realms/{realm}/roles/{name}."""
    _request(conn, "PUT", f"/roles/{name}", rep)


def get_client_roles(conn: Connection, client_uuid: str) -> list[Representation]:
    """GET /admin/realms/{realm}/clients/{uuid}/roles."""
    return _request(conn, "GET", f"/clients/{client_uuid}/roles")  # type: ignore[no-any-return]


# Clients


def find_client(conn: Connection, client_id: str) -> Representation | None:
    """GET /admin/realms/{realm}/clients?clientId=…&search=false: the exact match, or None."""
    found = _request(conn, "GET", "/clients", params={"clientId": client_id, "search": "false"})
    matches = [c for c in found if c.get("clientId") == client_id]
    return matches[0] if matches else None


@sensitive_variables()  # the representation may carry a new secret
def create_client(conn: Connection, rep: Representation) -> str:
    """POST /admin/realms/{realm}/clients; returns the new client's UUID."""
    return _created_id(_request(conn, "POST", "/clients", rep))


@sensitive_variables()
def start_create_client(conn: Connection, rep: Representation) -> Future[str]:
    """`create_client` in a thread of its own, so that the caller writes its records of the
    client while Keycloak makes it; the future holds its UUID, or its domain exception.

    The caller must not use `conn` before the future is done (python-keycloak renews its
    token without a lock), and must wait for it even when its own writes fail. The thread
    runs in the caller's context: its log lines carry the request's id.
    """
    future: Future[str] = Future()
    context = contextvars.copy_context()
    threading.Thread(
        target=_create_into,
        args=(future, context, conn, rep),
        name="keycloak-create-client",
        daemon=True,
    ).start()
    return future


# The thread's outermost frame: error reports walk a frame's callers for this decorator, and
# in a thread of its own nothing above it would hide the secret in `rep`.
@sensitive_variables()
def _create_into(
    future: Future[str], context: contextvars.Context, conn: Connection, rep: Representation
) -> None:
    try:
        future.set_result(context.run(create_client, conn, rep))
    except BaseException as error:  # to the caller, whatever it is
        future.set_exception(error)


@sensitive_variables()
def update_client(conn: Connection, client_uuid: str, rep: Representation) -> None:
    """PUT /admin/realms/{realm}/clients/{uuid}; fields left out keep their values."""
    _request(conn, "PUT", f"/clients/{client_uuid}", rep)


def disable_client(conn: Connection, client_uuid: str) -> None:
    """PUT /admin/realms/{realm}/clients/{uuid} with enabled=false: it gets no token from now."""
    update_client(conn, client_uuid, {"enabled": False})


@sensitive_variables()
def get_client_secret(conn: Connection, client_uuid: str) -> str:
    """GET /admin/realms/{realm}/clients/{uuid}/client-secret: the current secret's value.

    Read only to move it to the rotated slot for a grace period, never kept.
    """
    answer = _request(conn, "GET", f"/clients/{client_uuid}/client-secret")
    return str(answer["value"])


@sensitive_variables()
def get_rotated_secret(conn: Connection, client_uuid: str) -> str | None:
    """GET /admin/realms/{realm}/clients/{uuid}/client-secret/rotated: the previous secret
    of a rotation's grace period, or None. Read only to fingerprint it, never kept."""
    try:
        answer = _request(conn, "GET", f"/clients/{client_uuid}/client-secret/rotated")
    except NotFound:
        return None
    return str(answer["value"]) if answer and answer.get("value") else None


def delete_rotated_secret(conn: Connection, client_uuid: str) -> None:
    """DELETE /admin/realms/{realm}/clients/{uuid}/client-secret/rotated: the old one stops."""
    _request(conn, "DELETE", f"/clients/{client_uuid}/client-secret/rotated")


def get_client(conn: Connection, client_uuid: str) -> Representation:
    """GET /admin/realms/{realm}/clients/{uuid}."""
    return _request(conn, "GET", f"/clients/{client_uuid}")  # type: ignore[no-any-return]


def delete_client(conn: Connection, client_uuid: str) -> None:
    """DELETE /admin/realms/{realm}/clients/{uuid}; its service-account user goes with it."""
    _request(conn, "DELETE", f"/clients/{client_uuid}")


def list_clients(
    conn: Connection, client_id_part: str, first: int, page: int
) -> list[Representation]:
    """GET /admin/realms/{realm}/clients?clientId=…&search=true&first=…&max=…: one page.

    The search matches `client_id_part` anywhere in the clientId; callers keep the ones
    that start with it. Keycloak refuses searches on custom attributes (`q=`), so portal
    clients are found by their clientId prefix and told apart by their attributes.
    """
    params = {"clientId": client_id_part, "search": "true", "first": first, "max": page}
    return _request(conn, "GET", "/clients", params=params)  # type: ignore[no-any-return]


# What follows the prefix in the clientId of a key's client: the hex of its record's id.
_KEY_ID_DIGITS = "0123456789abcdef"
# A search that would take more pages than this is split by the next digit.
_SPLIT_PAST_PAGES = 16
# Key clients per request. A node that has the clients cached reads big pages cheapest; one
# that loads them from its database (after it starts) spends time in each page that grows
# with the page's square. 250 reads 100,000 clients cold in a quarter of the time 1,000
# takes, warm in 1.4 times (docs/operators.md, "Many keys", has the figures).
KEY_CLIENTS_PAGE = 250


def key_clients(
    conn: Connection, prefix: str, page: int = KEY_CLIENTS_PAGE
) -> Iterator[list[KeyClient]]:
    """Every client whose clientId starts with `prefix` (a key's), a page at a time.

    Keycloak answers a page of a search in time that grows with every client the search
    matches, not only the page's (docs/operators.md, "Many keys"). It sorts a search by
    clientId, and a key's has uniform hex digits after the prefix, so the last clientId of the
    first page says how many pages the search holds; one of more than _SPLIT_PAST_PAGES is
    split by the next digit, each part read on its own (and split again if it is still that
    large: in pages of 250, 100,000 keys are read in 256 searches of about 390). In a realm
    that large, a clientId with the prefix and then something other than hex digits (never
    the portal's own) is not read; it is logged when a search is split.
    """
    yield from _clients_starting(conn, prefix, prefix, page)


def _clients_starting(
    conn: Connection, prefix: str, start: str, page: int
) -> Iterator[list[KeyClient]]:
    found = list_clients(conn, start, 0, page)
    if len(found) == page and _pages_ahead(found, start) > _SPLIT_PAST_PAGES:
        log.info("Reading the clients starting %s split by their next digit", start)
        for digit in _KEY_ID_DIGITS:
            yield from _clients_starting(conn, prefix, start + digit, page)
        return
    yield _starting(found, start, prefix)
    if len(found) == page:
        fetch = lambda first, size: list_clients(conn, start, page + first, size)  # noqa: E731
        yield from (_starting(more, start, prefix) for more in all_pages(fetch, page))


def _pages_ahead(first_page: list[Representation], start: str) -> float:
    """About how many pages a search for `start` holds, from where its first page ends
    (0 if the clientId there is not a key's, or has no digit left to split by)."""
    digits = str(first_page[-1].get("clientId", "")).lower()[len(start) : len(start) + 4]
    if not digits or any(d not in _KEY_ID_DIGITS for d in digits):
        return 0
    return float(16 ** len(digits)) / (int(digits, 16) + 1)


def _starting(found: list[Representation], start: str, prefix: str) -> list[KeyClient]:
    """The clients a search found whose clientId starts with `prefix` and, in either case as
    Keycloak's search matches, with `start` (a search matches anywhere in the clientId)."""
    return [
        KeyClient.read(c)
        for c in found
        if (client_id := str(c.get("clientId", ""))).startswith(prefix)
        and client_id.lower().startswith(start.lower())
    ]


def find_key_client(conn: Connection, client_id: str) -> KeyClient | None:
    """The key client named `client_id` (`find_client`), or None."""
    found = find_client(conn, client_id)
    return KeyClient.read(found) if found is not None else None


def get_key_client(conn: Connection, client_uuid: str) -> KeyClient:
    """The key client with Keycloak's id `client_uuid` (`get_client`)."""
    return KeyClient.read(get_client(conn, client_uuid))


def get_client_scopes_of_client(conn: Connection, client_uuid: str, kind: str) -> set[str]:
    """GET /admin/realms/{realm}/clients/{uuid}/{kind}-client-scopes: the scope names."""
    scopes = _request(conn, "GET", f"/clients/{client_uuid}/{kind}-client-scopes")
    return {s["name"] for s in scopes}


def set_client_scope_of_client(
    conn: Connection, client_uuid: str, kind: str, scope_id: str, *, attached: bool
) -> None:
    """PUT or DELETE /admin/realms/{realm}/clients/{uuid}/{kind}-client-scopes/{scopeId}."""
    method = "PUT" if attached else "DELETE"
    _request(conn, method, f"/clients/{client_uuid}/{kind}-client-scopes/{scope_id}")


@dataclass(frozen=True)
class Account:
    """A person's Keycloak account, as the portal reads it."""

    id: str  # the `sub` of their tokens
    email: str
    first_name: str
    last_name: str
    enabled: bool


def get_account(conn: Connection, user_id: str) -> Account | None:
    """GET /admin/realms/{realm}/users/{id} (view-users): the account, or None if there is none."""
    try:
        user = _request(conn, "GET", f"/users/{user_id}")
    except NotFound:
        return None
    return Account(
        id=str(user["id"]),
        email=str(user.get("email") or ""),
        first_name=str(user.get("firstName") or ""),
        last_name=str(user.get("lastName") or ""),
        enabled=bool(user.get("enabled")),
    )


def credential_types(conn: Connection, user_id: str) -> set[str]:
    """GET /admin/realms/{realm}/users/{id}/credentials (view-users): the kinds of credential
    the person has (`password`, `otp`, `webauthn`...); never their secrets' values."""
    return {str(c.get("type")) for c in _request(conn, "GET", f"/users/{user_id}/credentials")}


def realm_roles_of(conn: Connection, user_id: str) -> set[str]:
    """GET /admin/realms/{realm}/users/{id}/role-mappings/realm/composite (view-users): the
    realm roles the user holds, directly, through groups or composite roles."""
    roles = _request(conn, "GET", f"/users/{user_id}/role-mappings/realm/composite")
    return {role["name"] for role in roles}


def get_service_account_user(conn: Connection, client_uuid: str) -> Representation:
    """GET /admin/realms/{realm}/clients/{uuid}/service-account-user."""
    path = f"/clients/{client_uuid}/service-account-user"
    return _request(conn, "GET", path)  # type: ignore[no-any-return]


# Role mappings: of a user, or in a client's scope (`*_roles_path` name the place)


def user_roles_path(user_id: str, owner_uuid: str) -> str:
    """The roles of client `owner` that a user holds."""
    return f"/users/{user_id}/role-mappings/clients/{owner_uuid}"


def scope_roles_path(client_uuid: str, owner_uuid: str | None = None) -> str:
    """The roles in a client's scope: of client `owner`, or realm roles if no owner."""
    of = f"clients/{owner_uuid}" if owner_uuid else "realm"
    return f"/clients/{client_uuid}/scope-mappings/{of}"


def get_roles(conn: Connection, path: str) -> set[str]:
    """GET /admin/realms/{realm}{path}: the names of the roles mapped there."""
    return {r["name"] for r in _request(conn, "GET", path)}


def set_roles(
    conn: Connection, path: str, roles: Iterable[Representation], *, granted: bool
) -> None:
    """POST (grant) or DELETE (take away) /admin/realms/{realm}{path}."""
    _request(conn, "POST" if granted else "DELETE", path, list(roles))


# Client scopes


def list_client_scopes(conn: Connection) -> list[Representation]:
    """GET /admin/realms/{realm}/client-scopes."""
    return _request(conn, "GET", "/client-scopes")  # type: ignore[no-any-return]


def client_scopes_by_name(conn: Connection) -> dict[str, Representation]:
    """The realm's client scopes (`list_client_scopes`), by name."""
    return {scope["name"]: scope for scope in list_client_scopes(conn)}


def find_client_scope(conn: Connection, name: str) -> Representation | None:
    """The client scope called `name` (the endpoint has no name query)."""
    return next((s for s in list_client_scopes(conn) if s.get("name") == name), None)


def create_client_scope(conn: Connection, rep: Representation) -> str:
    """POST /admin/realms/{realm}/client-scopes; returns the new scope's id."""
    return _created_id(_request(conn, "POST", "/client-scopes", rep))


def delete_client_scope(conn: Connection, scope_id: str) -> None:
    """DELETE /admin/realms/{realm}/client-scopes/{id}."""
    _request(conn, "DELETE", f"/client-scopes/{scope_id}")


def update_client_scope(conn: Connection, scope_id: str, rep: Representation) -> None:
    """PUT /admin/realms/{realm}/client-scopes/{id} (protocol mappers are not updated here)."""
    _request(conn, "PUT", f"/client-scopes/{scope_id}", rep)


def list_components(conn: Connection, provider_type: str) -> list[Representation]:
    """GET /admin/realms/{realm}/components?type=… (the realm's, e.g. its registration
    policies)."""
    return _request(conn, "GET", "/components", params={"type": provider_type})  # type: ignore[no-any-return]


def create_component(conn: Connection, rep: Representation) -> None:
    """POST /admin/realms/{realm}/components (its parent: the realm)."""
    _request(conn, "POST", "/components", rep)


def update_component(conn: Connection, component_id: str, rep: Representation) -> None:
    """PUT /admin/realms/{realm}/components/{id}."""
    _request(conn, "PUT", f"/components/{component_id}", rep)


# Protocol mappers, of a client (`/clients/{uuid}`) or a client scope (`/client-scopes/{id}`)


def add_mapper(conn: Connection, owner_path: str, rep: Representation) -> None:
    """POST /admin/realms/{realm}{owner_path}/protocol-mappers/models."""
    _request(conn, "POST", f"{owner_path}/protocol-mappers/models", rep)


def update_mapper(conn: Connection, owner_path: str, mapper_id: str, rep: Representation) -> None:
    """PUT /admin/realms/{realm}{owner_path}/protocol-mappers/models/{mapperId}."""
    _request(conn, "PUT", f"{owner_path}/protocol-mappers/models/{mapper_id}", rep)


def delete_mapper(conn: Connection, owner_path: str, mapper_id: str) -> None:
    """DELETE /admin/realms/{realm}{owner_path}/protocol-mappers/models/{mapperId}."""
    _request(conn, "DELETE", f"{owner_path}/protocol-mappers/models/{mapper_id}")


# Identity providers: the trusted issuers of workload identity keys (WorkloadIssuer).


def list_identity_providers(conn: Connection) -> list[Representation]:
    """GET /admin/realms/{realm}/identity-provider/instances (every one, full)."""
    params = {"briefRepresentation": "false", "max": 1000}
    return _request(conn, "GET", "/identity-provider/instances", params=params)  # type: ignore[no-any-return]


def get_identity_provider(conn: Connection, alias: str) -> Representation | None:
    """The identity provider `alias`, or None."""
    try:
        return _request(conn, "GET", f"/identity-provider/instances/{alias}")  # type: ignore[no-any-return]
    except NotFound:
        return None


def create_identity_provider(conn: Connection, rep: Representation) -> None:
    """POST /admin/realms/{realm}/identity-provider/instances."""
    _request(conn, "POST", "/identity-provider/instances", rep)


def update_identity_provider(conn: Connection, alias: str, rep: Representation) -> None:
    """PUT /admin/realms/{realm}/identity-provider/instances/{alias} (the whole provider)."""
    _request(conn, "PUT", f"/identity-provider/instances/{alias}", rep)


def delete_identity_provider(conn: Connection, alias: str) -> None:
    """DELETE /admin/realms/{realm}/identity-provider/instances/{alias}."""
    _request(conn, "DELETE", f"/identity-provider/instances/{alias}")


def list_provider_mappers(conn: Connection, alias: str) -> list[Representation]:
    """GET /admin/realms/{realm}/identity-provider/instances/{alias}/mappers."""
    return _request(conn, "GET", f"/identity-provider/instances/{alias}/mappers")  # type: ignore[no-any-return]


def delete_provider_mapper(conn: Connection, alias: str, mapper_id: str) -> None:
    """DELETE /admin/realms/{realm}/identity-provider/instances/{alias}/mappers/{id}."""
    _request(conn, "DELETE", f"/identity-provider/instances/{alias}/mappers/{mapper_id}")


# Authentication flows (bootstrap's admin identity only: the run-time one cannot)


def _flow_path(alias: str) -> str:
    return f"/authentication/flows/{quote(alias, safe='')}"


def top_level_flows(conn: Connection) -> list[Representation]:
    """GET /admin/realms/{realm}/authentication/flows: the top-level flows only."""
    return _request(conn, "GET", "/authentication/flows")  # type: ignore[no-any-return]


def copy_flow(conn: Connection, alias: str, new_alias: str) -> None:
    """POST …/authentication/flows/{alias}/copy: sub-flows are copied as "{new_alias} …"."""
    _request(conn, "POST", f"{_flow_path(alias)}/copy", {"newName": new_alias})


def flow_steps(conn: Connection, alias: str) -> list[Representation]:
    """GET …/authentication/flows/{alias}/executions: every execution and sub-flow below the
    flow, depth first, `level` 0 for its direct children (a sub-flow's alias in `displayName`)."""
    return _request(conn, "GET", f"{_flow_path(alias)}/executions")  # type: ignore[no-any-return]


def add_subflow(conn: Connection, parent: str, alias: str, description: str) -> None:
    """POST …/authentication/flows/{parent}/executions/flow (a basic flow, added disabled)."""
    body = {"alias": alias, "type": "basic-flow", "provider": "registration-page-form"}
    _request(
        conn, "POST", f"{_flow_path(parent)}/executions/flow", body | {"description": description}
    )


def add_execution(conn: Connection, parent: str, provider: str) -> None:
    """POST …/authentication/flows/{parent}/executions/execution (most are added disabled)."""
    _request(conn, "POST", f"{_flow_path(parent)}/executions/execution", {"provider": provider})


def set_requirement(conn: Connection, parent: str, step: Representation, requirement: str) -> None:
    """PUT …/authentication/flows/{parent}/executions: REQUIRED, ALTERNATIVE, CONDITIONAL...
    Its priority is sent back as it is (one left out is set to 0, Keycloak 25+)."""
    body = {"id": step["id"], "requirement": requirement}
    _request(conn, "PUT", f"{_flow_path(parent)}/executions", body | _priority(step))


def _priority(step: Representation) -> dict[str, Any]:
    return {"priority": step["priority"]} if "priority" in step else {}


def set_priority(conn: Connection, parent: str, step: Representation, priority: int) -> None:
    """PUT …/authentication/flows/{parent}/executions with the step's `priority` (Keycloak
    25+ orders a flow's steps by it; its requirement is sent back as it is)."""
    body = {"id": step["id"], "requirement": step["requirement"], "priority": priority}
    _request(conn, "PUT", f"{_flow_path(parent)}/executions", body)


def delete_execution(conn: Connection, step_id: str) -> None:
    """DELETE …/authentication/executions/{id} (a sub-flow's execution takes the sub-flow)."""
    _request(conn, "DELETE", f"/authentication/executions/{step_id}")


def get_step_config(conn: Connection, config_id: str) -> Representation:
    """GET …/authentication/config/{id}: `alias` and `config`."""
    return _request(conn, "GET", f"/authentication/config/{config_id}")  # type: ignore[no-any-return]


def add_step_config(conn: Connection, step_id: str, rep: Representation) -> None:
    """POST …/authentication/executions/{id}/config."""
    _request(conn, "POST", f"/authentication/executions/{step_id}/config", rep)


def update_step_config(conn: Connection, config_id: str, rep: Representation) -> None:
    """PUT …/authentication/config/{id}."""
    _request(conn, "PUT", f"/authentication/config/{config_id}", rep)


def required_actions(conn: Connection) -> list[Representation]:
    """GET …/authentication/required-actions."""
    return _request(conn, "GET", "/authentication/required-actions")  # type: ignore[no-any-return]


def register_required_action(conn: Connection, alias: str) -> None:
    """POST …/authentication/register-required-action."""
    body = {"providerId": alias, "name": alias}
    _request(conn, "POST", "/authentication/register-required-action", body)


def update_required_action(conn: Connection, alias: str, rep: Representation) -> None:
    """PUT …/authentication/required-actions/{alias}."""
    _request(conn, "PUT", f"/authentication/required-actions/{quote(alias, safe='')}", rep)
