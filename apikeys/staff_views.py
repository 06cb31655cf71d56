"""The admin area (/manage/): the catalog, the approval queue, every key, the audit trail.

Only users with the `portal-admin` realm role (`is_staff`, refreshed at each sign-in) get in;
to everyone else every URL here answers 404, as if the area did not exist. Anonymous
visitors are sent to sign in first, like everywhere else. Admins act on keys, with a reason
the owner reads, but never see or set a secret.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, time, timedelta
from functools import wraps
from typing import Any, cast

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apikeys import catalog, lifecycle
from apikeys.forms import ApiForm, AuditFilterForm, KeySearchForm, OptionalReasonForm, ReasonForm
from apikeys.keycloak import KeycloakRejected, KeycloakUnavailable
from apikeys.lifecycle import WrongState
from apikeys.models import Api, ApiKey, AuditEntry, User
from apikeys.views import audit_csv, client_ip

View = Callable[..., HttpResponseBase]
PAGE_SIZE = 50


def staff_required(view: View) -> View:
    """404 for signed-in users who are not portal admins."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_staff:
            raise Http404
        return view(request, *args, **kwargs)

    return guarded


@staff_required
@require_GET
def approvals(request: HttpRequest) -> HttpResponse:
    pending = ApiKey.objects.filter(status=ApiKey.Status.PENDING).select_related("owner", "api")
    return render(request, "manage/approvals.html", {"pending": pending.order_by("created_at")})


@staff_required
@require_POST
def approve(request: HttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=key_id)
    return _act(request, key, lambda: lifecycle.approve_key(key, **_who(request)), "approved")


@staff_required
@require_POST
def reject(request: HttpRequest, key_id: uuid.UUID) -> HttpResponse:
    return _with_reason(request, key_id, lifecycle.reject_key, "rejected")


@staff_required
@require_GET
def key_list(request: HttpRequest) -> HttpResponse:
    form = KeySearchForm(request.GET or None)
    keys = search_keys(form.cleaned_data if form.is_valid() else {})
    return render(request, "manage/keys.html", {"form": form, **_paginate(request, keys)})


def search_keys(filters: dict[str, Any]) -> QuerySet[ApiKey]:
    """Every key matching the admin's filters; each filter uses an index where it can."""
    keys = ApiKey.objects.select_related("owner", "api")
    if q := (filters.get("q") or "").strip():
        if q.startswith(ApiKey.CLIENT_ID_PREFIX):
            keys = keys.filter(client_id__startswith=q)
        else:
            # Owners are looked up first, and their keys found through the owner index. A
            # join or subquery here makes PostgreSQL walk the whole key table in page order.
            owners = list(
                User.objects.filter(email__istartswith=q).values_list("pk", flat=True)[:1000]
            )
            if "@" in q:
                keys = keys.filter(owner__in=owners)
            else:  # names through a trigram index on PostgreSQL (migration 0004)
                keys = keys.filter(Q(name__icontains=q) | Q(owner__in=owners))
    if api := filters.get("api"):
        keys = keys.filter(api=api)
    if status := filters.get("status"):
        keys = keys.filter(status=status)
    if day := filters.get("created_after"):
        keys = keys.filter(created_at__gte=_start_of(day))
    if day := filters.get("created_before"):
        keys = keys.filter(created_at__lt=_start_of(day) + timedelta(days=1))
    if day := filters.get("expires_before"):
        keys = keys.filter(expires_at__lt=_start_of(day) + timedelta(days=1))
    if days := filters.get("unused_days"):
        since = timezone.now() - timedelta(days=days)
        keys = keys.filter(
            Q(last_used_at__lt=since) | Q(last_used_at__isnull=True, created_at__lt=since)
        )
    return keys.order_by(filters.get("sort") or "-created_at", "pk")


@staff_required
@require_GET
def key_detail(request: HttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = get_object_or_404(ApiKey.objects.select_related("owner", "api"), pk=key_id)
    return render(
        request,
        "manage/key_detail.html",
        {"key": key, "history": key.audit_entries.all(), "reason_form": ReasonForm()},
    )


@staff_required
@require_POST
def suspend(request: HttpRequest, key_id: uuid.UUID) -> HttpResponse:
    return _with_reason(request, key_id, lifecycle.suspend_key, "suspended")


@staff_required
@require_POST
def revoke(request: HttpRequest, key_id: uuid.UUID) -> HttpResponse:
    return _with_reason(request, key_id, lifecycle.revoke_key, "revoked")


@staff_required
@require_POST
def reinstate(request: HttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=key_id)
    form = OptionalReasonForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    return _act(
        request,
        key,
        lambda: lifecycle.reinstate_key(key, reason=reason, **_who(request)),
        "reinstated",
    )


@staff_required
@require_GET
def api_list(request: HttpRequest) -> HttpResponse:
    apis = Api.objects.annotate(
        live_keys=Count("keys", filter=Q(keys__status__in=ApiKey.LIVE_STATUSES))
    )
    return render(request, "manage/apis.html", {"apis": apis})


@staff_required
@require_http_methods(["GET", "POST"])
def api_edit(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    api = get_object_or_404(Api, slug=slug) if slug else Api()
    form = ApiForm(request.POST or None, instance=api)
    if request.method == "POST" and form.is_valid():
        try:
            change = catalog.save_api(form.save(commit=False), **_who(request))
        except (KeycloakUnavailable, KeycloakRejected) as error:
            form.add_error(None, f"{lifecycle.failure_message(error)} Nothing was changed.")
        else:
            messages.success(request, f"{change.api.name} is saved, in Keycloak too.")
            if change.keys_not_updated:
                messages.warning(
                    request,
                    f"The new token lifespan could not be given to {len(change.keys_not_updated)} "
                    "keys; the reconcile job will retry them.",
                )
            return redirect("manage_apis")
    return render(request, "manage/api_form.html", {"form": form, "api": api})


@staff_required
@require_POST
def api_retire(request: HttpRequest, slug: str) -> HttpResponse:
    api = catalog.retire_api(get_object_or_404(Api, slug=slug), **_who(request))
    messages.success(
        request, f"{api.name} is retired: no new keys. Its live keys work until they end."
    )
    return redirect("manage_apis")


@staff_required
@require_GET
def audit(request: HttpRequest) -> HttpResponseBase:
    form = AuditFilterForm(request.GET or None)
    entries = filter_audit(form.cleaned_data if form.is_valid() else {})
    if request.GET.get("format") == "csv":
        return audit_csv(entries, "audit.csv")
    return render(request, "manage/audit.html", {"form": form, **_paginate(request, entries)})


def filter_audit(filters: dict[str, Any]) -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.select_related("key", "api")
    if actor := filters.get("actor"):
        entries = entries.filter(actor_email__istartswith=actor)
    if action := filters.get("action"):
        entries = entries.filter(action=action)
    if client_id := filters.get("key"):
        entries = entries.filter(client_id__startswith=client_id)
    if day := filters.get("since"):
        entries = entries.filter(at__gte=_start_of(day))
    if day := filters.get("until"):
        entries = entries.filter(at__lt=_start_of(day) + timedelta(days=1))
    return entries


def _paginate(request: HttpRequest, items: QuerySet[Any]) -> dict[str, Any]:
    """The requested page, and the filters to carry to the other pages' links."""
    query = request.GET.copy()
    query.pop("page", None)
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    return {"page": page, "query": query.urlencode()}


def _start_of(day: Any) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def _who(request: HttpRequest) -> dict[str, Any]:
    return {"actor": cast(User, request.user), "ip_address": client_ip(request)}


def _with_reason(
    request: HttpRequest, key_id: uuid.UUID, action: Callable[..., ApiKey], done: str
) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=key_id)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Say why the key is {done}: the owner reads it.")
        return _back(request, key)
    reason = form.cleaned_data["reason"]
    return _act(request, key, lambda: action(key, reason=reason, **_who(request)), done)


def _act(
    request: HttpRequest, key: ApiKey, action: Callable[[], ApiKey], done: str
) -> HttpResponse:
    """Run an admin action on a key and say how it went; back to where the admin was."""
    try:
        action()
    except (KeycloakUnavailable, KeycloakRejected) as error:
        messages.error(request, f"{lifecycle.failure_message(error)} Nothing was changed.")
    except WrongState as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"“{key.name}” ({key.client_id}) is {done}. The owner is told.")
    return _back(request, key)


def _back(request: HttpRequest, key: ApiKey) -> HttpResponse:
    """To the approval queue if the action came from there, else to the key's page."""
    if request.POST.get("from") == "approvals":
        return redirect("manage_approvals")
    return redirect("manage_key", key_id=key.pk)
