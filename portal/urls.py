"""URL configuration: the app's pages, and mozilla-django-oidc's views made public."""

from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
    OIDCLogoutView,
)

from apikeys.views.signin import RegistrationRequestView
from apikeys.views.step_up import StepUpRequestView

# Everything requires sign-in (LoginRequiredMiddleware) except the views that perform it.
oidc_patterns = [
    path(
        "callback/",
        login_not_required(OIDCAuthenticationCallbackView.as_view()),
        name="oidc_authentication_callback",
    ),
    path(
        "authenticate/",
        login_not_required(OIDCAuthenticationRequestView.as_view()),
        name="oidc_authentication_init",
    ),
    path("register/", login_not_required(RegistrationRequestView.as_view()), name="register"),
    path("step-up/", StepUpRequestView.as_view(), name="oidc_step_up"),  # signed in already
    path("logout/", login_not_required(OIDCLogoutView.as_view()), name="oidc_logout"),
]

handler500 = "apikeys.views.public.server_error"

urlpatterns = [
    path("oidc/", include(oidc_patterns)),
    path("", include("apikeys.urls")),
]
