"""gunicorn settings for several workers with Prometheus metrics.

See docs/operators.md, "Operating it".
"""

from __future__ import annotations

from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    """A worker that ends leaves its metric files; prometheus_client stops counting them."""
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
