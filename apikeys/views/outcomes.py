"""How a page answers an action on a key: what happened, as a message, then back.

The operations refuse with two exceptions: `WrongState` (the key's state does not allow it;
its message is for people) and `KeycloakFailure` (Keycloak failed; what that means depends
on the action, so each caller says it). The JSON API answers the same two in one place
(apikeys/api/__init__.py).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme

from apikeys.access import NotAllowed
from apikeys.assurance import FactorUnknown
from apikeys.keycloak.client import KeycloakFailure
from apikeys.models import WrongState
from apikeys.operations.teams import TeamRefused


def act_on_key(
    request: HttpRequest,
    action: Callable[[], object],
    *,
    done: str | Callable[[], str],
    unreached: Callable[[str], str],
    then: Callable[[], HttpResponse],
) -> HttpResponse:
    """Run `action`; say `done`, or why it was refused, or `unreached(why Keycloak failed)`."""
    try:
        action()
    except KeycloakFailure as failure:
        messages.error(request, unreached(failure.for_people))
    except WrongState as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, done() if callable(done) else done)
    return then()


def refusal(failure: KeycloakFailure | WrongState, then: str) -> str:
    """Why an action was refused, in words for the page; `then` follows a Keycloak failure."""
    if isinstance(failure, WrongState):
        return str(failure)
    return f"{failure.for_people} {then}"


class RefusalMiddleware:
    """A page's act that the team rules refuse (`NotAllowed`: a viewer rotating; `TeamRefused`:
    the last owner leaving), or that waits for Keycloak to say whether the person has a second
    factor (`FactorUnknown`): a message on the page the person came from, not an error page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, error: Exception) -> HttpResponse | None:
        refusals = NotAllowed | TeamRefused | FactorUnknown
        if request.path.startswith("/api/") or not isinstance(error, refusals):
            return None
        messages.error(request, str(error))
        back = request.headers.get("Referer", "")
        safe = url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
        target = urlsplit(back).path if safe and back else "/keys/"
        if getattr(request, "htmx", False):
            response = HttpResponse(status=204)
            response["HX-Redirect"] = target
            return response
        return HttpResponseRedirect(target)
