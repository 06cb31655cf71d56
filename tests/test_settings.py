"""The settings module fails closed in production and passes Django's deployment checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "PORTAL_PROFILE": "production",
    "DJANGO_SECRET_KEY": "x" * 20 + "-production-like-secret-key-with-enough-entropy-0123456789",
    "SECRET_FINGERPRINT_KEY": "Qm4tZ8wK2vN7pR1xH5cJ9bL3fD6sG0aYe",
    "WEBHOOK_ENCRYPTION_KEY": "Wz3rT6yU9iO2pA5sD8fG1hJ4kL7zX0cVb",
    "PORTAL_URL": "https://portal.example.com",
    "PORTAL_INSTANCE_ID": "production",
    "DATABASE_URL": "postgres://portal:Gq7cR2vT9kLmN4pX@db.example.com/portal",
    "KEYCLOAK_URL": "https://id.example.com",
    "KEYCLOAK_SERVICE_CLIENT_SECRET": "Vh3kT9qZ2mR7wP4xN8cL6bJ5fD1sG0aY",
    "OIDC_CLIENT_SECRET": "Lk8dF3hS9pQ2wE7rT5yU1iO4aZ6xC0vB",
    "RATELIMIT_CACHE_URL": "redis://cache.example.com:6379/0",
    "EMAIL_HOST": "smtp.example.com",
    "EMAIL_PORT": "587",
    "DEFAULT_FROM_EMAIL": "portal@example.com",
    "KEYCLOAK_SMTP_FROM": "portal@example.com",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in PRODUCTION and k not in {"EMAIL_HOST", "KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_production_passes_the_deployment_checks() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key() -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "DJANGO_SECRET_KEY"}
    result = manage("check", **env)
    assert result.returncode != 0
    assert "Set DJANGO_SECRET_KEY" in result.stderr


def test_production_has_no_default_for_keycloak_credentials() -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "KEYCLOAK_SERVICE_CLIENT_SECRET"}
    result = manage("check", **env)
    assert "Set KEYCLOAK_SERVICE_CLIENT_SECRET" in result.stderr


def test_secrets_can_come_from_mounted_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret_key"
    secret_file.write_text(PRODUCTION["DJANGO_SECRET_KEY"] + "\n")
    env = {k: v for k, v in PRODUCTION.items() if k != "DJANGO_SECRET_KEY"}
    result = manage("check", DJANGO_SECRET_KEY_FILE=str(secret_file), **env)
    assert result.returncode == 0, result.stderr


def test_an_unknown_profile_is_refused() -> None:
    result = manage("check", PORTAL_PROFILE="staging")
    assert "PORTAL_PROFILE must be production, dev or test" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DJANGO_SECRET_KEY", "change-me"),
        ("KEYCLOAK_SERVICE_CLIENT_SECRET", "change-me"),
        ("OIDC_CLIENT_SECRET", "change-me"),
        ("KEYCLOAK_SERVICE_CLIENT_SECRET", "too-short-1234"),
        ("DATABASE_URL", "postgres://portal:change-me@db.example.com:5432/portal"),
    ],
)
def test_production_refuses_placeholder_and_short_secrets(name: str, value: str) -> None:
    result = manage("check", **(PRODUCTION | {name: value}))

    assert result.returncode != 0
    shown = "The password in DATABASE_URL" if name == "DATABASE_URL" else name
    assert shown in result.stderr
    assert "secrets.token_urlsafe" in result.stderr  # and how to make a good one
    assert value not in result.stderr  # the value itself is never echoed


def test_bootstrap_refuses_a_weak_keycloak_admin_password_in_production() -> None:
    env = PRODUCTION | {"KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD": "change-me"}
    result = manage("bootstrap_keycloak", "--admin-username", "admin", **env)

    assert result.returncode != 0
    assert "The Keycloak admin's password is a placeholder" in result.stderr


@pytest.mark.parametrize(
    "env",
    [{"PORTAL_URL": "http://portal.example.com"}, {"DJANGO_ALLOWED_HOSTS": "*"}],
    ids=["public-url", "any-host"],
)
def test_the_dev_profile_refuses_anything_but_loopback(env: dict[str, str]) -> None:
    result = manage("check", PORTAL_PROFILE="dev", **env)

    assert result.returncode != 0
    assert "serves loopback only" in result.stderr


@pytest.mark.django_db
def test_the_test_profile_answers_loopback_clients_only(client: Any) -> None:
    assert client.get("/", REMOTE_ADDR="127.0.0.1").status_code == 200
    refused = client.get("/", REMOTE_ADDR="192.0.2.10")
    assert refused.status_code == 403
    assert "answers this machine only" in refused.content.decode()


def test_production_lets_no_key_name_a_jwks_url_for_keycloak_to_fetch_unless_allowed() -> None:
    show = "from django.conf import settings; print(settings.JWKS_URLS_ALLOWED)"
    assert manage("shell", "-c", show, **PRODUCTION).stdout.splitlines()[-1] == "False"
    allowed = manage("shell", "-c", show, **PRODUCTION, JWKS_URLS_ALLOWED="true")
    assert allowed.stdout.splitlines()[-1] == "True"
