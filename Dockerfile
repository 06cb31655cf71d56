# The portal under gunicorn, static files served by whitenoise.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
# Static files are collected with throwaway settings: production refuses short or
# placeholder secrets, so random ones stand in (nothing connects to anything here).
RUN S=$(python -c "import secrets; print(secrets.token_urlsafe(50))") && \
    PORTAL_PROFILE=production DJANGO_SECRET_KEY=$S SECRET_FINGERPRINT_KEY=$S WEBHOOK_ENCRYPTION_KEY=$S \
    KEYCLOAK_SERVICE_CLIENT_SECRET=$S OIDC_CLIENT_SECRET=$S DATABASE_URL=sqlite:///tmp/x \
    PORTAL_INSTANCE_ID=unused PORTAL_URL=http://unused KEYCLOAK_URL=http://unused RATELIMIT_CACHE_URL=redis://unused:6379/0 \
    EMAIL_HOST=unused EMAIL_PORT=25 DEFAULT_FROM_EMAIL=unused KEYCLOAK_SMTP_FROM=unused \
    python manage.py collectstatic --no-input -v0
RUN useradd --system --uid 10001 portal
USER portal
EXPOSE 8000
CMD ["gunicorn", "portal.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
