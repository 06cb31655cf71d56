"""The registration endpoint: software registers its own keys (RFC 7591) and manages each
one afterwards (RFC 7592). What a registration may ask for and what it makes are in
apikeys/operations/registration.py; here the protocol: bearer tokens, JSON in and out, and
RFC 7591's error codes.

    POST   /register              Authorization: Bearer kcrt_…   (a registration token)
    GET    /register/<client_id>  Authorization: Bearer kcra_…   (its registration access token)
    PUT    /register/<client_id>  … the same, with the whole metadata
    DELETE /register/<client_id>  … the key is revoked
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from apikeys.client_address import client_ip
from apikeys.credentials import public_keys
from apikeys.credentials.bearer import bearer_token
from apikeys.credentials.challenge import TokenError
from apikeys.keycloak.client import KeycloakFailure
from apikeys.limits import over_limit
from apikeys.models import ApiKey, WrongState
from apikeys.operations import registration
from apikeys.operations.permissions import PermissionRefused
from apikeys.operations.registration import Metadata, RegistrationRefused

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
# What a Keycloak client representation (or its snake-case spelling) would set beyond the
# portal's rules: refused by name. Other metadata the portal does not know is ignored, as
# RFC 7591 §2 asks (none of it reaches Keycloak).
KEYCLOAK_SETTINGS = {
    *(
        name
        for camel in (
            "protocolMappers",
            "fullScopeAllowed",
            "defaultClientScopes",
            "optionalClientScopes",
            "serviceAccountsEnabled",
            "standardFlowEnabled",
            "implicitFlowEnabled",
            "directAccessGrantsEnabled",
            "publicClient",
            "bearerOnly",
            "authorizationServicesEnabled",
            "attributes",
            "clientAuthenticatorType",
            "webOrigins",
        )
        for name in (camel, re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower())
    )
}


def refuse(error: str, description: str, status: int = 400) -> JsonResponse:
    """RFC 7591 §3.2.2 (and RFC 6750 for a bad token): the error, said for people too."""
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = f'Bearer error="{error}"'
    response["Cache-Control"] = "no-store"
    return response


@login_not_required
@csrf_exempt
@never_cache
@require_POST
@sensitive_variables()
def register(request: HttpRequest) -> HttpResponse:
    """RFC 7591 §3: a client-credentials key for the registration token's API."""
    if over_limit(request, "registration"):
        answer = refuse("temporarily_unavailable", "Too many registrations: try in a minute.", 429)
        answer["Retry-After"] = "60"
        return answer
    try:
        secret = bearer_token(request)
        if registration.token_for(secret) is None:  # before reading anything it sent
            raise RegistrationRefused(
                "invalid_token", "The registration token is not valid.", status=401
            )
        metadata = read_metadata(request.body)
        made = registration.register(secret, metadata, ip_address=client_ip(request))
    except TokenError:
        return refuse("invalid_token", "Send the registration token as a bearer token.", 401)
    except RegistrationRefused as refused:
        return refuse(refused.error, refused.description, refused.status)
    except WrongState as refused:  # the API retired, public keys refused, meanwhile
        return refuse("invalid_client_metadata", str(refused))
    except KeycloakFailure as failure:
        return refuse("temporarily_unavailable", failure.for_people, 503)
    body = registration.client_metadata(made.key) | _credentials(request, made)
    return _answer(body, status=201)


@sensitive_variables()
def _credentials(request: HttpRequest, made: registration.Registered) -> dict[str, Any]:
    credentials = {
        "registration_access_token": made.access_token,
        "registration_client_uri": _client_uri(request, made.key),
    }
    if made.secret:
        credentials["client_secret"] = made.secret
    return credentials


def _client_uri(request: HttpRequest, key: ApiKey) -> str:
    path = reverse("registered_client", args=[key.client_id])
    return f"{settings.PORTAL_URL.rstrip('/')}{path}" if settings.PORTAL_URL else path


def _answer(body: dict[str, Any], status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


@login_not_required
@csrf_exempt
@never_cache
@require_http_methods(["GET", "PUT", "DELETE"])
@sensitive_variables()
def registered_client(request: HttpRequest, client_id: str) -> HttpResponse:
    """RFC 7592: read, update (within the same rules) or delete one registered key."""
    try:
        used = bearer_token(request)
        key = registration.registered_key(client_id, used)
    except TokenError:
        key = None
    if key is None:  # RFC 7592 §2: an unknown client and a wrong token look alike
        return refuse("invalid_token", "The registration access token is not valid.", 401)
    ip = client_ip(request)
    try:
        if request.method == "DELETE":
            registration.delete(key, ip_address=ip)
            return HttpResponse(status=204)
        access = used
        if request.method == "PUT":
            metadata = read_metadata(request.body, client_id=key.client_id)
            key, access = registration.update(key, metadata, used=used, ip_address=ip)
    except RegistrationRefused as refused:
        return refuse(refused.error, refused.description, refused.status)
    except (PermissionRefused, WrongState) as refused:
        return refuse("invalid_client_metadata", str(refused))
    except KeycloakFailure as failure:
        return refuse("temporarily_unavailable", failure.for_people, 503)
    uri = _client_uri(request, key)
    return _answer(
        registration.client_metadata(key)
        | {"registration_access_token": access, "registration_client_uri": uri}
    )


def read_metadata(raw: bytes, *, client_id: str | None = None) -> Metadata:
    """A registration request's metadata, or RegistrationRefused with RFC 7591's code."""
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RegistrationRefused("invalid_client_metadata", "Send a JSON object.") from None
    if not isinstance(body, dict):
        raise RegistrationRefused("invalid_client_metadata", "Send a JSON object.")
    _refuse_what_keys_do_not_do(body, client_id)
    auth = body.get("token_endpoint_auth_method") or "client_secret_basic"
    if auth not in AUTH_METHODS:
        raise RegistrationRefused(
            "invalid_client_metadata",
            f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}.",
        )
    keys, jwks_uri = _public_keys(body, auth, updating=client_id is not None)
    return Metadata(
        client_name=_text(body.get("client_name"), "client_name", 64),
        contacts=_contacts(body.get("contacts")),
        auth_method=auth,
        scope=_scope(body.get("scope")),
        public_keys=keys,
        jwks_uri=jwks_uri,
        dpop=_dpop(body.get("dpop_bound_access_tokens")),
    )


def _dpop(value: Any) -> bool | None:
    """RFC 9449 §5.2's dpop_bound_access_tokens: None if not said."""
    if value is None or isinstance(value, bool):
        return value
    raise RegistrationRefused(
        "invalid_client_metadata", "dpop_bound_access_tokens must be true or false."
    )


def _refuse_what_keys_do_not_do(body: dict[str, Any], client_id: str | None) -> None:
    if refused := sorted(set(body) & KEYCLOAK_SETTINGS):
        raise RegistrationRefused(
            "invalid_client_metadata",
            f"Not accepted here: {', '.join(refused)}. A key is a client-credentials client "
            "made by the portal's rules (no mappers, scopes or settings of its own).",
        )
    if body.get("redirectUris"):
        raise RegistrationRefused(
            "invalid_redirect_uri",
            "A key uses the client-credentials grant only: it has no redirect URIs.",
        )
    if client_id is None and "client_secret" in body:  # an update may echo it: ignored
        raise RegistrationRefused(
            "invalid_client_metadata", "The portal makes the secret: leave client_secret out."
        )
    if body.get("software_statement") is not None:
        raise RegistrationRefused(
            "invalid_software_statement", "Software statements are not accepted here."
        )
    if body.get("redirect_uris"):
        raise RegistrationRefused(
            "invalid_redirect_uri",
            "A key uses the client-credentials grant only: it has no redirect URIs.",
        )
    if body.get("grant_types", ["client_credentials"]) != ["client_credentials"]:
        raise RegistrationRefused(
            "invalid_client_metadata", 'grant_types must be ["client_credentials"].'
        )
    if body.get("response_types", []) != []:
        raise RegistrationRefused(
            "invalid_client_metadata", "response_types must be empty: no authorization flow."
        )
    if client_id is not None and body.get("client_id", client_id) != client_id:
        raise RegistrationRefused("invalid_client_metadata", "client_id is not this client's.")


def _text(value: Any, name: str, longest: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not value.isprintable() or len(value) > longest:
        raise RegistrationRefused(
            "invalid_client_metadata",
            f"{name} must be printable text of at most {longest} characters.",
        )
    return value.strip()


def _contacts(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 5:
        raise RegistrationRefused(
            "invalid_client_metadata", "contacts must be a list of at most 5 addresses."
        )
    return [_text(item, "each contact", 254) for item in value]


def _scope(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RegistrationRefused("invalid_client_metadata", "scope must be a string.")
    return value.split()


def _public_keys(
    body: dict[str, Any], auth: str, *, updating: bool
) -> tuple[list[public_keys.AcceptedKey], str]:
    jwks, uri = body.get("jwks"), body.get("jwks_uri")
    if updating and jwks is None and uri is None:
        return [], ""  # an update keeps the key's public keys
    if auth != "private_key_jwt":
        if jwks is not None or uri is not None:
            raise RegistrationRefused(
                "invalid_client_metadata",
                "jwks and jwks_uri go with token_endpoint_auth_method private_key_jwt.",
            )
        return [], ""
    if (jwks is None) == (uri is None):
        raise RegistrationRefused(
            "invalid_client_metadata", "private_key_jwt needs either jwks or jwks_uri."
        )
    try:
        if uri is not None:
            if not settings.JWKS_URLS_ALLOWED:
                raise public_keys.Refused("This portal takes public keys only, not JWKS URLs.")
            public_keys.from_url(str(uri))  # checked now; Keycloak reads it itself
            return [], str(uri)
        accepted = public_keys.from_jwks_text(json.dumps(jwks))
        if len(accepted) > settings.MAX_PUBLIC_KEYS_PER_KEY:
            raise public_keys.Refused(
                f"At most {settings.MAX_PUBLIC_KEYS_PER_KEY} public keys per key."
            )
        return accepted, ""
    except public_keys.Refused as refused:
        raise RegistrationRefused("invalid_client_metadata", str(refused)) from None
