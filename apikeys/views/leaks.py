"""Secrets found exposed: the secret scanners' report endpoint, and the customer's check.

What the portal does about a found secret is in `apikeys/operations/leaks.py`.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from apikeys import assurance
from apikeys.forms import CheckSecretForm
from apikeys.http import PageRequest, problem
from apikeys.limits import over_limit, rate_limited
from apikeys.operations import leaks


@sensitive_variables()  # the secret being checked
@sensitive_post_parameters("secret")
@rate_limited("check")
@never_cache
@require_http_methods(["GET", "POST"])
def check_secret(request: PageRequest) -> HttpResponse:
    """Is this one of the portal's secrets, and which key's? Nothing is stored or logged."""
    form = CheckSecretForm(request.POST or None)
    answer = None
    if request.method == "POST" and form.is_valid():
        as_admin = assurance.of(request).second_factor  # an administrator's reach needs it
        answer = leaks.check(form.cleaned_data["secret"], viewer=request.user, as_admin=as_admin)
        form = CheckSecretForm()  # never shown back
    return render(request, "apikeys/check_secret.html", {"form": form, "answer": answer})


@login_not_required
@csrf_exempt  # a machine's signed report, not a form
@never_cache
@require_POST
def secret_scanning(request: HttpRequest) -> JsonResponse:
    """Reports of found secrets, in GitHub's secret scanning partner format."""
    if over_limit(request, "leaks"):
        return problem(429, "Too many reports from this address: try again in a minute.")
    body = request.body
    try:
        leaks.verify(
            body,
            request.headers.get("Github-Public-Key-Identifier", ""),
            request.headers.get("Github-Public-Key-Signature", ""),
        )
        found = leaks.parse(body)
    except leaks.BadSignature as refusal:
        return problem(401, str(refusal))
    except leaks.BadReport as refusal:
        return problem(400, str(refusal))
    key_id = request.headers["Github-Public-Key-Identifier"]
    verdicts = leaks.handle(found, reporter=f"secret scanning (key {key_id[:12]})")
    return JsonResponse(verdicts, safe=False)
