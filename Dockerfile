# The portal under gunicorn, static files served by whitenoise.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
RUN PORTAL_PROFILE=production DJANGO_SECRET_KEY=collectstatic-only DATABASE_URL=sqlite:///tmp/x \
    KEYCLOAK_URL=http://unused KEYCLOAK_SERVICE_CLIENT_SECRET=unused OIDC_CLIENT_SECRET=unused \
    EMAIL_HOST=unused DEFAULT_FROM_EMAIL=unused KEYCLOAK_SMTP_FROM=unused \
    python manage.py collectstatic --no-input -v0
RUN useradd --system --uid 10001 portal
USER portal
EXPOSE 8000
CMD ["gunicorn", "portal.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
