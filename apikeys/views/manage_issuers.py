"""The admin area's trusted workload issuers (/manage/issuers/): the platforms (a Kubernetes
cluster, a CI system) whose tokens workload identity keys authenticate with.

Admins only (`admin_required`, 404 for everyone else). Trusting and removing an issuer is
`apikeys/operations/workload_issuers.py`: its record and its identity provider in Keycloak
go together, audited; an issuer with live keys cannot be removed.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from apikeys.client_address import client_ip
from apikeys.forms import IssuerForm
from apikeys.http import PageRequest
from apikeys.keycloak.client import KeycloakFailure
from apikeys.models import LIVE_STATUSES, WorkloadIssuer
from apikeys.operations import workload_issuers
from apikeys.operations.workload_issuers import IssuerRefused
from apikeys.views.manage import admin_required


@admin_required
@require_GET
def issuer_list(request: PageRequest) -> HttpResponse:
    return render(request, "manage/issuers.html", _context(IssuerForm()))


@admin_required
@require_POST
def issuer_add(request: PageRequest) -> HttpResponse:
    form = IssuerForm(request.POST)
    if form.is_valid():
        try:
            issuer = workload_issuers.trust_issuer(
                form.order(), actor=request.user, ip_address=client_ip(request)
            )
        except IssuerRefused as refused:
            form.add_error(None, str(refused))
        except KeycloakFailure as failure:
            form.add_error(None, f"{failure.for_people} Nothing was changed.")
        else:
            messages.success(
                request,
                f"{issuer.name} is trusted: customers can make workload identity keys for its "
                "workloads now.",
            )
            return redirect("manage_issuers")
    return render(request, "manage/issuers.html", _context(form), status=422)


@admin_required
@require_POST
def issuer_remove(request: PageRequest, slug: str) -> HttpResponse:
    issuer = get_object_or_404(WorkloadIssuer, slug=slug)
    try:
        workload_issuers.distrust_issuer(issuer, actor=request.user, ip_address=client_ip(request))
    except IssuerRefused as refused:
        messages.error(request, str(refused))
    except KeycloakFailure as failure:
        messages.error(request, f"{failure.for_people} {issuer.name} is still trusted.")
    else:
        messages.success(request, f"{issuer.name} is no longer trusted. Keycloak forgot it too.")
    return redirect("manage_issuers")


def _context(form: IssuerForm) -> dict[str, Any]:
    issuers = WorkloadIssuer.objects.annotate(
        live_keys=Count("keys", filter=Q(keys__status__in=LIVE_STATUSES)),
        all_keys=Count("keys"),
    )
    return {"issuers": issuers, "form": form}
