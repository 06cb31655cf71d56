"""The portal's settings, plus a trivial view to measure against (bench/urls.py)."""

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
