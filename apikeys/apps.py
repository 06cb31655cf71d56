"""The app's wiring: the metrics collector is registered once per process."""

from django.apps import AppConfig


class ApikeysConfig(AppConfig):
    name = "apikeys"
    verbose_name = "API keys"

    def ready(self) -> None:
        from apikeys.views import health

        health.register()
