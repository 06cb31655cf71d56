"""The administrators' side of the API: every key, decisions on keys, the audit trail, the
catalog. The same operations and rules as the admin pages (`apikeys/views/manage.py`); every
route needs the `portal-admin` role in the token."""

from __future__ import annotations

import uuid
from typing import Any

from ninja import Query, Router, Schema, Status

from apikeys.access import any_key
from apikeys.api.auth import PortalToken
from apikeys.api.paging import PageQuery, audit_out, paginate
from apikeys.api.problems import FAILURES, Problem, form_errors
from apikeys.api.schemas import (
    AdminKeyOut,
    AdminKeyPage,
    ApiIn,
    ApiOut,
    AuditPage,
    NoteIn,
    ReasonIn,
)
from apikeys.client_address import client_ip
from apikeys.forms import ApiForm, AuditFilterForm, KeySearchForm, OptionalReasonForm, ReasonForm
from apikeys.http import ApiRequest
from apikeys.models import Api, ApiKey, AuditEntry
from apikeys.operations import catalog, lifecycle

router = Router(auth=PortalToken(admin=True), tags=["admin"])


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
def keys(request: ApiRequest, filters: Query[KeyFilters]) -> Any:
    form = KeySearchForm(_given(filters, PageQuery))
    if not form.is_valid():
        raise Problem(422, "The filters are not valid: see errors.", errors=form_errors(form))
    keys = ApiKey.objects.search(form.cleaned_data).prefetch_related("public_keys")
    return paginate(keys, filters)


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


@router.get("/audit", response={200: AuditPage, **FAILURES}, summary="The audit trail")
def audit(request: ApiRequest, filters: Query[AuditFilters]) -> Any:
    form = AuditFilterForm(_given(filters, PageQuery))
    if not form.is_valid():
        raise Problem(422, "The filters are not valid: see errors.", errors=form_errors(form))
    entries = AuditEntry.objects.matching(form.cleaned_data)
    return paginate(entries, filters, lambda entry: audit_out(entry, viewer=None))


@router.get("/apis", response={200: list[ApiOut], **FAILURES}, summary="The whole catalog")
def apis(request: ApiRequest) -> Any:
    return Api.objects.all()


@router.post("/apis", response={201: ApiOut, **FAILURES}, summary="Add an API")
def add_api(request: ApiRequest, body: ApiIn) -> Any:
    return Status(201, _save_api(request, Api(), body))


@router.put("/apis/{slug}", response={200: ApiOut, **FAILURES}, summary="Change an API")
def change_api(request: ApiRequest, slug: str, body: ApiIn) -> Api:
    return _save_api(request, _api(slug), body)


@router.post("/apis/{slug}/retire", response={200: ApiOut, **FAILURES}, summary="Retire an API")
def retire_api(request: ApiRequest, slug: str) -> Api:
    return catalog.retire_api(_api(slug), **_who(request))


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
