"""The customer's side of the API: the catalog, their keys and their activity.

Each route calls the same operation as the page does (`apikeys/operations/lifecycle.py`), with the
same rules: the create form's validation (`KeyForm`), the quota, approval, rate limits. A secret
appears once, in the response that makes or rotates a key, sent with `no-store`. Another
user's key is 404, as in the pages.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.debug import sensitive_variables
from ninja import Header, Query, Router, Status
from pydantic import ValidationError as PydanticValidationError

from apikeys import assurance
from apikeys.access import CHANGE, SEE, key_for, team_for
from apikeys.api.auth import PortalToken
from apikeys.api.paging import PageQuery, audit_out, paginate
from apikeys.api.problems import FAILURES, Problem, form_errors, refuse_over_limit
from apikeys.api.schemas import (
    JWT_BEARER,
    ApiOut,
    AuditPage,
    Credentials,
    DpopIn,
    KeyIn,
    KeyOut,
    KeyPage,
    Me,
    MoveIn,
    NetworksIn,
    PermissionsChanged,
    PermissionsIn,
    PublicKeyIn,
    PublicKeyOut,
    RenameIn,
    RotateIn,
    SecretCheckOut,
    SecretIn,
    UsageDay,
    UsageOut,
    WorkloadIssuerOut,
    with_key_details,
)
from apikeys.assurance import recent_factor_required_keycloak_decides
from apikeys.client_address import client_ip
from apikeys.credentials.workloads import ISSUER_SLUG
from apikeys.forms import KeyForm, NetworksForm, PublicKeyForm, RenameForm
from apikeys.http import ApiRequest
from apikeys.keycloak.client import KeycloakFailure
from apikeys.models import Api, ApiKey, AuditEntry, User, WorkloadIssuer
from apikeys.operations import dormancy, leaks, lifecycle, permissions, teams, usage

router = Router(auth=PortalToken(), tags=["customer"])
# A stable namespace for turning an Idempotency-Key into the create form's one-time id.
IDEMPOTENCY = uuid.UUID("4d2f6c4e-7a0b-4c53-9f7e-1d9f2b7a5e10")


@router.get("/me", response={200: Me, **FAILURES}, summary="Who you are signed in as")
def me(request: ApiRequest) -> User:
    return request.auth


@router.get("/apis", response={200: list[ApiOut], **FAILURES}, summary="The API catalog")
def apis(request: ApiRequest) -> Any:
    return Api.objects.open().prefetch_related("permissions")


@router.get(
    "/keys",
    response={200: KeyPage, **FAILURES},
    summary="Your personal keys, or with ?team= a team's keys",
)
def list_keys(
    request: ApiRequest, query: Query[PageQuery], live: bool = False, team: uuid.UUID | None = None
) -> Any:
    space = team_for(request.auth, team, to=SEE) if team else None
    keys = ApiKey.objects.held_by(request.auth, space)
    return paginate(with_key_details(keys.live() if live else keys), query)


@router.post(
    "/keys", response={201: Credentials, **FAILURES}, summary="Create a key (its secret, once)"
)
def create_key(
    request: ApiRequest,
    response: HttpResponse,
    body: KeyIn,
    idempotency_key: str | None = Header(  # type: ignore[type-arg]
        None, alias="Idempotency-Key", max_length=255
    ),
) -> Any:
    owner = request.auth
    team = team_for(owner, body.team, to=CHANGE) if body.team else None
    _limit(request)
    _require_trusted(body.workload_issuer)
    request_id = _request_id(owner, idempotency_key)
    form = KeyForm(_key_form_data(body) | {"request_id": request_id}, owner=owner, team=team)
    if not form.is_valid():
        # A retry whose first try made the key finds its name taken by that key: a repeat.
        if made := form.made_before():
            raise _already_made(made)
        errors = _explain_permissions(form, body)
        raise Problem(422, "The key was not created: see errors.", errors=errors)
    try:
        revealed = lifecycle.issue_key(owner, form.order(), ip_address=client_ip(request))
    except lifecycle.AlreadySubmitted as repeat:
        raise _already_made(repeat.key) from None
    except lifecycle.KeyNotIssued as error:
        raise Problem(409, str(error)) from None
    return Status(201, _credentials(revealed, response))


@router.get("/keys/{key_id}", response={200: KeyOut, **FAILURES}, summary="One of your keys")
def show_key(request: ApiRequest, key_id: uuid.UUID) -> ApiKey:
    return key_for(request.auth, key_id, to=SEE)


@router.get(
    "/keys/{key_id}/usage",
    response={200: UsageOut, **FAILURES},
    summary="One of your keys' daily tokens and failed attempts, last 30 days",
)
def key_usage(request: ApiRequest, key_id: uuid.UUID) -> UsageOut:
    used = usage.of_key(key_for(request.auth, key_id, to=SEE))
    days = [
        UsageDay(
            day=d.day,
            grants=d.grants,
            wrong_credentials=d.wrong_credentials,
            outside_networks=d.outside_networks,
            refused=d.refused,
        )
        for d in used.days
    ]
    return UsageOut(days=days, warning=used.warning)


@router.post(
    "/keys/{key_id}/rotate",
    response={200: Credentials, **FAILURES},
    summary="A new secret; the old one stops at once, or after a grace period",
    # The body is optional (a bare POST rotates without grace), so it is read by hand.
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": RotateIn.model_json_schema()}},
        }
    },
)
@recent_factor_required_keycloak_decides
def rotate_key(
    request: ApiRequest,
    response: HttpResponse,
    key_id: uuid.UUID,
    idempotency_key: str | None = Header(  # type: ignore[type-arg]
        None, alias="Idempotency-Key", max_length=255
    ),
) -> Any:
    key = key_for(request.auth, key_id)
    _limit(request)
    given = request.body.strip() if request.content_type == "application/json" else b""
    if not given and _other_body(request):
        raise Problem(415, "Send the body as application/json, or send none.")
    try:
        body = RotateIn.model_validate_json(given or b"{}")
    except PydanticValidationError as invalid:
        errors: dict[str, list[str]] = {}
        for error in invalid.errors():
            field = ".".join(str(part) for part in error["loc"]) or "body"
            errors.setdefault(field, []).append(error["msg"])
        raise Problem(422, "The request is not valid: see errors.", errors=errors) from None
    grace = timedelta(seconds=body.grace_seconds)
    try:
        revealed = lifecycle.rotate_secret(
            key,
            actor=request.auth,
            ip_address=client_ip(request),
            grace=grace,
            request_id=_request_id(request.auth, idempotency_key, f"rotate:{key.pk}"),
        )
    except lifecycle.AlreadyRotated as repeat:
        raise Problem(409, str(repeat), key_id=key.pk) from None
    except ValueError as refusal:
        raise Problem(422, str(refusal), errors={"grace_seconds": [str(refusal)]}) from None
    return _credentials(revealed, response)


@router.patch(
    "/keys/{key_id}",
    response={200: KeyOut, **FAILURES},
    summary="Rename a key, or change its description",
)
def rename_key(request: ApiRequest, key_id: uuid.UUID, body: RenameIn) -> Any:
    key = key_for(request.auth, key_id)
    _limit(request)
    wanted = {"name": key.name, "description": key.description}
    wanted |= body.dict(exclude_none=True)
    form = RenameForm(wanted, key=key)
    if not form.is_valid():
        raise Problem(422, "Nothing was changed: see errors.", errors=form_errors(form))
    try:
        return lifecycle.rename_key(
            key, **form.cleaned_data, actor=request.auth, ip_address=client_ip(request)
        )
    except lifecycle.NameTaken as taken:
        raise Problem(422, str(taken), errors={"name": [str(taken)]}) from None


@router.put(
    "/keys/{key_id}/networks",
    response={200: KeyOut, **FAILURES},
    summary="Limit a key to network ranges (Keycloak refuses token requests from elsewhere)",
)
@recent_factor_required_keycloak_decides
def set_networks(request: ApiRequest, key_id: uuid.UUID, body: NetworksIn) -> Any:
    key = key_for(request.auth, key_id)
    _limit(request)
    form = NetworksForm({"networks": "\n".join(body.networks)})
    if not form.is_valid():
        raise Problem(422, "Nothing was changed: see errors.", errors=form_errors(form))
    return lifecycle.set_networks(
        key, form.cleaned_data["networks"], actor=request.auth, ip_address=client_ip(request)
    )


@router.put(
    "/keys/{key_id}/dpop",
    response={200: KeyOut, **FAILURES},
    summary="Require DPoP-bound tokens of a key (RFC 9449), or stop requiring them",
)
def set_dpop(request: ApiRequest, key_id: uuid.UUID, body: DpopIn) -> ApiKey:
    key = key_for(request.auth, key_id)
    _limit(request)
    return lifecycle.set_dpop(key, body.required, actor=request.auth, ip_address=client_ip(request))


@router.get(
    "/workload-issuers",
    response={200: list[WorkloadIssuerOut], **FAILURES},
    summary="The issuers of workload identity tokens the portal trusts, for workload keys",
)
def workload_issuers(request: ApiRequest) -> Any:
    return WorkloadIssuer.objects.all()


@router.put(
    "/keys/{key_id}/permissions",
    response={200: PermissionsChanged, **FAILURES},
    summary="What a key may do: fewer at once, more at once or after an administrator's approval",
)
@recent_factor_required_keycloak_decides
def set_permissions(request: ApiRequest, key_id: uuid.UUID, body: PermissionsIn) -> Any:
    key = key_for(request.auth, key_id)
    _limit(request)
    try:
        outcome = permissions.set_key_permissions(
            key,
            body.permissions,
            justification=body.justification,
            actor=request.auth,
            ip_address=client_ip(request),
        )
    except permissions.PermissionRefused as refused:
        raise Problem(422, f"Nothing was changed: {refused}") from None
    return {
        "key": outcome.key,
        "added": outcome.added,
        "removed": outcome.removed,
        "requested": outcome.requested,
    }


@router.delete(
    "/keys/{key_id}/permission-request",
    response={200: KeyOut, **FAILURES},
    summary="Withdraw a key's request for permissions no administrator has decided yet",
)
def withdraw_permission_request(request: ApiRequest, key_id: uuid.UUID) -> ApiKey:
    key = key_for(request.auth, key_id)
    _limit(request)
    waiting = key.permission_requests.filter(decided_at__isnull=True).first()
    if waiting is None:
        raise Problem(404, "This key has no request for permissions waiting.")
    permissions.withdraw_request(waiting, actor=request.auth, ip_address=client_ip(request))
    return key


@router.post(
    "/keys/{key_id}/end-grace",
    response={200: KeyOut, **FAILURES},
    summary="Stop the previous secret now, before its grace period ends",
)
def end_grace(request: ApiRequest, key_id: uuid.UUID) -> ApiKey:
    key = key_for(request.auth, key_id)
    _limit(request)
    try:
        return lifecycle.end_grace(key, actor=request.auth, ip_address=client_ip(request))
    except KeycloakFailure as failure:
        raise _not_told(failure, "The end is recorded") from None


@router.post(
    "/keys/{key_id}/reinstate",
    response={200: KeyOut, **FAILURES},
    summary="Reinstate a key the dormant-key policy suspended (others: an administrator)",
)
def reinstate_dormant(request: ApiRequest, key_id: uuid.UUID) -> ApiKey:
    key = key_for(request.auth, key_id)
    _limit(request)
    return dormancy.reinstate_by_owner(key, owner=request.auth, ip_address=client_ip(request))


@router.get(
    "/keys/{key_id}/public-keys",
    response={200: list[PublicKeyOut], **FAILURES},
    summary="A private_key_jwt key's public keys",
)
def public_keys(request: ApiRequest, key_id: uuid.UUID) -> Any:
    return key_for(request.auth, key_id, to=SEE).public_keys.all()


@router.post(
    "/keys/{key_id}/public-keys",
    response={201: KeyOut, **FAILURES},
    summary="Add public keys (a rotation: add, move over, remove the old one)",
)
@recent_factor_required_keycloak_decides  # a new credential for the key: a rotation by another name
def add_public_key(request: ApiRequest, key_id: uuid.UUID, body: PublicKeyIn) -> Any:
    key = key_for(request.auth, key_id)
    _limit(request)
    form = PublicKeyForm({"public_key": _as_text(body.public_key)})
    if not form.is_valid():
        raise Problem(422, "No key was added: see errors.", errors=form_errors(form))
    added = form.cleaned_data["public_key"]
    actor, address = request.auth, client_ip(request)
    return Status(201, lifecycle.add_public_keys(key, added, actor=actor, ip_address=address))


@router.post(
    "/keys/{key_id}/refresh-public-keys",
    response={200: KeyOut, **FAILURES},
    summary="Send the public keys to Keycloak again (for a JWKS URL: make it read it again)",
)
def refresh_public_keys(request: ApiRequest, key_id: uuid.UUID) -> ApiKey:
    key = key_for(request.auth, key_id)
    _limit(request)
    return lifecycle.refresh_public_keys(key, actor=request.auth, ip_address=client_ip(request))


@router.delete(
    "/keys/{key_id}/public-keys/{kid}",
    response={200: KeyOut, **FAILURES},
    summary="Remove a public key: assertions signed with it stop working",
)
def remove_public_key(request: ApiRequest, key_id: uuid.UUID, kid: str) -> ApiKey:
    key = key_for(request.auth, key_id)
    _limit(request)
    try:
        return lifecycle.remove_public_key(
            key, kid, actor=request.auth, ip_address=client_ip(request)
        )
    except KeycloakFailure as failure:
        raise _not_told(
            failure,
            "The public key is removed from the key's records",
            "POST /keys/{id}/refresh-public-keys or ",
        ) from None


@router.post(
    "/secrets/check",
    response={200: SecretCheckOut, **FAILURES},
    summary="Is this one of your keys' secrets (any key's, for admins)? Nothing is kept",
)
def check_secret(request: ApiRequest, body: SecretIn) -> Any:
    refuse_over_limit(request, "check", "Too many checks in a short time: try again in a minute.")
    as_admin = assurance.of(request).second_factor  # an administrator's reach needs it
    answer = leaks.check(body.secret.strip(), viewer=request.auth, as_admin=as_admin)
    match = answer.match
    return {
        "ours": match is not None,
        "well_formed": answer.well_formed,
        "which": match.verdict if match else None,
        "works": bool(match and match.works),
        "key": match.key if match else None,
    }


@router.post("/keys/{key_id}/revoke", response={200: KeyOut, **FAILURES}, summary="Revoke a key")
@recent_factor_required_keycloak_decides
def revoke_key(request: ApiRequest, key_id: uuid.UUID) -> ApiKey:
    key = key_for(request.auth, key_id)
    _limit(request)
    return lifecycle.revoke_key(key, actor=request.auth, ip_address=client_ip(request))


@router.post(
    "/keys/{key_id}/finish",
    response={200: Credentials, **FAILURES},
    summary="Finish setting up an unfinished key (its secret, once)",
)
def finish_key(request: ApiRequest, response: HttpResponse, key_id: uuid.UUID) -> Any:
    key = key_for(request.auth, key_id)
    _limit(request)
    revealed = lifecycle.finish_key(key, actor=request.auth, ip_address=client_ip(request))
    return _credentials(revealed, response)


@router.post(
    "/keys/{key_id}/discard", response={204: None, **FAILURES}, summary="Discard an unfinished key"
)
def discard_key(request: ApiRequest, key_id: uuid.UUID) -> Any:
    key = key_for(request.auth, key_id)
    lifecycle.discard_key(key, actor=request.auth, ip_address=client_ip(request))
    return Status(204, None)


@router.post(
    "/keys/{key_id}/move",
    response={200: KeyOut, **FAILURES},
    summary="Move a personal key of yours into a team (you a developer or owner there)",
)
def move_key(request: ApiRequest, key_id: uuid.UUID, body: MoveIn) -> ApiKey:
    key = key_for(request.auth, key_id)
    if key.team is not None:
        raise Problem(
            409, f"{key.client_id} is a key of {key.space} already: only personal keys move."
        )
    team = team_for(request.auth, body.team, to=CHANGE)
    _limit(request)
    return teams.move_key(
        key, owner=key.owner, team=team, actor=request.auth, ip_address=client_ip(request)
    )


@router.get(
    "/activity", response={200: AuditPage, **FAILURES}, summary="Activity on your personal keys"
)
def activity(request: ApiRequest, query: Query[PageQuery]) -> Any:
    owner = request.auth
    entries = AuditEntry.objects.of_owner(owner).select_related("key", "api")
    return paginate(entries, query, lambda entry: audit_out(entry, viewer=owner))


def _limit(request: ApiRequest) -> None:
    refuse_over_limit(
        request,
        "keys",
        "Too many key actions in a short time: try again in a minute. Nothing was done.",
    )


def _key_form_data(body: KeyIn) -> dict[str, Any]:
    """The request body as the create form takes it."""
    return body.dict(exclude={"team", "dpop"}) | {
        "networks": "\n".join(body.networks),
        "lifetime_days": body.lifetime_days or settings.DEFAULT_KEY_LIFETIME_DAYS,
        "public_key": _as_text(body.public_key),
        "jwks_url": body.jwks_url or "",
        "requires_dpop": body.dpop,
        "workload_issuer": body.workload_issuer or "",
        "workload_subject": body.workload_subject or "",
        # The form's choices are "<api slug>/<name>" (the page offers every API's at once).
        "permissions": [f"{body.api}/{name.strip()}" for name in body.permissions or ()],
        "permissions_given": body.permissions is not None,
    }


def _require_trusted(slug: str | None) -> None:
    """400 for a new key that names a workload issuer not trusted here (a name that cannot be
    an issuer's is not looked up: the database refuses some characters, NUL)."""
    if not slug:
        return
    if not ISSUER_SLUG.fullmatch(slug) or not WorkloadIssuer.objects.filter(slug=slug).exists():
        detail = (
            f"No workload issuer called “{slug}” is trusted here: GET /workload-issuers lists "
            "those that are (`apikeys workload-issuers list`); an administrator adds others."
        )
        raise Problem(400, detail, errors={"workload_issuer": [detail]})


def _explain_permissions(form: KeyForm, body: KeyIn) -> dict[str, list[str]]:
    """The form's errors, a permission the API does not have said as the operation says it
    (naming the ones there are), not as a choice of the page's list."""
    errors = form_errors(form)
    api = form.cleaned_data.get("api")
    if "permissions" in errors and api is not None:
        try:
            permissions.resolve(api, body.permissions)
        except permissions.PermissionRefused as refused:
            errors["permissions"] = [str(refused)]
    return errors


@sensitive_variables()  # (every API view is marked so too: apikeys/urls.py)
def _credentials(revealed: lifecycle.Revealed, response: HttpResponse) -> dict[str, Any]:
    response["Cache-Control"] = "no-store"
    key = revealed.key
    return {
        "key": key,
        "client_id": key.client_id,
        "client_secret": revealed.secret or None,
        "token_endpoint": settings.TOKEN_ENDPOINT,
        "assertion_audience": None if key.uses_secret else settings.TOKEN_ISSUER,
        "client_assertion_type": None if key.uses_secret else JWT_BEARER,
        "workload": _workload_setup(key),
    }


def _workload_setup(key: ApiKey) -> dict[str, Any] | None:
    """How a workload identity key's workload asks for tokens (None: another kind of key)."""
    issuer = key.workload_issuer
    if not key.uses_workload or issuer is None:
        return None
    return {
        "issuer": issuer.issuer,
        "subject": key.workload_subject,
        "audience": settings.TOKEN_ISSUER,
        "reuse": issuer.allows_reuse,
    }


def _other_body(request: ApiRequest) -> bool:
    """Whether a request carries something that is not JSON (an empty form is nothing)."""
    if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return bool(request.POST or request.FILES)
    return request.content_type != "application/json" and bool(request.body.strip())


def _not_told(failure: KeycloakFailure, done: str, retry: str = "") -> Problem:
    """503 for a restrictive change recorded but not yet carried out in Keycloak."""
    return Problem(
        503,
        f"{done}, but Keycloak could not be told yet ({failure.for_people}). Until it is, it "
        f"may still accept what was removed; {retry}the reconcile job finishes it.",
        headers={"Retry-After": "30"},
    )


def _as_text(value: str | dict[str, Any] | None) -> str:
    """A public key given as a JSON object (a JWK or JWKS) or as text, as text."""
    if isinstance(value, dict):
        return json.dumps(value)
    return value or ""


def _request_id(person: User, idempotency_key: str | None, scope: str = "") -> uuid.UUID | None:
    """The one-time id the pages' forms carry, made from a person's Idempotency-Key (and,
    for a request about one key, `scope`): the same key sent again is the same request."""
    if not idempotency_key:
        return None
    return uuid.uuid5(IDEMPOTENCY, f"{person.pk}:{scope}{idempotency_key}")


def _already_made(key: ApiKey) -> Problem:
    return Problem(
        409,
        f"A request with this Idempotency-Key already made the key {key.client_id}. Its secret "
        "was in that response; if it was lost, rotate the key.",
        key_id=key.pk,
    )
