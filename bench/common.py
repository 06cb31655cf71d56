"""What the benchmarks share: Django set-up, timing, and counting requests on the wire."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()


def timed(operation: Callable[[], Any]) -> float:
    started = time.perf_counter()
    operation()
    return time.perf_counter() - started


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


@contextmanager
def wire_counter(session: Any) -> Iterator[Counter[str]]:
    """Count the HTTP requests a `requests` session sends, by method and path."""
    counts: Counter[str] = Counter()

    def count(response: Any, *args: Any, **kwargs: Any) -> None:
        request = response.request
        path = request.path_url.split("?")[0]
        counts[f"{request.method} {path}"] += 1

    session.hooks["response"].append(count)
    try:
        yield counts
    finally:
        session.hooks["response"].remove(count)


def bench_owner() -> Any:
    """A new portal user for this run, so runs never meet each other's keys."""
    from django.conf import settings

    from apikeys.models import User

    settings.MAX_LIVE_KEYS_PER_USER = 10**6
    settings.MAX_KEYS_MADE_PER_DAY = 10**6
    name = f"bench-{uuid.uuid4().hex[:12]}"
    return User.objects.create(username=name, email=f"{name}@example.com")


def sign_in_as_admin(client: Any, user: Any) -> None:
    """The test client signed in as `user`, an administrator whose sign-in used a second
    factor just now (the admin area needs it: apikeys/assurance.py)."""
    from apikeys.assurance import SESSION_KEY
    from apikeys.keycloak.desired import SECOND_FACTOR_LEVEL

    client.force_login(user)
    session = client.session
    session[SESSION_KEY] = {"acr": SECOND_FACTOR_LEVEL, "auth_time": int(time.time())}
    session.save()


def page_time(
    client: Any, url: str, query: dict[str, str] | None = None, repeats: int = 5
) -> tuple[float, int]:
    """The median server time (ms) of `repeats` GETs of a page through Django's whole request
    cycle, and the SQL queries one took; a page that does not answer 200 ends the run."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            answer = client.get(url, query or {})
            times.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise SystemExit(f"{url} {query or ''}: {answer.status_code}")
    return statistics.median(times) * 1000, len(queries)
