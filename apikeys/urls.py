"""Every URL of the portal, door by door: the pages, the JSON API, the feeds and health."""

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, include, path
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET
from ninja.openapi.docs import Swagger

from apikeys.api import api
from apikeys.views import (
    account,
    feeds,
    health,
    keycloak_events,
    keys,
    leaks,
    manage,
    manage_issuers,
    manage_teams,
    public,
    registration,
    registration_tokens,
    sample_api,
    step_up,
    teams,
    webhooks,
)


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
def api_docs(request: HttpRequest) -> HttpResponse:
    """The API's OpenAPI description, browsable (Swagger UI, served by the portal)."""
    return Swagger({"persistAuthorization": False}).render_page(request, api)


urlpatterns = [
    path("", public.landing, name="landing"),
    path("keys/", keys.home, name="home"),
    path("account/", account.account_page, name="account"),
    path("keys/new/", keys.new_key, name="new_key"),
    path("keys/activity/", keys.activity, name="activity"),
    path("keys/<uuid:key_id>/", keys.key_detail, name="key_detail"),
    path("keys/<uuid:key_id>/rotate/", keys.rotate_key, name="rotate_key"),
    path("keys/<uuid:key_id>/revoke/", keys.revoke_key, name="revoke_key"),
    path("keys/<uuid:key_id>/rename/", keys.rename_key, name="rename_key"),
    path("keys/<uuid:key_id>/end-grace/", keys.end_grace, name="end_grace"),
    path("keys/<uuid:key_id>/reinstate/", keys.reinstate_dormant, name="reinstate_dormant"),
    path("keys/<uuid:key_id>/public-keys/", keys.add_public_key, name="add_public_key"),
    path(
        "keys/<uuid:key_id>/public-keys/refresh/",
        keys.refresh_public_keys,
        name="refresh_public_keys",
    ),
    path(
        "keys/<uuid:key_id>/public-keys/<str:kid>/remove/",
        keys.remove_public_key,
        name="remove_public_key",
    ),
    path("keys/<uuid:key_id>/move/", keys.move_key, name="move_key"),
    path("keys/<uuid:key_id>/networks/", keys.set_networks, name="set_networks"),
    path("keys/<uuid:key_id>/permissions/", keys.set_permissions, name="set_permissions"),
    path("keys/<uuid:key_id>/dpop/", keys.set_dpop, name="set_dpop"),
    path(
        "keys/<uuid:key_id>/permissions/request/withdraw/",
        keys.withdraw_permission_request,
        name="withdraw_permission_request",
    ),
    path("keys/check/", leaks.check_secret, name="check_secret"),
    path("step-up/continue/", step_up.continue_after_step_up, name="step_up_continue"),
    path("teams/", teams.team_list, name="teams"),
    path("teams/<uuid:team_id>/", teams.team_page, name="team"),
    path("teams/<uuid:team_id>/activity/", teams.team_activity, name="team_activity"),
    path("teams/<uuid:team_id>/rename/", teams.rename, name="team_rename"),
    path(
        "teams/<uuid:team_id>/second-factor/",
        teams.set_second_factor_rule,
        name="team_second_factor",
    ),
    path("teams/<uuid:team_id>/invite/", teams.invite, name="team_invite"),
    path(
        "teams/<uuid:team_id>/invitations/<uuid:invitation_id>/revoke/",
        teams.revoke_invitation,
        name="team_revoke_invitation",
    ),
    path("teams/<uuid:team_id>/members/<int:user_id>/role/", teams.set_role, name="team_role"),
    path("teams/<uuid:team_id>/members/<int:user_id>/remove/", teams.remove, name="team_remove"),
    path("invitations/<str:token>/", teams.invitation, name="invitation"),
    path("webhooks/", webhooks.webhook_list, name="webhook_list"),
    path("webhooks/new/", webhooks.webhook_new, name="webhook_new"),
    path("webhooks/<uuid:endpoint_id>/", webhooks.webhook_detail, name="webhook_detail"),
    path("webhooks/<uuid:endpoint_id>/edit/", webhooks.webhook_edit, name="webhook_edit"),
    path("webhooks/<uuid:endpoint_id>/pause/", webhooks.webhook_pause, name="webhook_pause"),
    path("webhooks/<uuid:endpoint_id>/resume/", webhooks.webhook_resume, name="webhook_resume"),
    path("webhooks/<uuid:endpoint_id>/delete/", webhooks.webhook_delete, name="webhook_delete"),
    path("webhooks/<uuid:endpoint_id>/rotate/", webhooks.webhook_rotate, name="webhook_rotate"),
    path("webhooks/<uuid:endpoint_id>/test/", webhooks.webhook_test, name="webhook_test"),
    path(
        "webhooks/<uuid:endpoint_id>/messages/<str:message_id>/resend/",
        webhooks.webhook_resend,
        name="webhook_resend",
    ),
    path("registration-tokens/", registration_tokens.token_list, name="registration_tokens"),
    path(
        "registration-tokens/new/",
        registration_tokens.token_new,
        name="registration_token_new",
    ),
    path(
        "registration-tokens/<uuid:token_id>/",
        registration_tokens.token_detail,
        name="registration_token",
    ),
    path(
        "registration-tokens/<uuid:token_id>/revoke/",
        registration_tokens.token_revoke,
        name="registration_token_revoke",
    ),
    path("security/secret-scanning/", leaks.secret_scanning, name="secret_scanning"),
    path("keys/<uuid:key_id>/finish/", keys.finish_key, name="finish_key"),
    path("keys/<uuid:key_id>/discard/", keys.discard_key, name="discard_key"),
    path("docs/", public.partner_docs, name="partner_docs"),
    path("register", registration.register, name="software_registration"),
    path("register/<str:client_id>", registration.registered_client, name="registered_client"),
    path("api/v1/whoami/", sample_api.whoami, name="whoami"),
    path("api/v1/sample/orders", sample_api.orders, name="sample_orders"),
    path("api/v1/", include((api_patterns, api_app), namespace=api_namespace)),
    path("docs/api/", api_docs, name="api_docs"),
    path("health/", health.health, name="health"),
    path("health/live", health.live, name="health_live"),
    path("health/ready", health.ready, name="health_ready"),
    path("metrics", health.metrics, name="metrics"),
    path("feeds/revocations", feeds.feed, name="revocation_feed"),
    path("keycloak/events", keycloak_events.keycloak_events_received, name="keycloak_events"),
    # The admin area: portal admins only; 404 for everyone else.
    path("manage/", manage.approvals, name="manage_approvals"),
    path("manage/keys/", manage.key_list, name="manage_keys"),
    path("manage/keys/<uuid:key_id>/", manage.key_detail, name="manage_key"),
    path("manage/keys/<uuid:key_id>/approve/", manage.approve, name="manage_approve"),
    path("manage/keys/<uuid:key_id>/reject/", manage.reject, name="manage_reject"),
    path("manage/keys/<uuid:key_id>/suspend/", manage.suspend, name="manage_suspend"),
    path("manage/keys/<uuid:key_id>/reinstate/", manage.reinstate, name="manage_reinstate"),
    path("manage/keys/<uuid:key_id>/revoke/", manage.revoke, name="manage_revoke"),
    path("manage/keys/<uuid:key_id>/move/", manage_teams.move_key, name="manage_move"),
    path("manage/teams/", manage_teams.team_list, name="manage_teams"),
    path("manage/teams/<uuid:team_id>/", manage_teams.team_detail, name="manage_team"),
    path("manage/teams/<uuid:team_id>/appoint/", manage_teams.appoint, name="manage_appoint"),
    path("manage/teams/<uuid:team_id>/quota/", manage_teams.set_quota, name="manage_quota"),
    path("manage/apis/", manage.api_list, name="manage_apis"),
    path("manage/apis/new/", manage.api_edit, name="manage_api_new"),
    path("manage/apis/<slug:slug>/", manage.api_edit, name="manage_api_edit"),
    path("manage/apis/<slug:slug>/retire/", manage.api_retire, name="manage_api_retire"),
    path(
        "manage/apis/<slug:slug>/permissions/",
        manage.permission_add,
        name="manage_permission_add",
    ),
    path(
        "manage/apis/<slug:slug>/permissions/<str:name>/",
        manage.permission_edit,
        name="manage_permission_edit",
    ),
    path(
        "manage/apis/<slug:slug>/permissions/<str:name>/give/",
        manage.permission_give,
        name="manage_permission_give",
    ),
    path(
        "manage/permission-requests/<int:request_id>/approve/",
        manage.decide_permissions,
        {"approve": True},
        name="manage_grant_permissions",
    ),
    path(
        "manage/permission-requests/<int:request_id>/refuse/",
        manage.decide_permissions,
        {"approve": False},
        name="manage_refuse_permissions",
    ),
    path(
        "manage/registration-tokens/",
        registration_tokens.manage_list,
        name="manage_registration_tokens",
    ),
    path(
        "manage/registration-tokens/<uuid:token_id>/revoke/",
        registration_tokens.manage_revoke,
        name="manage_registration_token_revoke",
    ),
    path("manage/issuers/", manage_issuers.issuer_list, name="manage_issuers"),
    path("manage/issuers/new/", manage_issuers.issuer_add, name="manage_issuer_add"),
    path(
        "manage/issuers/<slug:slug>/remove/",
        manage_issuers.issuer_remove,
        name="manage_issuer_remove",
    ),
    path("manage/audit/", manage.audit, name="manage_audit"),
    path("manage/leaks/", manage.leaks, name="manage_leaks"),
]
