"""Step-up on the pages: back through Keycloak for a second factor, then on with the act.

An act that `apikeys/assurance.py` refuses (`StepUpRequired`) sends the person to Keycloak
with `acr_values=second-factor` (and `max_age` when the factor must be recent), and back to
where they were. A refused POST (rotate, revoke...) is kept in the session, never its CSRF
token; on return the person sees what they asked for and a button that does it: nothing
happens that they did not press for after the step-up. If they come back without the level
because they set up a factor on the way (Keycloak counts that as level 1), they are sent once
more, to use it; without one, they see why and where to add one, not a loop.
Every return from a step-up is audited with the level Keycloak said was reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseClientRedirect
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

from apikeys.assurance import StepUpRequired, record_step_up
from apikeys.keycloak.client import KeycloakFailure
from apikeys.keycloak.desired import SECOND_FACTOR_LEVEL
from apikeys.models import User
from apikeys.operations.identity import has_second_factor

PENDING = "step_up_pending"  # session: a step-up was started (max_age asked for)
RETURNED_AT = "step_up_returned_at"  # session: when the last one came back
RESUME = "step_up_resume"  # session: the POST that asked for it
RETRIED = "step_up_retried"  # session: sent back once already, just after an enrolment
JUST_BACK_SECONDS = 60  # still short after coming back this recently: explain, don't loop


class StepUpRequestView(OIDCAuthenticationRequestView):  # type: ignore[misc]
    """Sign-in again asking for level 2, and a sign-in within `max_age` seconds if given."""

    def get(self, request: HttpRequest) -> HttpResponse:
        max_age = request.GET.get("max_age", "")
        wanted = int(max_age) if max_age.isdigit() else None
        if wanted is not None:
            wanted = min(wanted, settings.STEP_UP_WINDOW_SECONDS)
        request.session[PENDING] = {"max_age": wanted, "at": time.time()}
        self.extra = {"acr_values": SECOND_FACTOR_LEVEL}
        if wanted is not None:
            self.extra["max_age"] = str(wanted)
        response: HttpResponse = super().get(request)
        return response

    def get_extra_params(self, request: HttpRequest) -> dict[str, str]:
        return self.extra


def record(request: HttpRequest, user: User, claims: dict[str, Any]) -> None:
    """Audit a sign-in that answered a step-up, with the level Keycloak said it reached."""
    pending = request.session.pop(PENDING, None)
    if not isinstance(pending, dict) or time.time() - float(pending.get("at", 0)) > 3600:
        return  # an ordinary sign-in (a step-up abandoned long ago is not this one)
    request.session[RETURNED_AT] = time.time()
    level = str(claims.get("acr") or "unknown")
    if level == SECOND_FACTOR_LEVEL:
        request.session.pop(RETRIED, None)
        request.session.cycle_key()  # a cookie taken before the step-up is not promoted
        reason = f"Signed in again for a sensitive act, with a second factor (level: {level})."
    else:  # e.g. a second factor set up during this sign-in: it counts from the next one
        reason = (
            f"Signed in again for a sensitive act, without a second factor (level: {level}): "
            "the act still waits for one."
        )
    record_step_up(request, user, reason)


def step_up_url(needed: StepUpRequired, then: str) -> str:
    query = {"next": then} | ({"max_age": str(needed.max_age)} if needed.max_age else {})
    return f"{reverse('oidc_step_up')}?{urlencode(query)}"


class StepUpMiddleware:
    """A page's act refused with `StepUpRequired`: off to Keycloak (or, just back from there
    still short of it, a page that says why). The API answers its own (apikeys/api/)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, error: Exception) -> HttpResponse | None:
        if request.path.startswith("/api/") or not isinstance(error, StepUpRequired):
            return None
        if time.time() - float(request.session.get(RETURNED_AT, 0)) < JUST_BACK_SECONDS:
            request.session.pop(RETURNED_AT, None)  # "try again" starts a new step-up
            if request.session.pop(RETRIED, False) or not _has_factor_now(request):
                return _still_short(request, error)
            # They set one up on the way (Keycloak says setting up is not using it): once
            # more to Keycloak, which now asks for it.
            request.session[RETRIED] = True
        then = request.get_full_path()
        if request.method == "POST":
            fields = [(k, v) for k, vs in request.POST.lists() for v in vs]
            request.session[RESUME] = {
                "path": request.get_full_path(),  # with its query: a team's (`?team=`) act
                "fields": [(k, v) for k, v in fields if k != "csrfmiddlewaretoken"],
                "what": error.message,
            }
            then = reverse("step_up_continue")
        url = step_up_url(error, then)
        if getattr(request, "htmx", False):
            return HttpResponseClientRedirect(url)
        return HttpResponseRedirect(url)


def _has_factor_now(request: HttpRequest) -> bool:
    try:
        return has_second_factor(request.user)  # type: ignore[arg-type]
    except KeycloakFailure:
        return False


def _still_short(request: HttpRequest, error: StepUpRequired) -> HttpResponse:
    if getattr(request, "htmx", False):  # a 403 is not swapped into the panel: say it on a page
        messages.error(
            request,
            f"{error.message} Your sign-in did not use one: add a one-time password or a "
            f"passkey under Signing in in your Keycloak account ({settings.KEYCLOAK_ACCOUNT_URL}).",
        )
        back = request.htmx.current_url_abs_path or reverse("home")  # type: ignore[attr-defined]
        return HttpResponseClientRedirect(back)
    context = {
        "message": error.message,
        "retry": step_up_url(error, request.get_full_path() if request.method == "GET" else "/"),
        "account_url": settings.KEYCLOAK_ACCOUNT_URL,
    }
    return render(request, "apikeys/step_up_needed.html", context, status=403)


@require_GET
def continue_after_step_up(request: HttpRequest) -> HttpResponse:
    """The act the step-up was for, to confirm with one press (a POST of its own fields)."""
    resume = request.session.pop(RESUME, None)
    path = str(resume.get("path", "")) if isinstance(resume, dict) else ""
    if not path.startswith("/") or path.startswith("//"):
        return HttpResponseRedirect(reverse("home"))
    return render(request, "apikeys/step_up_continue.html", {"resume": resume})
