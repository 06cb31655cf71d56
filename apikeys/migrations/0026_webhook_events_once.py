"""Webhook endpoints made with every event kept key.updated three times (three audit
actions send it): each event once, the first of each kept where it was."""

from django.db import migrations


def each_event_once(apps, schema_editor):
    endpoints = apps.get_model("apikeys", "WebhookEndpoint")
    for endpoint in endpoints.objects.only("pk", "events").iterator():
        if not isinstance(endpoint.events, list):
            continue
        once = list(dict.fromkeys(endpoint.events))
        if once != endpoint.events:
            endpoints.objects.filter(pk=endpoint.pk).update(events=once)


class Migration(migrations.Migration):
    dependencies = [("apikeys", "0025_space_indexes_only_with_time")]

    operations = [migrations.RunPython(each_event_once, migrations.RunPython.noop)]
