from django.urls import path

from apikeys import manage_views, views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("keys/", views.home, name="home"),
    path("keys/new/", views.new_key, name="new_key"),
    path("keys/activity/", views.activity, name="activity"),
    path("keys/<uuid:key_id>/", views.key_detail, name="key_detail"),
    path("keys/<uuid:key_id>/rotate/", views.rotate_key, name="rotate_key"),
    path("keys/<uuid:key_id>/revoke/", views.revoke_key, name="revoke_key"),
    path("keys/<uuid:key_id>/finish/", views.finish_key, name="finish_key"),
    path("keys/<uuid:key_id>/discard/", views.discard_key, name="discard_key"),
    path("docs/", views.partner_docs, name="partner_docs"),
    path("api/v1/whoami/", views.whoami, name="whoami"),
    path("health/", views.health, name="health"),
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
]
