"""The settings module fails closed in production and passes Django's deployment checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "PORTAL_PROFILE": "production",
    "DJANGO_SECRET_KEY": "x" * 20 + "-production-like-secret-key-with-enough-entropy-0123456789",
    "PORTAL_URL": "https://portal.example.com",
    "DATABASE_URL": "postgres://portal@db.example.com/portal",
    "KEYCLOAK_URL": "https://id.example.com",
    "KEYCLOAK_SERVICE_CLIENT_SECRET": "service-secret",
    "OIDC_CLIENT_SECRET": "login-secret",
    "EMAIL_HOST": "smtp.example.com",
    "EMAIL_PORT": "587",
    "DEFAULT_FROM_EMAIL": "portal@example.com",
    "KEYCLOAK_SMTP_FROM": "portal@example.com",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in PRODUCTION and k != "EMAIL_HOST"}
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
