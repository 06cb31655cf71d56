"""The customer's pages about their keys: the list, making one, each key and its actions.

Each page works without JavaScript: forms post and redirect, or render the next page. With
htmx, the same URLs answer with partials: the panel above the key list gets the form, the
confirmation or the revealed secret, and the key list is refreshed out of band. Which keys a
person reaches is decided in `apikeys/access.py`; what an action does, in
`apikeys/operations/lifecycle.py`.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apikeys.access import CHANGE, SEE, key_for, role_in, team_for, teams_of
from apikeys.assurance import recent_factor_required_keycloak_decides
from apikeys.client_address import client_ip
from apikeys.forms import (
    DpopForm,
    KeyForm,
    MoveKeyForm,
    NetworksForm,
    PermissionsForm,
    PublicKeyForm,
    RenameForm,
    RotateForm,
)
from apikeys.http import PageRequest
from apikeys.keycloak.client import KeycloakFailure
from apikeys.limits import rate_limited
from apikeys.models import ApiKey, AuditEntry, Team, TeamRole, User, WrongState
from apikeys.operations import dormancy, lifecycle, permissions, teams, usage
from apikeys.operations.lifecycle import AlreadyRotated, AlreadySubmitted, KeyNotIssued, Revealed
from apikeys.views.exports import audit_csv
from apikeys.views.outcomes import act_on_key, refusal
from apikeys.views.public import partner_endpoints


@require_GET
def home(request: PageRequest) -> HttpResponse:
    return render(request, "apikeys/home.html", key_list_context(request.user, None))


def _asked_team(request: PageRequest) -> Team | None:
    """The team a new key is for (`?team=`), if the person may make its keys; else None."""
    team_id = request.GET.get("team") or request.POST.get("team")
    return team_for(request.user, team_id, to=CHANGE) if team_id else None


@sensitive_variables()  # holds the new secret: never in an error page or report
@sensitive_post_parameters("public_key")  # a private key pasted by mistake
@rate_limited("keys")
@never_cache
@require_http_methods(["GET", "POST"])
def new_key(request: PageRequest) -> HttpResponse:
    team = _asked_team(request)
    form = KeyForm(request.POST or None, owner=request.user, team=team)
    if request.method == "POST":
        if form.is_valid():
            try:
                revealed = lifecycle.issue_key(
                    request.user, form.order(), ip_address=client_ip(request)
                )
            except (KeyNotIssued, WrongState) as error:
                form.add_error(None, str(error))
            except AlreadySubmitted as repeat:
                return _page(request, "apikeys/already_submitted.html", {"key": repeat.key})
            else:
                return _reveal(request, revealed, "created")
        elif made := form.made_before():  # the same form again: its name is taken by its key
            return _page(request, "apikeys/already_submitted.html", {"key": made})
    context = {"form": form, "team": team, "new_key_url": _new_key_url(team)}
    return _page(request, "apikeys/key_form.html", context)


def _new_key_url(team: Team | None) -> str:
    url = reverse("new_key")
    return f"{url}?team={team.pk}" if team is not None else url


@require_GET
def key_detail(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    key = key_for(request.user, key_id, to=SEE)
    context = _key_detail_context(key, PublicKeyForm(), request.user)
    return render(request, "apikeys/key_detail.html", context)


def _key_detail_context(
    key: ApiKey, public_key_form: PublicKeyForm, person: User
) -> dict[str, Any]:
    role = role_in(person, key.team) if key.team is not None else TeamRole.OWNER
    move_to = [t.pk for t, r in teams_of(person) if r != TeamRole.VIEWER]
    can_move = key.team is None and key.is_live and bool(move_to)
    return {
        "can_change": role is not None and role != TeamRole.VIEWER,
        "move_form": MoveKeyForm(teams=Team.objects.filter(pk__in=move_to)) if can_move else None,
        "networks_form": NetworksForm(initial={"networks": "\n".join(key.networks)}),
        "dpop_form": DpopForm(),
        "permissions_form": PermissionsForm(key=key),
        "permission_request": key.permission_requests.filter(decided_at__isnull=True).first(),
        "key": key,
        "history": key.audit_entries.select_related("api"),
        "public_keys": key.public_keys.all(),
        "public_key_form": public_key_form,
        "leaks": key.leak_reports.all()[:20],
        "usage": usage.of_key(key),
        "dormant_suspension": dormancy.is_dormant_suspension(key),
    } | partner_endpoints()


@require_GET
def activity(request: PageRequest) -> HttpResponseBase:
    """The audit trail of the customer's own keys and account."""
    entries = AuditEntry.objects.of_owner(request.user).select_related("key", "api")
    if request.GET.get("format") == "csv":
        return audit_csv(entries, "my-key-activity.csv", viewer=request.user)
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    return render(request, "apikeys/activity.html", {"page": page})


@sensitive_variables()  # holds the new secret: never in an error page or report
@rate_limited("keys")
@never_cache
@require_http_methods(["GET", "POST"])
@recent_factor_required_keycloak_decides
def rotate_key(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    key = key_for(request.user, key_id)
    form = RotateForm(request.POST if request.method == "POST" else None, key=key)
    error = None
    if request.method == "POST" and form.is_valid():
        grace = timedelta(hours=int(form.cleaned_data["grace_hours"]))
        try:
            revealed = lifecycle.rotate_secret(
                key,
                actor=request.user,
                ip_address=client_ip(request),
                grace=grace,
                request_id=form.cleaned_data["request_id"],
            )
        except AlreadyRotated as repeat:
            return _page(request, "apikeys/already_rotated.html", {"key": repeat.key})
        except KeycloakFailure as failure:
            error = f"{failure.for_people} The old secret still works."
        except (WrongState, ValueError) as failure:
            error = str(failure)
        else:
            return _reveal(request, revealed, "rotated")
    context = {"key": key, "form": form, "error": error}
    return _page(request, "apikeys/confirm_rotate.html", context)


@rate_limited("keys")
@require_http_methods(["GET", "POST"])
def rename_key(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    """The key's name and description; a recovered key's owner is asked to name it here."""
    key = key_for(request.user, key_id)
    form = RenameForm(request.POST if request.method == "POST" else None, key=key)
    if request.method == "POST" and form.is_valid():
        try:
            lifecycle.rename_key(
                key, **form.cleaned_data, actor=request.user, ip_address=client_ip(request)
            )
        except lifecycle.NameTaken as taken:
            form.add_error("name", str(taken))
        else:
            messages.success(request, "Saved.")
            return redirect("key_detail", key_id=key.pk)
    return render(request, "apikeys/rename.html", {"key": key, "form": form})


@rate_limited("keys")
@require_POST
def reinstate_dormant(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    """The owner's one click that reinstates a key the dormant-key policy suspended."""
    key = key_for(request.user, key_id)
    return act_on_key(
        request,
        lambda: dormancy.reinstate_by_owner(key, owner=request.user, ip_address=client_ip(request)),
        done=f"“{key.name}” works again.",
        unreached=lambda why: f"Nothing was changed: {why} Try again in a minute.",
        then=lambda: redirect("key_detail", key.pk),
    )


@rate_limited("keys")
@require_POST
def end_grace(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    """Stop the previous secret now, before its grace period ends."""
    key = key_for(request.user, key_id)
    return act_on_key(
        request,
        lambda: lifecycle.end_grace(key, actor=request.user, ip_address=client_ip(request)),
        done="The previous secret stopped working. Only the current one works.",
        unreached=lambda why: (
            f"The end is recorded, but Keycloak could not be told yet ({why}): the previous "
            "secret may work until it is (the reconcile job finishes it)."
        ),
        then=lambda: redirect("key_detail", key.pk),
    )


@sensitive_variables()  # a private key pasted by mistake, in the form's frames
@sensitive_post_parameters("public_key")
@rate_limited("keys")
@require_POST
@recent_factor_required_keycloak_decides  # a new credential for the key: a rotation by another name
def add_public_key(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    key = key_for(request.user, key_id)
    form = PublicKeyForm(request.POST)
    if form.is_valid():
        added = form.cleaned_data["public_key"]
        try:
            lifecycle.add_public_keys(key, added, actor=request.user, ip_address=client_ip(request))
        except (KeycloakFailure, WrongState) as failure:
            form.add_error(None, refusal(failure, "Nothing was added."))
        else:
            messages.success(request, "Added. Assertions signed with it work now.")
            return redirect("key_detail", key.pk)
    context = _key_detail_context(key, form, request.user)
    return render(request, "apikeys/key_detail.html", context, status=422)


@rate_limited("keys")
@require_POST
def remove_public_key(request: PageRequest, key_id: uuid.UUID, kid: str) -> HttpResponse:
    key = key_for(request.user, key_id)
    return act_on_key(
        request,
        lambda: lifecycle.remove_public_key(
            key, kid, actor=request.user, ip_address=client_ip(request)
        ),
        done=f"The public key {kid} was removed: it no longer works.",
        unreached=lambda why: (
            f"Removed from the key, but Keycloak could not be told yet ({why}) and may still "
            "take assertions signed with it: press “Send the keys to Keycloak again” in a "
            "minute (the reconcile job does it too)."
        ),
        then=lambda: redirect("key_detail", key.pk),
    )


@rate_limited("keys")
@require_POST
def refresh_public_keys(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    key = key_for(request.user, key_id)
    if key.uses_workload:
        done = "Keycloak has the key's issuer and subject: only that workload's tokens work."
    elif key.jwks_url:
        done = "Keycloak reads your JWKS URL again: only the keys listed work now."
    else:
        done = "Keycloak has the keys: only the keys listed work now."
    return act_on_key(
        request,
        lambda: lifecycle.refresh_public_keys(
            key, actor=request.user, ip_address=client_ip(request)
        ),
        done=done,
        unreached=lambda why: f"{why} Try again in a minute.",
        then=lambda: redirect("key_detail", key.pk),
    )


@rate_limited("keys")
@require_http_methods(["GET", "POST"])
@recent_factor_required_keycloak_decides
def revoke_key(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    key = key_for(request.user, key_id)
    error = None
    if request.method == "POST":
        try:
            lifecycle.revoke_key(key, actor=request.user, ip_address=client_ip(request))
        except KeycloakFailure as failure:
            notice = f"{failure.for_people} {lifecycle.decision_pending(key, 'revoked')}"
            return _done(request, key, notice, error=True)
        except WrongState as failure:
            error = str(failure)
        else:
            return _done(request, key, f"“{key.name}” is revoked. It can no longer get tokens.")
    return _page(request, "apikeys/confirm_revoke.html", {"key": key, "error": error})


@sensitive_variables()  # holds the new secret: never in an error page or report
@rate_limited("keys")
@never_cache
@require_POST
def finish_key(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    key = key_for(request.user, key_id)
    try:
        revealed = lifecycle.finish_key(key, actor=request.user, ip_address=client_ip(request))
    except (KeycloakFailure, WrongState) as failure:
        return _done(request, key, refusal(failure, "The key is still unfinished."), error=True)
    return _reveal(request, revealed, "created")


@require_POST
def discard_key(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    key = key_for(request.user, key_id)
    try:
        lifecycle.discard_key(key, actor=request.user, ip_address=client_ip(request))
    except (KeycloakFailure, WrongState) as failure:
        return _done(request, key, refusal(failure, "The key is still unfinished."), error=True)
    return _done(request, key, f"The unfinished key “{key.name}” is discarded.")


# Live keys shown per page: a person's quota fits on one; a big team's take several.
KEYS_PER_PAGE = 100


def key_list_context(person: User, team: Team | None, page: str | None = None) -> dict[str, Any]:
    """The key list of one space: `person`'s own keys, or `team`'s (they are in it)."""
    keys = ApiKey.objects.held_by(person, team).select_related("api", "owner", "registered_with")
    keys = keys.prefetch_related("permissions")
    live = Paginator(keys.live(), KEYS_PER_PAGE).get_page(page)
    live_count = live.paginator.count
    quota = team.key_quota if team is not None else settings.MAX_LIVE_KEYS_PER_USER
    role = role_in(person, team) if team is not None else TeamRole.OWNER
    return {
        "team": team,
        "role": role,
        "teams": teams_of(person),
        "can_change": role is not None and role != TeamRole.VIEWER,
        "new_key_url": _new_key_url(team),
        "activity_url": reverse("team_activity", args=[team.pk]) if team else reverse("activity"),
        "live_keys": live.object_list,
        "live_page": live,
        "live_count": live_count,
        "ended_keys": keys.ended()[:50],
        "quota": quota,
        "quota_left": max(quota - live_count, 0),
        "now": timezone.now(),
    }


def _page(request: PageRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    """A full page, or for htmx only its panel."""
    name = f"{template}#panel" if request.htmx else template
    return render(request, name, context)


@sensitive_variables()  # holds the new secret: never in an error page or report
def _reveal(request: PageRequest, revealed: Revealed, event: str) -> HttpResponse:
    """The one response that shows a secret: never cached, never put in a message."""
    context = {"key": revealed.key, "secret": revealed.secret, "event": event}
    context |= partner_endpoints()
    if request.htmx:
        context |= key_list_context(request.user, revealed.key.team)
        context["panel_template"] = "apikeys/reveal.html#panel"
        return render(request, "apikeys/htmx_update.html", context)
    return render(request, "apikeys/reveal.html", context)


def _done(request: PageRequest, key: ApiKey, notice: str, *, error: bool = False) -> HttpResponse:
    """After an action without a secret: back to the key's list with a notice."""
    if request.htmx:
        context = key_list_context(request.user, key.team)
        context |= {"notice": notice, "notice_error": error}
        return render(request, "apikeys/htmx_update.html", context)
    (messages.error if error else messages.success)(request, notice)
    return redirect("team", key.team_id) if key.team_id else redirect("home")


@rate_limited("keys")
@require_POST
@recent_factor_required_keycloak_decides
def set_networks(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    """The networks the key's tokens may be requested from (Keycloak enforces them)."""
    key = key_for(request.user, key_id)
    form = NetworksForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Nothing was changed: {form.errors['networks'][0]}")
        return redirect("key_detail", key.pk)
    ranges = form.cleaned_data["networks"]
    return act_on_key(
        request,
        lambda: lifecycle.set_networks(
            key, ranges, actor=request.user, ip_address=client_ip(request)
        ),
        done=f"From the next token on, only from: {', '.join(ranges) or 'anywhere'}.",
        unreached=lambda why: f"Nothing was changed: {why} Try again in a minute.",
        then=lambda: redirect("key_detail", key.pk),
    )


@rate_limited("keys")
@require_POST
def set_dpop(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    """Require DPoP-bound tokens of the key (RFC 9449), or stop requiring them."""
    key = key_for(request.user, key_id)
    form = DpopForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Nothing was changed: say whether DPoP is required.")
        return redirect("key_detail", key.pk)
    required = form.cleaned_data["requires_dpop"]
    if required:
        done = (
            "From the next token request on, Keycloak gives tokens only with a DPoP proof, "
            "bound to the proof's key. Tokens already issued run out as usual."
        )
    else:
        done = "From the next token request on, DPoP proofs are no longer required."
    return act_on_key(
        request,
        lambda: lifecycle.set_dpop(
            key, required, actor=request.user, ip_address=client_ip(request)
        ),
        done=done,
        unreached=lambda why: f"Nothing was changed: {why} Try again in a minute.",
        then=lambda: redirect("key_detail", key.pk),
    )


@rate_limited("keys")
@require_POST
@recent_factor_required_keycloak_decides
def set_permissions(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    """What the key's tokens may do: fewer at once, more at once or after approval."""
    key = key_for(request.user, key_id)
    form = PermissionsForm(request.POST, key=key)
    if not form.is_valid():
        errors = next(iter(form.errors.values()))
        messages.error(request, f"Nothing was changed: {errors[0]}")
        return redirect("key_detail", key.pk)
    outcome: list[permissions.PermissionsOutcome] = []
    try:
        return act_on_key(
            request,
            lambda: outcome.append(
                permissions.set_key_permissions(
                    key,
                    form.cleaned_data["permissions"],
                    justification=form.cleaned_data["justification"],
                    actor=request.user,
                    ip_address=client_ip(request),
                )
            ),
            done=lambda: _permissions_done(outcome[0]),
            unreached=lambda why: f"Nothing was changed: {why} Try again in a minute.",
            then=lambda: redirect("key_detail", key.pk),
        )
    except permissions.PermissionRefused as refused:
        messages.error(request, f"Nothing was changed: {refused}")
        return redirect("key_detail", key.pk)


def _permissions_done(outcome: permissions.PermissionsOutcome) -> str:
    said = []
    if outcome.added or outcome.removed:
        held = ", ".join(outcome.key.permission_names) or "none"
        said.append(f"From the next token on, its permissions are: {held}.")
    if outcome.requested is not None:
        said.append(
            f"{', '.join(outcome.requested.names)} asked for: an administrator decides; the "
            "key works with what it has until then."
        )
    return " ".join(said) or "Nothing to change: the key already has these permissions."


@rate_limited("keys")
@require_POST
def withdraw_permission_request(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    key = key_for(request.user, key_id)
    waiting = key.permission_requests.filter(decided_at__isnull=True).first()
    if waiting is None:
        messages.error(request, "This key has no request waiting.")
        return redirect("key_detail", key.pk)
    return act_on_key(
        request,
        lambda: permissions.withdraw_request(
            waiting, actor=request.user, ip_address=client_ip(request)
        ),
        done="Request withdrawn: the key keeps the permissions it has.",
        unreached=lambda why: why,
        then=lambda: redirect("key_detail", key.pk),
    )


@rate_limited("keys")
@require_POST
def move_key(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    """Move a personal key into a team where the person makes keys: same client, same secret."""
    key = key_for(request.user, key_id)
    if key.team is not None:
        raise Http404("You have no personal key with this id.")
    form = MoveKeyForm(request.POST, teams=Team.objects.all())
    if not form.is_valid():
        messages.error(request, "Choose a team.")
        return redirect("key_detail", key.pk)
    team = team_for(request.user, form.cleaned_data["team"].pk, to=CHANGE)
    try:
        teams.move_key(
            key, owner=key.owner, team=team, actor=request.user, ip_address=client_ip(request)
        )
    except KeycloakFailure as failure:
        messages.error(request, f"{failure.for_people} The key was not moved.")
        return redirect("key_detail", key.pk)
    messages.success(
        request, f"“{key.name}” is the team {team.name}'s now. Its secret still works."
    )
    return redirect("key_detail", key.pk)
