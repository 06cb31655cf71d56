"""The administrators' side of the API: every key, decisions on keys, the audit trail, the
catalog. The same operations and rules as the admin pages (`apikeys/views/manage.py`); every
route needs the `portal-admin` role in the token."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Schema, Status

from apikeys.api.auth import PortalToken
from apikeys.api.paging import PageQuery, audit_out, paginate
from apikeys.api.problems import Problem
from apikeys.api.schemas import (
    AdminKeyOut,
    AdminKeyPage,
    ApiIn,
    ApiOut,
    AuditPage,
    NoteIn,
    ReasonIn,
)
from apikeys.api.schemas import Problem as ProblemOut
from apikeys.client_address import client_ip
from apikeys.forms import ApiForm, AuditFilterForm, KeySearchForm, OptionalReasonForm, ReasonForm
from apikeys.models import Api, ApiKey, AuditEntry, User
from apikeys.operations import catalog, lifecycle

router = Router(auth=PortalToken(admin=True), tags=["admin"])
FAILURES: dict[int | str, Any] = dict.fromkeys(
    (400, 401, 403, 404, 409, 422, 429, 502, 503), ProblemOut
)


class KeyFilters(PageQuery):
    q: str = ""
    api: str = ""
    status: str = ""
    created_after: str = ""
    created_before: str = ""
    expires_before: str = ""
    unused_days: str = ""
    sort: str = ""


class AuditFilters(PageQuery):
    actor: str = ""
    action: str = ""
    key: str = ""
    since: str = ""
    until: str = ""


@router.get("/keys", response={200: AdminKeyPage, **FAILURES}, summary="Every key, filtered")
def keys(request: HttpRequest, filters: Query[KeyFilters]) -> Any:
    form = KeySearchForm(_given(filters, PageQuery))
    if not form.is_valid():
        raise Problem(422, "The filters are not valid: see errors.", errors=_errors(form))
    keys = ApiKey.objects.search(form.cleaned_data).prefetch_related("public_keys")
    return paginate(keys, filters)


@router.get("/keys/{key_id}", response={200: AdminKeyOut, **FAILURES}, summary="Any key")
def show_key(request: HttpRequest, key_id: uuid.UUID) -> ApiKey:
    return _key(key_id)


@router.post("/keys/{key_id}/approve", response={200: AdminKeyOut, **FAILURES})
def approve(request: HttpRequest, key_id: uuid.UUID) -> ApiKey:
    return lifecycle.approve_key(_key(key_id), **_who(request))


@router.post("/keys/{key_id}/reject", response={200: AdminKeyOut, **FAILURES})
def reject(request: HttpRequest, key_id: uuid.UUID, body: ReasonIn) -> ApiKey:
    return lifecycle.reject_key(_key(key_id), reason=_reason(body), **_who(request))


@router.post("/keys/{key_id}/suspend", response={200: AdminKeyOut, **FAILURES})
def suspend(request: HttpRequest, key_id: uuid.UUID, body: ReasonIn) -> ApiKey:
    return lifecycle.suspend_key(_key(key_id), reason=_reason(body), **_who(request))


@router.post("/keys/{key_id}/reinstate", response={200: AdminKeyOut, **FAILURES})
def reinstate(request: HttpRequest, key_id: uuid.UUID, body: NoteIn) -> ApiKey:
    form = OptionalReasonForm(body.dict())
    if not form.is_valid():
        raise Problem(422, "The note was not accepted: see errors.", errors=_errors(form))
    return lifecycle.reinstate_key(
        _key(key_id), reason=form.cleaned_data["reason"], **_who(request)
    )


@router.post("/keys/{key_id}/revoke", response={200: AdminKeyOut, **FAILURES})
def revoke(request: HttpRequest, key_id: uuid.UUID, body: ReasonIn) -> ApiKey:
    return lifecycle.revoke_key(_key(key_id), reason=_reason(body), **_who(request))


@router.get("/audit", response={200: AuditPage, **FAILURES}, summary="The audit trail")
def audit(request: HttpRequest, filters: Query[AuditFilters]) -> Any:
    form = AuditFilterForm(_given(filters, PageQuery))
    if not form.is_valid():
        raise Problem(422, "The filters are not valid: see errors.", errors=_errors(form))
    entries = AuditEntry.objects.matching(form.cleaned_data)
    return paginate(entries, filters, lambda entry: audit_out(entry, viewer=None))


@router.get("/apis", response={200: list[ApiOut], **FAILURES}, summary="The whole catalog")
def apis(request: HttpRequest) -> Any:
    return Api.objects.all()


@router.post("/apis", response={201: ApiOut, **FAILURES}, summary="Add an API")
def add_api(request: HttpRequest, body: ApiIn) -> Any:
    return Status(201, _save_api(request, Api(), body))


@router.put("/apis/{slug}", response={200: ApiOut, **FAILURES}, summary="Change an API")
def change_api(request: HttpRequest, slug: str, body: ApiIn) -> Api:
    return _save_api(request, _api(slug), body)


@router.post("/apis/{slug}/retire", response={200: ApiOut, **FAILURES}, summary="Retire an API")
def retire_api(request: HttpRequest, slug: str) -> Api:
    return catalog.retire_api(_api(slug), **_who(request))


def _save_api(request: HttpRequest, api: Api, body: ApiIn) -> Api:
    form = ApiForm(body.dict(), instance=api)
    if not form.is_valid():
        raise Problem(422, "The API was not saved: see errors.", errors=_errors(form))
    return catalog.save_api(form.save(commit=False), **_who(request)).api


def _key(key_id: uuid.UUID) -> ApiKey:
    key = ApiKey.objects.select_related("api", "owner").filter(pk=key_id).first()
    if key is None:
        raise Problem(404, "There is no key with this id.")
    return key


def _api(slug: str) -> Api:
    api = Api.objects.filter(slug=slug).first()
    if api is None:
        raise Problem(404, "There is no API with this slug.")
    return api


def _reason(body: ReasonIn) -> str:
    form = ReasonForm(body.dict())
    if not form.is_valid():
        raise Problem(422, "Say why: the owner reads it.", errors=_errors(form))
    return str(form.cleaned_data["reason"])


def _who(request: HttpRequest) -> dict[str, Any]:
    user: User = request.auth  # type: ignore[attr-defined]
    return {"actor": user, "ip_address": client_ip(request)}


def _given(filters: Schema, leave_out: type[Schema]) -> dict[str, Any]:
    """The filters that were given, as the admin pages' form takes them."""
    skip = set(leave_out.model_fields)
    return {k: v for k, v in filters.dict().items() if v not in ("", None) and k not in skip}


def _errors(form: Any) -> dict[str, list[str]]:
    return {field: [str(e) for e in errors] for field, errors in form.errors.items()}
