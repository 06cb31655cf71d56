"""The administrators' side of the API: every key, decisions on keys and on permission
requests, the audit trail, the catalog and its permissions, every team (an owner appointed, a
key moved), every registration token (revoked), the trusted workload issuers. The same
operations and rules as the admin pages (`apikeys/views/manage.py`); every route needs the
`portal-admin` role in the token."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from ninja import Field, Query, Router, Schema, Status

from apikeys.access import any_key, any_registration_token
from apikeys.api.auth import PortalToken
from apikeys.api.paging import PageQuery, audit_out, paginate
from apikeys.api.problems import FAILURES, Problem, form_errors
from apikeys.api.schemas import (
    AdminKeyOut,
    AdminKeyPage,
    AdminMoveIn,
    AdminPermissionRequestOut,
    AdminTeamOut,
    AdminTeamPage,
    AdminWorkloadIssuerOut,
    ApiIn,
    ApiOut,
    AppointIn,
    AuditPage,
    KeysNotUpdated,
    NoteIn,
    PermissionDefined,
    PermissionIn,
    PermissionOut,
    PermissionPatch,
    ReasonIn,
    RegistrationTokenDetail,
    RegistrationTokenPage,
    WorkloadIssuerIn,
    with_key_details,
    with_live_keys,
    with_token_details,
)
from apikeys.client_address import client_ip
from apikeys.credentials.workloads import ISSUER_SLUG
from apikeys.forms import (
    AdminMoveForm,
    ApiForm,
    AppointForm,
    AuditFilterForm,
    IssuerForm,
    KeySearchForm,
    OptionalReasonForm,
    ReasonForm,
    RegistrationTokenSearchForm,
    TeamSearchForm,
)
from apikeys.http import ApiRequest
from apikeys.keycloak.bootstrap import ProviderTaken, ScopeTaken
from apikeys.models import (
    LIVE_STATUSES,
    Api,
    ApiKey,
    AuditEntry,
    Permission,
    PermissionRequest,
    RegistrationToken,
    Team,
    TeamRole,
    User,
    WorkloadIssuer,
)
from apikeys.operations import (
    catalog,
    lifecycle,
    permissions,
    registration_tokens,
    teams,
    workload_issuers,
)

router = Router(auth=PortalToken(admin=True), tags=["admin"])


class KeyFilters(PageQuery):
    q: str = ""
    api: str = ""
    status: str = ""
    created_after: str = ""
    created_before: str = ""
    expires_before: str = ""
    unused_days: str = ""
    team: str = Field("", description="A team's id: its keys only.")
    permission: str = Field("", description="A permission's name: the keys that hold it.")
    sort: str = ""


class AuditFilters(PageQuery):
    actor: str = ""
    action: str = ""
    key: str = ""
    since: str = ""
    until: str = ""


@router.get("/keys", response={200: AdminKeyPage, **FAILURES}, summary="Every key, filtered")
def keys(request: ApiRequest, filters: Query[KeyFilters]) -> Any:
    form = KeySearchForm(_given(filters, PageQuery))
    if not form.is_valid():
        raise Problem(422, "The filters are not valid: see errors.", errors=form_errors(form))
    return paginate(with_key_details(ApiKey.objects.search(form.cleaned_data)), filters)


@router.get("/keys/{key_id}", response={200: AdminKeyOut, **FAILURES}, summary="Any key")
def show_key(request: ApiRequest, key_id: uuid.UUID) -> ApiKey:
    return any_key(key_id)


@router.post("/keys/{key_id}/approve", response={200: AdminKeyOut, **FAILURES})
def approve(request: ApiRequest, key_id: uuid.UUID) -> ApiKey:
    return lifecycle.approve_key(any_key(key_id), **_who(request))


@router.post("/keys/{key_id}/reject", response={200: AdminKeyOut, **FAILURES})
def reject(request: ApiRequest, key_id: uuid.UUID, body: ReasonIn) -> ApiKey:
    return lifecycle.reject_key(any_key(key_id), reason=_reason(body), **_who(request))


@router.post("/keys/{key_id}/suspend", response={200: AdminKeyOut, **FAILURES})
def suspend(request: ApiRequest, key_id: uuid.UUID, body: ReasonIn) -> ApiKey:
    return lifecycle.suspend_key(any_key(key_id), reason=_reason(body), **_who(request))


@router.post("/keys/{key_id}/reinstate", response={200: AdminKeyOut, **FAILURES})
def reinstate(request: ApiRequest, key_id: uuid.UUID, body: NoteIn) -> ApiKey:
    form = OptionalReasonForm(body.dict())
    if not form.is_valid():
        raise Problem(422, "The note was not accepted: see errors.", errors=form_errors(form))
    return lifecycle.reinstate_key(
        any_key(key_id), reason=form.cleaned_data["reason"], **_who(request)
    )


@router.post("/keys/{key_id}/revoke", response={200: AdminKeyOut, **FAILURES})
def revoke(request: ApiRequest, key_id: uuid.UUID, body: ReasonIn) -> ApiKey:
    return lifecycle.revoke_key(any_key(key_id), reason=_reason(body), **_who(request))


@router.post(
    "/keys/{key_id}/move",
    response={200: AdminKeyOut, **FAILURES},
    summary="Give a key to a person (to_email) or a team (to_team); its secret keeps working",
    description="422 with `errors` by field: neither given, no active account of that email, "
    "no such team (or a name several teams share), a person not in the team; 409: the key "
    "has ended, its maker is not in the team, the team is at its quota or holds a key of that "
    "name, or the key is there already.",
)
def move_key(request: ApiRequest, key_id: uuid.UUID, body: AdminMoveIn) -> ApiKey:
    key = any_key(key_id)
    form = AdminMoveForm(body.dict(exclude_none=True))
    if not form.is_valid():
        raise Problem(422, "The key was not moved: see errors.", errors=form_errors(form))
    given = form.cleaned_data
    return teams.move_key(
        key, owner=given["owner"], team=given["team"], reason=given["reason"], **_who(request)
    )


class TeamFilters(PageQuery):
    q: str = Field("", description="The start, or any part, of the team's name.")


@router.get("/teams", response={200: AdminTeamPage, **FAILURES}, summary="Every team")
def list_teams(request: ApiRequest, filters: Query[TeamFilters]) -> Any:
    form = TeamSearchForm({"q": filters.q})
    if not form.is_valid():
        raise Problem(422, "The filters are not valid: see errors.", errors=form_errors(form))
    found = _counted(Team.objects.for_admins(form.cleaned_data["q"].strip()))
    return paginate(found, filters, _team_summary)


@router.get("/teams/{team_id}", response={200: AdminTeamOut, **FAILURES}, summary="Any team")
def show_team(request: ApiRequest, team_id: uuid.UUID) -> Any:
    return _team_out(_team(team_id))


@router.post(
    "/teams/{team_id}/owners",
    response={200: AdminTeamOut, **FAILURES},
    summary="Appoint an owner (added to the team if not a member), e.g. of an ownerless team",
)
def appoint_owner(request: ApiRequest, team_id: uuid.UUID, body: AppointIn) -> Any:
    team = _team(team_id)
    form = AppointForm(body.dict())
    if not form.is_valid():
        raise Problem(422, "No owner was appointed: see errors.", errors=form_errors(form))
    person = _person(form.cleaned_data["email"], field="email")
    teams.appoint_owner(team, person, actor=request.auth, reason=form.cleaned_data["reason"])
    return _team_out(_team(team_id))


@router.get(
    "/permission-requests",
    response={200: list[AdminPermissionRequestOut], **FAILURES},
    summary="Keys' requests for permissions that wait for a decision, oldest first",
)
def permission_requests(request: ApiRequest) -> Any:
    return list(permissions.open_requests())


@router.post(
    "/permission-requests/{request_id}/approve",
    response={200: AdminPermissionRequestOut, **FAILURES},
    summary="Give the key what it asked for (from its next token; the owner is told)",
)
def approve_permissions(request: ApiRequest, request_id: int) -> PermissionRequest:
    asked = _permission_request(request_id)
    return permissions.decide_request(asked, approve=True, **_who(request))


@router.post(
    "/permission-requests/{request_id}/refuse",
    response={200: AdminPermissionRequestOut, **FAILURES},
    summary="Refuse what a key asked for, saying why (the key keeps what it has)",
)
def refuse_permissions(request: ApiRequest, request_id: int, body: ReasonIn) -> PermissionRequest:
    asked = _permission_request(request_id)
    reason = _reason(body)
    return permissions.decide_request(asked, approve=False, reason=reason, **_who(request))


class RegistrationTokenFilters(PageQuery):
    q: str = Field(
        "", description="The start of its maker's email, or part of its team's or its name."
    )
    api: str = Field("", description="An API's slug: its tokens only.")


@router.get(
    "/registration-tokens",
    response={200: RegistrationTokenPage, **FAILURES},
    summary="Every registration token, newest first",
)
def list_registration_tokens(request: ApiRequest, filters: Query[RegistrationTokenFilters]) -> Any:
    form = RegistrationTokenSearchForm({"q": filters.q, "api": filters.api})
    if not form.is_valid():
        raise Problem(422, "The filters are not valid: see errors.", errors=form_errors(form))
    return paginate(form.filter(with_token_details(RegistrationToken.objects.all())), filters)


@router.post(
    "/registration-tokens/{token_id}/revoke",
    response={200: RegistrationTokenDetail, **FAILURES},
    summary="Revoke any registration token, saying why if you will: it registers nothing "
    "more (its keys keep working)",
)
def revoke_registration_token(request: ApiRequest, token_id: uuid.UUID, body: NoteIn) -> Any:
    form = OptionalReasonForm(body.dict())
    if not form.is_valid():
        raise Problem(422, "The reason was not accepted: see errors.", errors=form_errors(form))
    token = any_registration_token(token_id)
    reason = form.cleaned_data["reason"]
    return registration_tokens.revoke_token(token, reason=reason, **_who(request))


@router.get(
    "/workload-issuers",
    response={200: list[AdminWorkloadIssuerOut], **FAILURES},
    summary="The trusted issuers of workload identity tokens, with their live keys counted",
)
def list_workload_issuers(request: ApiRequest) -> Any:
    return with_live_keys(WorkloadIssuer.objects.all())


@router.post(
    "/workload-issuers",
    response={201: AdminWorkloadIssuerOut, **FAILURES},
    summary="Trust an issuer of workload identity tokens (its identity provider made in "
    "Keycloak with it)",
)
def trust_workload_issuer(request: ApiRequest, body: WorkloadIssuerIn) -> Any:
    form = IssuerForm(body.dict())
    if not form.is_valid():
        raise Problem(422, "The issuer was not trusted: see errors.", errors=form_errors(form))
    try:
        issuer = workload_issuers.trust_issuer(form.order(), **_who(request))
    except workload_issuers.IssuerTaken as taken:  # the unique constraints, race-free
        raise Problem(409, f"{taken} GET /admin/workload-issuers lists them.") from None
    except workload_issuers.IssuerRefused as refused:
        raise Problem(400, f"The issuer was not trusted: {refused}") from None
    except ProviderTaken as taken:
        raise Problem(409, taken.for_people) from None
    return Status(201, with_live_keys(WorkloadIssuer.objects.filter(pk=issuer.pk)).get())


@router.delete(
    "/workload-issuers/{slug}",
    response={204: None, **FAILURES},
    summary="Stop trusting a workload issuer: refused while live keys are bound to it",
)
def distrust_workload_issuer(request: ApiRequest, slug: str) -> Any:
    issuer = None
    if ISSUER_SLUG.fullmatch(slug):  # not looked up otherwise: the database refuses NUL
        issuer = WorkloadIssuer.objects.filter(slug=slug).first()
    if issuer is None:
        raise Problem(404, "No workload issuer with this short name is trusted.")
    try:
        workload_issuers.distrust_issuer(issuer, **_who(request))
    except workload_issuers.IssuerRefused as refused:
        raise Problem(409, str(refused)) from None
    return Status(204, None)


@router.get("/audit", response={200: AuditPage, **FAILURES}, summary="The audit trail")
def audit(request: ApiRequest, filters: Query[AuditFilters]) -> Any:
    form = AuditFilterForm(_given(filters, PageQuery))
    if not form.is_valid():
        raise Problem(422, "The filters are not valid: see errors.", errors=form_errors(form))
    entries = AuditEntry.objects.matching(form.cleaned_data)
    return paginate(entries, filters, lambda entry: audit_out(entry, viewer=None))


@router.get("/apis", response={200: list[ApiOut], **FAILURES}, summary="The whole catalog")
def apis(request: ApiRequest) -> Any:
    return Api.objects.prefetch_related("permissions")


@router.post("/apis", response={201: ApiOut, **FAILURES}, summary="Add an API")
def add_api(request: ApiRequest, body: ApiIn) -> Any:
    return Status(201, _save_api(request, Api(), body))


@router.put("/apis/{slug}", response={200: ApiOut, **FAILURES}, summary="Change an API")
def change_api(request: ApiRequest, slug: str, body: ApiIn) -> Api:
    return _save_api(request, _api(slug), body)


@router.post("/apis/{slug}/retire", response={200: ApiOut, **FAILURES}, summary="Retire an API")
def retire_api(request: ApiRequest, slug: str) -> Api:
    return catalog.retire_api(_api(slug), **_who(request))


@router.post(
    "/apis/{slug}/permissions",
    response={201: PermissionDefined, **FAILURES},
    summary="Add a permission to an API (its client scope made in Keycloak with it)",
)
def define_permission(request: ApiRequest, slug: str, body: PermissionIn) -> Any:
    api = _api(slug)
    try:
        defined = permissions.define_permission(api, **body.dict(), **_who(request))
    except ValidationError as invalid:
        errors = permissions.field_errors(invalid)
        raise Problem(422, "The permission was not added: see errors.", errors=errors) from None
    except ScopeTaken:
        detail = (
            f"Keycloak already has a client scope {body.name} that the portal did not make: "
            "choose another name, or remove that scope in Keycloak first."
        )
        raise Problem(409, detail, errors={"name": [detail]}) from None
    made = PermissionOut.model_validate(defined.permission).model_dump()
    return Status(201, made | {"keys_not_updated": defined.keys_not_updated})


@router.patch(
    "/apis/{slug}/permissions/{name}",
    response={200: PermissionOut, **FAILURES},
    summary="Change a permission's description or how it is given (not its name)",
)
def change_permission(request: ApiRequest, slug: str, name: str, body: PermissionPatch) -> Any:
    permission = Permission.objects.filter(api=_api(slug), name=name).first()
    if permission is None:
        raise Problem(404, "The API has no permission with this name.")
    wanted = {field: getattr(permission, field) for field in Permission.EDITABLE_FIELDS}
    wanted |= body.dict(exclude_none=True)
    try:
        return permissions.change_permission(permission, **wanted, **_who(request))
    except ValidationError as invalid:
        errors = permissions.field_errors(invalid)
        raise Problem(422, "Nothing was changed: see errors.", errors=errors) from None


@router.post(
    "/apis/{slug}/permissions/{name}/keys",
    response={200: KeysNotUpdated, **FAILURES},
    summary="Give a permission to its API's live keys that lack it",
)
def give_permission(request: ApiRequest, slug: str, name: str) -> Any:
    permission = Permission.objects.filter(api=_api(slug), name=name).first()
    if permission is None:
        raise Problem(404, "The API has no permission with this name.")
    return {"keys_not_updated": permissions.give_to_keys_lacking(permission, **_who(request))}


def _save_api(request: ApiRequest, api: Api, body: ApiIn) -> Api:
    form = ApiForm(body.dict(), instance=api)
    if not form.is_valid():
        raise Problem(422, "The API was not saved: see errors.", errors=form_errors(form))
    return catalog.save_api(form.save(commit=False), **_who(request)).api


def _api(slug: str) -> Api:
    api = Api.objects.filter(slug=slug).first()
    if api is None:
        raise Problem(404, "There is no API with this slug.")
    return api


def _permission_request(request_id: int) -> PermissionRequest:
    asked = PermissionRequest.objects.filter(pk=request_id).first()
    if asked is None:
        raise Problem(404, "There is no permission request with this id.")
    return asked


def _team(team_id: uuid.UUID) -> Team:
    team = _counted(Team.objects.filter(pk=team_id)).first()
    if team is None:
        raise Problem(404, "There is no team with this id.")
    return team


def _person(email: str, *, field: str) -> User:
    """The portal's account with this email (an active one first)."""
    person = User.objects.filter(email__iexact=email).order_by("-is_active", "pk").first()
    if person is None:
        detail = f"No one with a portal account has the email {email}."
        raise Problem(422, detail, errors={field: [detail]})
    return person


def _counted(found: QuerySet[Team]) -> QuerySet[Team]:
    """Teams with their members, owners and live keys counted."""
    owners = Q(memberships__role=TeamRole.OWNER)
    return found.annotate(
        member_count=Count("memberships", distinct=True),
        owner_count=Count("memberships", filter=owners, distinct=True),
        live_keys=Count("keys", filter=Q(keys__status__in=LIVE_STATUSES), distinct=True),
    )


def _team_summary(team: Any) -> dict[str, Any]:
    return {
        "id": team.pk,
        "name": team.name,
        "created_at": team.created_at,
        "member_count": team.member_count,
        "live_keys": team.live_keys,
        "key_quota": team.key_quota,
        "ownerless": not team.owner_count,
        "ownerless_since": team.ownerless_since,
    }


def _team_out(team: Team) -> dict[str, Any]:
    members = team.memberships.select_related("user")
    return _team_summary(team) | {"members": list(members)}


def _reason(body: ReasonIn) -> str:
    form = ReasonForm(body.dict())
    if not form.is_valid():
        raise Problem(422, "Say why: the owner reads it.", errors=form_errors(form))
    return str(form.cleaned_data["reason"])


def _who(request: ApiRequest) -> dict[str, Any]:
    return {"actor": request.auth, "ip_address": client_ip(request)}


def _given(filters: Schema, leave_out: type[Schema]) -> dict[str, Any]:
    """The filters that were given, as the admin pages' form takes them."""
    skip = set(leave_out.model_fields)
    return {k: v for k, v in filters.dict().items() if v not in ("", None) and k not in skip}
