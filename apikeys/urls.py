from django.contrib.auth.decorators import login_not_required
from django.urls import URLPattern, URLResolver, include, path
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET
from ninja.openapi.docs import Swagger

from apikeys import observability
from apikeys.api import api
from apikeys.credentials import revocations
from apikeys.views import keycloak_events as event_views
from apikeys.views import keys as views
from apikeys.views import manage as manage_views
from apikeys.views import webhooks as webhook_views


def _token_authenticated(patterns: list[URLPattern | URLResolver]) -> None:
    """The JSON API authenticates each request by its bearer token, not a session; and as
    some of its answers carry a new secret, no frame under its views is ever shown."""
    for pattern in patterns:
        if isinstance(pattern, URLPattern):
            pattern.callback = sensitive_variables()(pattern.callback)
            pattern.callback.login_required = False  # type: ignore[attr-defined]


api_patterns, api_app, api_namespace = api.urls
_token_authenticated(api_patterns)


@login_not_required
@require_GET
def api_docs(request):  # type: ignore[no-untyped-def]
    """The API's OpenAPI description, browsable (Swagger UI, served by the portal)."""
    return Swagger({"persistAuthorization": False}).render_page(request, api)


urlpatterns = [
    path("", views.landing, name="landing"),
    path("keys/", views.home, name="home"),
    path("keys/new/", views.new_key, name="new_key"),
    path("keys/activity/", views.activity, name="activity"),
    path("keys/<uuid:key_id>/", views.key_detail, name="key_detail"),
    path("keys/<uuid:key_id>/rotate/", views.rotate_key, name="rotate_key"),
    path("keys/<uuid:key_id>/revoke/", views.revoke_key, name="revoke_key"),
    path("keys/<uuid:key_id>/rename/", views.rename_key, name="rename_key"),
    path("keys/<uuid:key_id>/end-grace/", views.end_grace, name="end_grace"),
    path("keys/<uuid:key_id>/reinstate/", views.reinstate_dormant, name="reinstate_dormant"),
    path("keys/<uuid:key_id>/public-keys/", views.add_public_key, name="add_public_key"),
    path(
        "keys/<uuid:key_id>/public-keys/refresh/",
        views.refresh_public_keys,
        name="refresh_public_keys",
    ),
    path(
        "keys/<uuid:key_id>/public-keys/<str:kid>/remove/",
        views.remove_public_key,
        name="remove_public_key",
    ),
    path("keys/check/", views.check_secret, name="check_secret"),
    path("webhooks/", webhook_views.webhook_list, name="webhook_list"),
    path("webhooks/new/", webhook_views.webhook_new, name="webhook_new"),
    path("webhooks/<uuid:endpoint_id>/", webhook_views.webhook_detail, name="webhook_detail"),
    path("webhooks/<uuid:endpoint_id>/edit/", webhook_views.webhook_edit, name="webhook_edit"),
    path("webhooks/<uuid:endpoint_id>/pause/", webhook_views.webhook_pause, name="webhook_pause"),
    path(
        "webhooks/<uuid:endpoint_id>/resume/", webhook_views.webhook_resume, name="webhook_resume"
    ),
    path(
        "webhooks/<uuid:endpoint_id>/delete/", webhook_views.webhook_delete, name="webhook_delete"
    ),
    path(
        "webhooks/<uuid:endpoint_id>/rotate/", webhook_views.webhook_rotate, name="webhook_rotate"
    ),
    path("webhooks/<uuid:endpoint_id>/test/", webhook_views.webhook_test, name="webhook_test"),
    path(
        "webhooks/<uuid:endpoint_id>/messages/<str:message_id>/resend/",
        webhook_views.webhook_resend,
        name="webhook_resend",
    ),
    path("security/secret-scanning/", views.secret_scanning, name="secret_scanning"),
    path("keys/<uuid:key_id>/finish/", views.finish_key, name="finish_key"),
    path("keys/<uuid:key_id>/discard/", views.discard_key, name="discard_key"),
    path("docs/", views.partner_docs, name="partner_docs"),
    path("api/v1/whoami/", views.whoami, name="whoami"),
    path("api/v1/", include((api_patterns, api_app), namespace=api_namespace)),
    path("docs/api/", api_docs, name="api_docs"),
    path("health/", views.health, name="health"),
    path("health/live", observability.live, name="health_live"),
    path("health/ready", observability.ready, name="health_ready"),
    path("metrics", observability.metrics, name="metrics"),
    path("feeds/revocations", revocations.feed, name="revocation_feed"),
    path("keycloak/events", event_views.keycloak_events_received, name="keycloak_events"),
    # The admin area: portal admins only; 404 for everyone else.
    path("manage/", manage_views.approvals, name="manage_approvals"),
    path("manage/keys/", manage_views.key_list, name="manage_keys"),
    path("manage/keys/<uuid:key_id>/", manage_views.key_detail, name="manage_key"),
    path("manage/keys/<uuid:key_id>/approve/", manage_views.approve, name="manage_approve"),
    path("manage/keys/<uuid:key_id>/reject/", manage_views.reject, name="manage_reject"),
    path("manage/keys/<uuid:key_id>/suspend/", manage_views.suspend, name="manage_suspend"),
    path("manage/keys/<uuid:key_id>/reinstate/", manage_views.reinstate, name="manage_reinstate"),
    path("manage/keys/<uuid:key_id>/revoke/", manage_views.revoke, name="manage_revoke"),
    path("manage/apis/", manage_views.api_list, name="manage_apis"),
    path("manage/apis/new/", manage_views.api_edit, name="manage_api_new"),
    path("manage/apis/<slug:slug>/", manage_views.api_edit, name="manage_api_edit"),
    path("manage/apis/<slug:slug>/retire/", manage_views.api_retire, name="manage_api_retire"),
    path("manage/audit/", manage_views.audit, name="manage_audit"),
    path("manage/leaks/", manage_views.leaks, name="manage_leaks"),
]
