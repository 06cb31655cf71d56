"""A request id on every log line: from the request (or a job run) to its Keycloak calls.

The middleware takes a well-formed `X-Request-ID` from the caller (a load balancer's, so one
id follows the request through every tier) or makes one, answers with it, and keeps it in a
context variable; `RequestIdFilter` puts it on each log record, so the lines of the Keycloak
calls a request makes (`apikeys/keycloak/client.py`) carry it too. Jobs set one per run.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
HEADER = "X-Request-ID"
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{8,64}")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get(HEADER, "")
        request_id = given if _WELL_FORMED.fullmatch(given) else uuid.uuid4().hex
        # Kept after the response, not reset: Django logs a failed request's line ("Not
        # Found: …") once the middleware has returned. The thread's next request sets its own.
        REQUEST_ID.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


def start_run(name: str) -> str:
    """A request id for a job's run (`job-<name>-<random>`), kept until the process ends."""
    run_id = f"job-{name}-{uuid.uuid4().hex[:12]}"
    REQUEST_ID.set(run_id)
    return run_id


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True
