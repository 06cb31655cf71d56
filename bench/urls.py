from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


@login_not_required
def trivial(request: HttpRequest) -> HttpResponse:
    """The baseline: Django's request cycle and middleware, and nothing else."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("bench/trivial/", trivial),
    path("", include("portal.urls")),
]
