"""The admin area (/manage/): the catalog, the approval queue, every key, the audit trail.

Only users with the `portal-admin` realm role (`is_staff`, refreshed at each sign-in) get in;
to everyone else every URL here answers 404, as if the area did not exist. Anonymous
visitors are sent to sign in first, like everywhere else. Admins act on keys, with a reason
the owner reads, but never see or set a secret.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import cached_property, wraps
from typing import Any

from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.forms import Form
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apikeys import assurance
from apikeys.access import any_key
from apikeys.client_address import client_ip
from apikeys.forms import (
    AdminMoveForm,
    ApiForm,
    AuditFilterForm,
    KeySearchForm,
    LeakPolicyForm,
    OptionalReasonForm,
    PermissionChangeForm,
    PermissionDefinitionForm,
    ReasonForm,
)
from apikeys.http import PageRequest
from apikeys.keycloak.client import KeycloakFailure
from apikeys.models import (
    LIVE_STATUSES,
    Api,
    ApiKey,
    AuditEntry,
    LeakReport,
    Permission,
    PermissionRequest,
    PortalSetting,
)
from apikeys.operations import catalog, lifecycle, permissions, usage
from apikeys.views.exports import audit_csv
from apikeys.views.outcomes import act_on_key

View = Callable[..., HttpResponseBase]
PAGE_SIZE = 50


def admin_required(view: View) -> View:
    """404 for signed-in users who are not portal admins (`is_staff`: the portal-admin role);
    admins whose sign-in did not use a second factor step up first (apikeys/assurance.py)."""

    @wraps(view)
    def guarded(request: PageRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_staff:
            raise Http404
        assurance.require_admin_level(request)
        return view(request, *args, **kwargs)

    return guarded


@admin_required
@require_GET
def approvals(request: PageRequest) -> HttpResponse:
    pending = ApiKey.objects.filter(status=ApiKey.Status.PENDING)
    pending = pending.select_related("owner", "api", "workload_issuer")
    pending = pending.prefetch_related("permissions").order_by("created_at")
    context = {"pending": pending, "asked": permissions.open_requests()}
    return render(request, "manage/approvals.html", context)


@admin_required
@require_POST
def decide_permissions(request: PageRequest, request_id: int, approve: bool) -> HttpResponse:
    """Grant or refuse what a key's permission request asks for (a refusal says why)."""
    asked = get_object_or_404(PermissionRequest, pk=request_id)
    form = OptionalReasonForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    if not approve and not reason:
        messages.error(request, "Say why the permissions are refused: the requester reads it.")
        return redirect("manage_approvals")
    act_on_key(
        request,
        lambda: permissions.decide_request(asked, approve=approve, reason=reason, **_who(request)),
        done=f"{', '.join(asked.names)} {'given to' if approve else 'refused for'} "
        f"“{asked.key.name}”. The requester is told.",
        unreached=lambda why: f"{why} Nothing was changed; try again in a minute.",
        then=lambda: redirect("manage_approvals"),
    )
    return redirect("manage_approvals")


@admin_required
@require_POST
def approve(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    key = any_key(key_id)
    return _act(request, key, lambda: lifecycle.approve_key(key, **_who(request)), "approved")


@admin_required
@require_POST
def reject(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    return _with_reason(request, key_id, lifecycle.reject_key, "rejected")


@admin_required
@require_GET
def key_list(request: PageRequest) -> HttpResponse:
    form = KeySearchForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return _filters_refused(request, "manage/keys.html", form)
    filters = form.cleaned_data if form.is_bound else {}
    keys = ApiKey.objects.search(filters)
    context = {"form": form, "team": filters.get("team"), **_paginate(request, keys)}
    return render(request, "manage/keys.html", context)


@admin_required
@require_GET
def key_detail(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    return key_page(request, any_key(key_id))


def key_page(
    request: PageRequest, key: ApiKey, *, move: AdminMoveForm | None = None, status: int = 200
) -> HttpResponse:
    """Any key's page for an administrator; `move`: its move form as sent, refused."""
    context = {
        "key": key,
        "history": key.audit_entries.select_related("api"),
        "reason_form": ReasonForm(),
        "public_keys": key.public_keys.all(),
        "leaks": key.leak_reports.all()[:20],
        "usage": usage.of_key(key),
        "move": move or AdminMoveForm(),
    }
    return render(request, "manage/key_detail.html", context, status=status)


@admin_required
@require_POST
def suspend(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    return _with_reason(request, key_id, lifecycle.suspend_key, "suspended")


@admin_required
@require_POST
def revoke(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    return _with_reason(request, key_id, lifecycle.revoke_key, "revoked")


@admin_required
@require_POST
def reinstate(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    key = any_key(key_id)
    form = OptionalReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"The note was not accepted: {form.errors['reason'][0]}")
        return _back(request, key)
    reason = form.cleaned_data["reason"]
    return _act(
        request,
        key,
        lambda: lifecycle.reinstate_key(key, reason=reason, **_who(request)),
        "reinstated",
    )


@admin_required
@require_GET
def api_list(request: PageRequest) -> HttpResponse:
    apis = Api.objects.annotate(live_keys=Count("keys", filter=Q(keys__status__in=LIVE_STATUSES)))
    return render(request, "manage/apis.html", {"apis": apis})


@admin_required
@require_http_methods(["GET", "POST"])
def api_edit(request: PageRequest, slug: str | None = None) -> HttpResponse:
    api = get_object_or_404(Api, slug=slug) if slug else Api()
    form = ApiForm(request.POST or None, instance=api)
    if request.method == "POST" and form.is_valid():
        try:
            change = catalog.save_api(form.save(commit=False), **_who(request))
        except KeycloakFailure as error:
            form.add_error(None, f"{error.for_people} Nothing was changed.")
        else:
            messages.success(request, f"{change.api.name} is saved, in Keycloak too.")
            if change.keys_not_updated:
                messages.warning(
                    request,
                    f"The new token lifespan could not be given to {len(change.keys_not_updated)} "
                    "keys; the reconcile job will retry them.",
                )
            return redirect("manage_apis")
    # An API's first permissions go to its keys that exist, so their partners keep working.
    first = {"give_to_live_keys": slug is not None and not api.permissions.exists()}
    context = {"form": form, "api": api, "new_permission": PermissionDefinitionForm(initial=first)}
    return render(request, "manage/api_form.html", context)


@admin_required
@require_POST
def permission_add(request: PageRequest, slug: str) -> HttpResponse:
    """A new permission of the API: its client scope made in Keycloak with it."""
    api = get_object_or_404(Api, slug=slug)
    form = PermissionDefinitionForm(request.POST, instance=Permission(api=api))
    if form.is_valid():
        data = form.cleaned_data
        try:
            defined = permissions.define_permission(
                api,
                name=data["name"],
                description=data["description"],
                requires_approval=data["requires_approval"],
                default=data["default"],
                give_to_live_keys=data["give_to_live_keys"],
                **_who(request),
            )
        except KeycloakFailure as error:
            form.add_error(None, f"{error.for_people} Nothing was changed.")
        except ValidationError as invalid:  # a name taken at the same moment; no extension
            for name, errors in permissions.field_errors(invalid).items():
                form.add_error(None if name == NON_FIELD_ERRORS else name, errors)
        else:
            _say_defined(request, defined)
            return redirect("manage_api_edit", slug=api.slug)
    context = {"form": ApiForm(instance=api), "api": api, "new_permission": form}
    return render(request, "manage/api_form.html", context, status=422)


def _say_defined(request: PageRequest, defined: permissions.PermissionDefined) -> None:
    name = defined.permission.name
    messages.success(request, f"{name} is a permission of {defined.permission.api.name} now.")
    if defined.keys_not_updated:
        messages.warning(
            request,
            f"{len(defined.keys_not_updated)} keys could not be given {name} (Keycloak "
            "failed): press “Give it to the keys that lack it” to try them again.",
        )


@admin_required
@require_POST
def permission_give(request: PageRequest, slug: str, name: str) -> HttpResponse:
    """Give a permission to its API's keys that exist and lack it."""
    permission = get_object_or_404(Permission, api__slug=slug, name=name)
    failed = permissions.give_to_keys_lacking(permission, **_who(request))
    if failed:
        messages.warning(
            request, f"{len(failed)} keys could not be given {name} (Keycloak failed): try again."
        )
    else:
        messages.success(request, f"Every live key of {permission.api.name} holds {name}.")
    return redirect("manage_api_edit", slug=slug)


@admin_required
@require_POST
def permission_edit(request: PageRequest, slug: str, name: str) -> HttpResponse:
    permission = get_object_or_404(Permission, api__slug=slug, name=name)
    form = PermissionChangeForm(request.POST, instance=Permission.objects.get(pk=permission.pk))
    if not form.is_valid():
        errors = "; ".join(str(e) for errors in form.errors.values() for e in errors)
        messages.error(request, f"Nothing was changed: {errors}")
        return redirect("manage_api_edit", slug=slug)
    data = form.cleaned_data
    permissions.change_permission(
        permission,
        description=data["description"],
        requires_approval=data["requires_approval"],
        default=data["default"],
        **_who(request),
    )
    messages.success(request, f"{name} is saved.")
    return redirect("manage_api_edit", slug=slug)


@admin_required
@require_POST
def api_retire(request: PageRequest, slug: str) -> HttpResponse:
    api = catalog.retire_api(get_object_or_404(Api, slug=slug), **_who(request))
    messages.success(
        request, f"{api.name} is retired: no new keys. Its live keys work until they end."
    )
    return redirect("manage_apis")


@admin_required
@require_GET
def audit(request: PageRequest) -> HttpResponseBase:
    form = AuditFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return _filters_refused(request, "manage/audit.html", form)
    entries = AuditEntry.objects.matching(form.cleaned_data if form.is_bound else {})
    if request.GET.get("format") == "csv":
        return audit_csv(entries, "audit.csv")
    return render(request, "manage/audit.html", {"form": form, **_paginate(request, entries)})


@admin_required
@require_http_methods(["GET", "POST"])
def leaks(request: PageRequest) -> HttpResponse:
    """Secrets reported found exposed, and what the portal does when it happens."""
    current = PortalSetting.get(PortalSetting.LEAKED_SECRET_ACTION)
    form = LeakPolicyForm(request.POST or None, initial={"action": current})
    if request.method == "POST" and form.is_valid():
        chosen = form.cleaned_data["action"]
        if chosen != current:
            PortalSetting.objects.update_or_create(
                name=PortalSetting.LEAKED_SECRET_ACTION, defaults={"value": chosen}
            )
            AuditEntry.record(
                None,
                AuditEntry.Action.SETTING_CHANGED,
                reason=f"A key whose secret is found exposed is now {chosen}d (was {current}d).",
                **_who(request),
            )
        messages.success(request, f"Keys whose current secret is found exposed will be {chosen}d.")
        return redirect("manage_leaks")
    reports = LeakReport.objects.select_related("key", "key__owner", "key__api")
    return render(request, "manage/leaks.html", {"form": form, **_paginate(request, reports)})


class CountingEnough(Paginator):  # type: ignore[type-arg]
    """Pages that count the matching rows up to ten pages past the one asked for, and say
    "more" beyond: a count of every match costs time in proportion to them all (20 ms for
    70,000 active keys of 100,000 on PostgreSQL), a count that stops costs next to nothing."""

    def __init__(self, items: QuerySet[Any], asked: str | None) -> None:
        super().__init__(items, PAGE_SIZE)
        self.items = items
        number = int(asked) if asked and asked.isdigit() else 1
        self.enough = (min(number, 10**6) + 10) * PAGE_SIZE

    @cached_property
    def count(self) -> int:
        return self.items[: self.enough + 1].count()

    @property
    def more(self) -> bool:
        """Whether there are more rows than were counted (`count` is then a lower bound)."""
        return self.count > self.enough


def search_refused(request: PageRequest, template: str, form: Form) -> HttpResponse:
    """A list's search `q` it cannot read: the search back as typed (without the control
    characters a field cannot hold) with its error, and nothing listed, rather than every
    row as if it matched. The template says so (`refused`)."""
    typed = "".join(c for c in request.GET.get("q", "") if c.isprintable())
    return render(request, template, {"q": typed, "refused": form.errors["q"][0]}, status=400)


def _filters_refused(request: PageRequest, template: str, form: Form) -> HttpResponse:
    """A list asked for with a filter it cannot read (a date that is not one, a team that
    is gone): the filters back with their errors and no list, rather than a list that
    leaves the wrong filter out and looks like an answer; a CSV export is refused too."""
    if request.GET.get("format") == "csv":
        errors = "; ".join(f"{name}: {e}" for name, errs in form.errors.items() for e in errs)
        return HttpResponseBadRequest(
            f"No export: the filters are not valid ({errors}).",
            content_type="text/plain; charset=utf-8",
        )
    return render(request, template, {"form": form, "query": ""}, status=400)


def _paginate(request: PageRequest, items: QuerySet[Any]) -> dict[str, Any]:
    """The requested page, and the filters to carry to the other pages' links."""
    query = request.GET.copy()
    query.pop("page", None)
    asked = request.GET.get("page")
    page = CountingEnough(items, asked).get_page(asked)
    return {"page": page, "query": query.urlencode()}


def _who(request: PageRequest) -> dict[str, Any]:
    return {"actor": request.user, "ip_address": client_ip(request)}


def _with_reason(
    request: PageRequest, key_id: uuid.UUID, action: Callable[..., ApiKey], done: str
) -> HttpResponse:
    key = any_key(key_id)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Say why the key is {done}: the owner reads it.")
        return _back(request, key)
    reason = form.cleaned_data["reason"]
    return _act(request, key, lambda: action(key, reason=reason, **_who(request)), done)


def _act(
    request: PageRequest, key: ApiKey, action: Callable[[], ApiKey], done: str
) -> HttpResponse:
    """Run an admin action on a key and say how it went; back to where the admin was."""
    return act_on_key(
        request,
        action,
        done=f"“{key.name}” ({key.client_id}) is {done}. The owner is told.",
        unreached=lambda why: f"{why} {lifecycle.decision_pending(key, done)}",
        then=lambda: _back(request, key),
    )


def _back(request: PageRequest, key: ApiKey) -> HttpResponse:
    """To the approval queue if the action came from there, else to the key's page."""
    if request.POST.get("from") == "approvals":
        return redirect("manage_approvals")
    return redirect("manage_key", key_id=key.pk)
