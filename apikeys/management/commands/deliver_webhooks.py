"""Deliver webhook messages, continuously (or once). Safe to run several at once."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apikeys.operations import webhooks


class Command(BaseCommand):
    help = "Deliver due webhook messages, with retries; runs until stopped (SIGTERM, Ctrl-C)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="deliver what is due, then stop")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            run = webhooks.deliver_due()
            self.stdout.write(
                f"{run.delivered} delivered, {run.retrying} to retry, {run.failed} given up"
            )
            return
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True  # the delivery in hand finishes first

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write("Delivering webhooks; SIGTERM or Ctrl-C stops.")
        self.stdout.flush()
        run = webhooks.work(stop=lambda: stopping)
        self.stdout.write(
            f"Stopped: {run.delivered} delivered, {run.retrying} to retry, {run.failed} given up"
        )
