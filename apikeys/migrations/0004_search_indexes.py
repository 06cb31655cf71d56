"""Indexes for the admin key search on PostgreSQL: trigram on key names (for `icontains`)."""

from django.db import migrations

TRIGRAM = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS apikey_name_trgm ON apikeys_apikey USING gin (UPPER(name) gin_trgm_ops);
"""
DROP_TRIGRAM = "DROP INDEX IF EXISTS apikey_name_trgm;"


def add_trigram_index(apps, schema_editor):
    # Django's icontains is UPPER(name) LIKE UPPER(%s) on PostgreSQL, so the index is on UPPER.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGRAM)


def drop_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGRAM)


class Migration(migrations.Migration):
    dependencies = [("apikeys", "0003_admin_area")]

    operations = [migrations.RunPython(add_trigram_index, drop_trigram_index)]
