from django.urls import path

from apikeys import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("keys/", views.home, name="home"),
    path("keys/new/", views.new_key, name="new_key"),
    path("keys/<uuid:key_id>/", views.key_detail, name="key_detail"),
    path("keys/<uuid:key_id>/rotate/", views.rotate_key, name="rotate_key"),
    path("keys/<uuid:key_id>/revoke/", views.revoke_key, name="revoke_key"),
    path("keys/<uuid:key_id>/finish/", views.finish_key, name="finish_key"),
    path("keys/<uuid:key_id>/discard/", views.discard_key, name="discard_key"),
    path("docs/", views.partner_docs, name="partner_docs"),
    path("api/v1/whoami/", views.whoami, name="whoami"),
    path("health/", views.health, name="health"),
]
