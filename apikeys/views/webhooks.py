"""The customer's webhook endpoints (/webhooks/): plain forms that post and redirect.

Each action calls the operation in `apikeys/operations/webhooks.py`, as the JSON API does. A signing
secret appears once, on the page that answers its creation or rotation, never cached.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apikeys.access import CHANGE, SEE, endpoint_for, role_in, team_for, teams_of
from apikeys.assurance import recent_factor_required, require_recent_factor
from apikeys.client_address import client_ip
from apikeys.forms import WebhookForm, WebhookSecretForm
from apikeys.http import PageRequest
from apikeys.limits import rate_limited
from apikeys.models import EVENT_LABELS, TeamRole, WebhookEndpoint, WebhookMessage, WrongState
from apikeys.operations import webhooks


@require_GET
def webhook_list(request: PageRequest) -> HttpResponse:
    """One space's endpoints: the person's own, or a team's (`?team=`)."""
    team_id = request.GET.get("team")
    team = team_for(request.user, team_id, to=SEE) if team_id else None
    role = role_in(request.user, team) if team is not None else TeamRole.OWNER
    context = {
        "endpoints": WebhookEndpoint.objects.held_by(request.user, team),
        "team": team,
        "teams": teams_of(request.user),
        "can_change": role is not None and role != TeamRole.VIEWER,
    }
    return render(request, "webhooks/list.html", context)


@sensitive_variables()  # the new signing secret
@rate_limited("webhooks")
@never_cache
@require_http_methods(["GET", "POST"])
@recent_factor_required
def webhook_new(request: PageRequest) -> HttpResponse:
    team_id = request.GET.get("team")
    team = team_for(request.user, team_id, to=CHANGE) if team_id else None
    form = WebhookForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            revealed = webhooks.create_endpoint(
                request.user,
                team=team,
                url=form.cleaned_data["url"],
                events=form.cleaned_data["events"],
                description=form.cleaned_data["description"],
                ip_address=client_ip(request),
            )
        except webhooks.Refused as refusal:
            form.add_error(None, str(refusal))
        else:
            return _reveal(request, revealed, "created")
    return render(request, "webhooks/form.html", {"form": form, "team": team})


@require_GET
def webhook_detail(request: PageRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    endpoint = endpoint_for(request.user, endpoint_id, to=SEE)
    form = WebhookForm(
        initial={
            "url": endpoint.url,
            "description": endpoint.description,
            "events": endpoint.events,
        }
    )
    return render(request, "webhooks/detail.html", _detail(request, endpoint, form))


@rate_limited("webhooks")
@require_POST
def webhook_edit(request: PageRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    endpoint = endpoint_for(request.user, endpoint_id)
    form = WebhookForm(request.POST)
    if form.is_valid():
        if form.cleaned_data["url"] != endpoint.url:  # deliveries go elsewhere: a new endpoint
            require_recent_factor(request, request.user)
        try:
            webhooks.update_endpoint(
                endpoint,
                actor=request.user,
                ip_address=client_ip(request),
                url=form.cleaned_data["url"],
                events=form.cleaned_data["events"],
                description=form.cleaned_data["description"],
            )
        except webhooks.Refused as refusal:
            form.add_error("url", str(refusal))
        else:
            messages.success(request, "Saved.")
            return redirect("webhook_detail", endpoint.pk)
    return render(request, "webhooks/detail.html", _detail(request, endpoint, form), status=422)


@rate_limited("webhooks")
@require_POST
def webhook_pause(request: PageRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    return _set_active(request, endpoint_id, active=False)


@rate_limited("webhooks")
@require_POST
def webhook_resume(request: PageRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    return _set_active(request, endpoint_id, active=True)


@rate_limited("webhooks")
@require_http_methods(["GET", "POST"])
def webhook_delete(request: PageRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    endpoint = endpoint_for(request.user, endpoint_id)
    if request.method == "POST":
        webhooks.delete_endpoint(endpoint, actor=request.user, ip_address=client_ip(request))
        messages.success(request, f"The endpoint {endpoint.url} is deleted.")
        return redirect("webhook_list")
    return render(request, "webhooks/confirm_delete.html", {"endpoint": endpoint})


@sensitive_variables()  # the new signing secret
@rate_limited("webhooks")
@never_cache
@require_http_methods(["GET", "POST"])
def webhook_rotate(request: PageRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    endpoint = endpoint_for(request.user, endpoint_id)
    form = WebhookSecretForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        overlap = timedelta(hours=int(form.cleaned_data["overlap_hours"]))
        revealed = webhooks.rotate_signing_secret(
            endpoint, actor=request.user, overlap=overlap, ip_address=client_ip(request)
        )
        return _reveal(request, revealed, "rotated")
    return render(request, "webhooks/rotate.html", {"endpoint": endpoint, "form": form})


@rate_limited("webhooks")
@require_POST
def webhook_test(request: PageRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    endpoint = endpoint_for(request.user, endpoint_id)
    try:
        message = webhooks.send_test(endpoint)
    except WrongState as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"Test event {message.id} queued: see the log below.")
    return redirect("webhook_detail", endpoint.pk)


@rate_limited("webhooks")
@require_POST
def webhook_resend(request: PageRequest, endpoint_id: uuid.UUID, message_id: str) -> HttpResponse:
    endpoint = endpoint_for(request.user, endpoint_id)
    message = get_object_or_404(endpoint.messages, pk=message_id)
    try:
        webhooks.resend(message)
    except WrongState as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"{message.id} is queued again, with the same id.")
    return redirect("webhook_detail", endpoint.pk)


def _detail(request: PageRequest, endpoint: WebhookEndpoint, form: WebhookForm) -> dict[str, Any]:
    log = endpoint.messages.prefetch_related("attempts_made")
    page = Paginator(log, 25).get_page(request.GET.get("page"))
    return {"endpoint": endpoint, "form": form, "page": page, "labels": EVENT_LABELS}


def _set_active(request: PageRequest, endpoint_id: uuid.UUID, *, active: bool) -> HttpResponse:
    endpoint = endpoint_for(request.user, endpoint_id)
    webhooks.update_endpoint(
        endpoint, actor=request.user, ip_address=client_ip(request), active=active
    )
    waiting = endpoint.messages.filter(status=WebhookMessage.Status.PENDING).count()
    done = f"Resumed: {waiting} waiting events are delivered now." if active else "Paused."
    messages.success(request, done)
    return redirect("webhook_detail", endpoint.pk)


@sensitive_variables()  # the signing secret
def _reveal(request: PageRequest, revealed: webhooks.Revealed, event: str) -> HttpResponse:
    context = {"endpoint": revealed.endpoint, "secret": revealed.secret, "event": event}
    return render(request, "webhooks/reveal.html", context)
