"""Pages of the portal. Everything requires sign-in unless marked `login_not_required`.

Each page works without JavaScript: forms post and redirect, or render the next page. With
htmx, the same URLs answer with partials: the panel above the key list gets the form, the
confirmation or the revealed secret, and the key list is refreshed out of band.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any, cast

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.db import connection
from django.http import (
    HttpRequest,
    HttpResponse,
    JsonResponse,
    QueryDict,
)
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from apikeys.client_address import client_ip
from apikeys.credentials.bearer import bearer_token_required
from apikeys.forms import CheckSecretForm, KeyForm, PublicKeyForm, RenameForm, RotateForm
from apikeys.keycloak import desired
from apikeys.keycloak.client import KeycloakFailure
from apikeys.limits import over_limit, rate_limited
from apikeys.models import Api, ApiKey, AuditEntry, KeyStanding, User, WrongState
from apikeys.operations import dormancy, leaks, lifecycle, usage
from apikeys.operations.lifecycle import AlreadySubmitted, KeyNotIssued, Revealed
from apikeys.views.exports import audit_csv


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@login_not_required
@require_GET
def landing(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    return render(request, "apikeys/landing.html", {"apis": Api.objects.open()})


@require_GET
def home(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "apikeys/home.html", _key_list_context(_user(request)))


@sensitive_variables()  # holds the new secret: never in an error page or report
@sensitive_post_parameters("public_key")  # a private key pasted by mistake
@rate_limited("keys")
@never_cache
@require_http_methods(["GET", "POST"])
def new_key(request: HtmxHttpRequest) -> HttpResponse:
    owner = _user(request)
    form = KeyForm(request.POST or None, owner=owner)
    if request.method == "POST" and (
        repeat := owner.api_keys.made_by_request(_request_id(request.POST))
    ):
        return _page(request, "apikeys/already_submitted.html", {"key": repeat})
    if request.method == "POST" and form.is_valid():
        try:
            revealed = lifecycle.issue_key(
                owner,
                form.cleaned_data["api"],
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                justification=form.cleaned_data["justification"],
                lifetime_days=form.cleaned_data["lifetime_days"],
                ip_address=client_ip(request),
                request_id=form.cleaned_data["request_id"],
                credential=form.cleaned_data["credential"],
                public_keys=form.cleaned_data["public_keys"],
                jwks_url=form.cleaned_data["jwks_url"],
            )
        except (KeyNotIssued, WrongState) as error:
            form.add_error(None, str(error))
        except AlreadySubmitted as repeat:
            return _page(request, "apikeys/already_submitted.html", {"key": repeat.key})
        else:
            return _reveal(request, revealed, "created")
    return _page(request, "apikeys/key_form.html", {"form": form})


@require_GET
def key_detail(request: HtmxHttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = get_key_for_user(request, key_id)
    return render(request, "apikeys/key_detail.html", _key_detail_context(key, PublicKeyForm()))


def _key_detail_context(key: ApiKey, public_key_form: PublicKeyForm) -> dict[str, Any]:
    return {
        "key": key,
        "history": key.audit_entries.select_related("api"),
        "public_keys": key.public_keys.all(),
        "public_key_form": public_key_form,
        "leaks": key.leak_reports.all()[:20],
        "usage": usage.of_key(key),
        "dormant_suspension": dormancy.is_dormant_suspension(key),
    } | _endpoints()


@require_GET
def activity(request: HtmxHttpRequest) -> HttpResponseBase:
    """The audit trail of the customer's own keys and account."""
    owner = _user(request)
    entries = AuditEntry.objects.of_owner(owner).select_related("key", "api")
    if request.GET.get("format") == "csv":
        return audit_csv(entries, "my-key-activity.csv", viewer=owner)
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    return render(request, "apikeys/activity.html", {"page": page})


@sensitive_variables()  # holds the new secret: never in an error page or report
@rate_limited("keys")
@never_cache
@require_http_methods(["GET", "POST"])
def rotate_key(request: HtmxHttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = get_key_for_user(request, key_id)
    form = RotateForm(request.POST if request.method == "POST" else None, key=key)
    error = None
    if request.method == "POST" and form.is_valid():
        grace = timedelta(hours=int(form.cleaned_data["grace_hours"]))
        try:
            revealed = lifecycle.rotate_secret(
                key, actor=key.owner, ip_address=client_ip(request), grace=grace
            )
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
def rename_key(request: HtmxHttpRequest, key_id: uuid.UUID) -> HttpResponse:
    """The key's name and description; a recovered key's owner is asked to name it here."""
    key = get_key_for_user(request, key_id)
    form = RenameForm(request.POST if request.method == "POST" else None, key=key)
    if request.method == "POST" and form.is_valid():
        try:
            lifecycle.rename_key(
                key, **form.cleaned_data, actor=key.owner, ip_address=client_ip(request)
            )
        except lifecycle.NameTaken as taken:
            form.add_error("name", str(taken))
        else:
            messages.success(request, "Saved.")
            return redirect("key_detail", key_id=key.pk)
    return render(request, "apikeys/rename.html", {"key": key, "form": form})


@rate_limited("keys")
@require_POST
def reinstate_dormant(request: HtmxHttpRequest, key_id: uuid.UUID) -> HttpResponse:
    """The owner's one click that reinstates a key the dormant-key policy suspended."""
    key = get_key_for_user(request, key_id)
    try:
        dormancy.reinstate_by_owner(key, owner=key.owner, ip_address=client_ip(request))
    except KeycloakFailure as failure:
        notice = f"Nothing was changed: {failure.for_people} Try again in a minute."
        return _back_to_key(request, key, notice)
    except WrongState as failure:
        return _back_to_key(request, key, str(failure))
    messages.success(request, f"“{key.name}” works again.")
    return redirect("key_detail", key.pk)


@rate_limited("keys")
@require_POST
def end_grace(request: HtmxHttpRequest, key_id: uuid.UUID) -> HttpResponse:
    """Stop the previous secret now, before its grace period ends."""
    key = get_key_for_user(request, key_id)
    try:
        lifecycle.end_grace(key, actor=key.owner, ip_address=client_ip(request))
    except KeycloakFailure as failure:
        notice = (
            f"The end is recorded, but Keycloak could not be told yet ({failure.for_people}): "
            "the previous secret may work until it is (the reconcile job finishes it)."
        )
        return _back_to_key(request, key, notice)
    except WrongState as failure:
        return _back_to_key(request, key, str(failure))
    messages.success(request, "The previous secret stopped working. Only the current one works.")
    return redirect("key_detail", key.pk)


@sensitive_variables()  # a private key pasted by mistake, in the form's frames
@sensitive_post_parameters("public_key")
@rate_limited("keys")
@require_POST
def add_public_key(request: HtmxHttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = get_key_for_user(request, key_id)
    form = PublicKeyForm(request.POST)
    if form.is_valid():
        try:
            lifecycle.add_public_keys(
                key, form.cleaned_data["public_key"], actor=key.owner, ip_address=client_ip(request)
            )
        except (KeycloakFailure, WrongState) as failure:
            form.add_error(None, _failure(failure, "Nothing was added."))
        else:
            messages.success(request, "Added. Assertions signed with it work now.")
            return redirect("key_detail", key.pk)
    context = _key_detail_context(key, form)
    return render(request, "apikeys/key_detail.html", context, status=422)


@rate_limited("keys")
@require_POST
def remove_public_key(request: HtmxHttpRequest, key_id: uuid.UUID, kid: str) -> HttpResponse:
    key = get_key_for_user(request, key_id)
    try:
        lifecycle.remove_public_key(key, kid, actor=key.owner, ip_address=client_ip(request))
    except WrongState as failure:
        return _back_to_key(request, key, str(failure))
    except KeycloakFailure as failure:
        notice = (
            f"Removed from the key, but Keycloak could not be told yet ({failure.for_people}) "
            "and may still take assertions signed with it: press “Send the keys to Keycloak "
            "again” in a minute (the reconcile job does it too)."
        )
        return _back_to_key(request, key, notice)
    messages.success(request, f"The public key {kid} was removed: it no longer works.")
    return redirect("key_detail", key.pk)


@rate_limited("keys")
@require_POST
def refresh_public_keys(request: HtmxHttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = get_key_for_user(request, key_id)
    try:
        lifecycle.refresh_public_keys(key, actor=key.owner, ip_address=client_ip(request))
    except (KeycloakFailure, WrongState) as failure:
        return _back_to_key(request, key, _failure(failure, "Try again in a minute."))
    done = "Keycloak reads your JWKS URL again" if key.jwks_url else "Keycloak has the keys"
    messages.success(request, f"{done}: only the keys listed work now.")
    return redirect("key_detail", key.pk)


@sensitive_variables()  # the secret being checked
@sensitive_post_parameters("secret")
@rate_limited("check")
@never_cache
@require_http_methods(["GET", "POST"])
def check_secret(request: HtmxHttpRequest) -> HttpResponse:
    """Is this one of the portal's secrets, and which key's? Nothing is stored or logged."""
    viewer = _user(request)
    form = CheckSecretForm(request.POST or None)
    answer = None
    if request.method == "POST" and form.is_valid():
        answer = leaks.check(form.cleaned_data["secret"], viewer=viewer)
        form = CheckSecretForm()  # never shown back
    return render(request, "apikeys/check_secret.html", {"form": form, "answer": answer})


@rate_limited("keys")
@require_http_methods(["GET", "POST"])
def revoke_key(request: HtmxHttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = get_key_for_user(request, key_id)
    error = None
    if request.method == "POST":
        try:
            lifecycle.revoke_key(key, actor=key.owner, ip_address=client_ip(request))
        except KeycloakFailure as failure:
            notice = f"{failure.for_people} {lifecycle.decision_pending(key, 'revoked')}"
            return _done(request, notice, error=True)
        except WrongState as failure:
            error = str(failure)
        else:
            return _done(request, f"“{key.name}” is revoked. It can no longer get tokens.")
    return _page(request, "apikeys/confirm_revoke.html", {"key": key, "error": error})


@sensitive_variables()  # holds the new secret: never in an error page or report
@rate_limited("keys")
@never_cache
@require_POST
def finish_key(request: HtmxHttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = get_key_for_user(request, key_id)
    try:
        revealed = lifecycle.finish_key(key, actor=key.owner, ip_address=client_ip(request))
    except (KeycloakFailure, WrongState) as failure:
        return _done(request, _unfinished_failure(failure), error=True)
    return _reveal(request, revealed, "created")


@require_POST
def discard_key(request: HtmxHttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = get_key_for_user(request, key_id)
    try:
        lifecycle.discard_key(key, actor=key.owner, ip_address=client_ip(request))
    except (KeycloakFailure, WrongState) as failure:
        return _done(request, _unfinished_failure(failure), error=True)
    return _done(request, f"The unfinished key “{key.name}” is discarded.")


@login_not_required
@require_GET
def partner_docs(request: HttpRequest) -> HttpResponse:
    """How partner applications use a key: public, filled in with this portal's endpoints."""
    return render(request, "apikeys/partner_docs.html", _endpoints() | {"apis": Api.objects.all()})


@login_not_required
@csrf_exempt  # a machine's signed report, not a form
@never_cache
@require_POST
def secret_scanning(request: HttpRequest) -> JsonResponse:
    """Reports of found secrets, in GitHub's secret scanning partner format
    (apikeys/operations/leaks.py)."""
    if over_limit(request, "leaks"):
        return _problem(429, "Too many reports from this address: try again in a minute.")
    body = request.body
    try:
        leaks.verify(
            body,
            request.headers.get("Github-Public-Key-Identifier", ""),
            request.headers.get("Github-Public-Key-Signature", ""),
        )
        found = leaks.parse(body)
    except leaks.BadSignature as refusal:
        return _problem(401, str(refusal))
    except leaks.BadReport as refusal:
        return _problem(400, str(refusal))
    key_id = request.headers["Github-Public-Key-Identifier"]
    verdicts = leaks.handle(found, reporter=f"secret scanning (key {key_id[:12]})")
    return JsonResponse(verdicts, safe=False)


def _problem(status: int, detail: str) -> JsonResponse:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    response = JsonResponse(body | {"detail": detail}, status=status)
    response["Content-Type"] = "application/problem+json"
    if status == 429:
        response["Retry-After"] = "60"
    return response


@never_cache
@require_GET
@bearer_token_required(audience=settings.WHOAMI_AUDIENCE, strict=True)
def whoami(request: HttpRequest) -> JsonResponse:
    """The sample API: who the calling key is, as the token and the portal know it.

    Strict mode checked the key against the API's revocation list (no query); the key's
    name and owner come from the portal's records, remembered for a minute per key.
    """
    client_id: str = request.client_id  # type: ignore[attr-defined]
    key = _key_facts(client_id)
    expires = datetime.fromtimestamp(request.token["exp"], tz=UTC)  # type: ignore[attr-defined]
    return JsonResponse(
        {
            "client_id": client_id,
            "key_name": key.name if key else None,
            "owner": key.owner_name if key else None,
            "api": key.api_name if key else None,
            "token_expires_at": expires.isoformat(),
        }
    )


_KEY_FACTS_SECONDS = 60
_key_facts_seen: dict[str, tuple[float, KeyStanding | None]] = {}


def _key_facts(client_id: str) -> KeyStanding | None:
    now = time.monotonic()
    seen = _key_facts_seen.get(client_id)
    if seen is None or now - seen[0] > _KEY_FACTS_SECONDS:
        if len(_key_facts_seen) > 10_000:
            _key_facts_seen.clear()
        seen = _key_facts_seen[client_id] = (now, ApiKey.objects.standing(client_id))
    return seen[1]


def server_error(request: HttpRequest) -> HttpResponse:
    """500: a problem document for the JSON API, the portal's page for everyone else."""
    if request.path.startswith("/api/v1/"):
        body = {
            "type": "about:blank",
            "title": "Server error",
            "status": 500,
            "detail": "The portal failed to answer. Look at your keys to see where things "
            "stand, then try again in a minute.",
        }
        return JsonResponse(body, status=500, content_type="application/problem+json")
    return render(request, "500.html", status=500)


@login_not_required
@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and the run scripts."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def get_key_for_user(request: HtmxHttpRequest, key_id: uuid.UUID) -> ApiKey:
    """The signed-in user's key, or 404: other people's keys do not exist for them."""
    return get_object_or_404(_user(request).api_keys.select_related("api", "owner"), pk=key_id)


def _request_id(data: QueryDict) -> uuid.UUID | None:
    """The create form's one-time id, if it carries a valid one."""
    try:
        return uuid.UUID(data.get("request_id", ""))
    except ValueError:
        return None


def _user(request: HtmxHttpRequest) -> User:
    return cast(User, request.user)  # LoginRequiredMiddleware let only signed-in users through


def _endpoints() -> dict[str, str]:
    return {
        "token_endpoint": settings.TOKEN_ENDPOINT,
        "whoami_url": f"{settings.PORTAL_URL}{reverse('whoami')}",
        "whoami_audience": settings.WHOAMI_AUDIENCE,
        "portal_url": settings.PORTAL_URL,
        "api_url": f"{settings.PORTAL_URL}/api/v1",
        # The `aud` of a private_key_jwt client assertion: the realm's issuer.
        "assertion_audience": settings.TOKEN_ISSUER,
        "assertion_max_age": str(desired.ASSERTION_MAX_AGE_SECONDS),
    }


def _key_list_context(owner: User) -> dict[str, Any]:
    keys = owner.api_keys.select_related("api")
    live = list(keys.live())
    return {
        "live_keys": live,
        "ended_keys": keys.ended()[:50],
        "quota": settings.MAX_LIVE_KEYS_PER_USER,
        "quota_left": max(settings.MAX_LIVE_KEYS_PER_USER - len(live), 0),
        "now": timezone.now(),
    }


def _page(request: HtmxHttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    """A full page, or for htmx only its panel."""
    name = f"{template}#panel" if request.htmx else template
    return render(request, name, context)


@sensitive_variables()  # holds the new secret: never in an error page or report
def _reveal(request: HtmxHttpRequest, revealed: Revealed, event: str) -> HttpResponse:
    """The one response that shows a secret: never cached, never put in a message."""
    context = {"key": revealed.key, "secret": revealed.secret, "event": event} | _endpoints()
    if request.htmx:
        context |= _key_list_context(revealed.key.owner)
        context["panel_template"] = "apikeys/reveal.html#panel"
        return render(request, "apikeys/htmx_update.html", context)
    return render(request, "apikeys/reveal.html", context)


def _done(request: HtmxHttpRequest, notice: str, *, error: bool = False) -> HttpResponse:
    """After an action without a secret: back to the list with a notice."""
    if request.htmx:
        context = _key_list_context(_user(request)) | {"notice": notice, "notice_error": error}
        return render(request, "apikeys/htmx_update.html", context)
    (messages.error if error else messages.success)(request, notice)
    return redirect("home")


def _back_to_key(request: HtmxHttpRequest, key: ApiKey, notice: str) -> HttpResponse:
    messages.error(request, notice)
    return redirect("key_detail", key.pk)


def _failure(failure: KeycloakFailure | WrongState, then: str) -> str:
    if isinstance(failure, WrongState):
        return str(failure)
    return f"{failure.for_people} {then}"


def _unfinished_failure(failure: KeycloakFailure | WrongState) -> str:
    if isinstance(failure, WrongState):
        return str(failure)
    return f"{failure.for_people} The key is still unfinished."
