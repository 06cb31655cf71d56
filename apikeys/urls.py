from django.urls import path

from apikeys import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("keys/", views.home, name="home"),
    path("health/", views.health, name="health"),
]
