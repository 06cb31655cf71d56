"""A key's usage: daily token grants and failed attempts (KeyUsage rows, from Keycloak's
client-login events), as the key's page draws them and the API returns them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.utils import timezone

from apikeys.models import ACTIONS_ALLOWED, ApiKey, Credential, KeyUsage

DAYS = 30
# The chart's drawing area, in SVG user units.
BAR_WIDTH = 8
BAR_GAP = 2
HEIGHT = 60


@dataclass(frozen=True)
class Day:
    day: date
    grants: int
    wrong_credentials: int
    refused: int
    outside_networks: int = 0
    x: int = 0
    grants_height: float = 0
    failures_height: float = 0

    @property
    def failures(self) -> int:
        return self.wrong_credentials + self.refused + self.outside_networks

    @property
    def grants_y(self) -> float:
        return HEIGHT - self.grants_height - self.failures_height

    @property
    def failures_y(self) -> float:
        return HEIGHT - self.failures_height


@dataclass(frozen=True)
class Usage:
    days: list[Day]
    warning: str | None
    width: int = DAYS * (BAR_WIDTH + BAR_GAP)
    height: int = HEIGHT
    bar_width: int = BAR_WIDTH

    @property
    def grants(self) -> int:
        return sum(d.grants for d in self.days)

    @property
    def failures(self) -> int:
        return sum(d.failures for d in self.days)

    @property
    def peak(self) -> int:
        return max((d.grants + d.failures for d in self.days), default=0)


def of_key(key: ApiKey, *, today: date | None = None, days: int = DAYS) -> Usage:
    """The key's last `days` days, oldest first (days with no row count zero)."""
    today = today or timezone.now().date()
    first = today - timedelta(days=days - 1)
    rows = {
        row.day: row for row in KeyUsage.objects.filter(key=key, day__gte=first, day__lte=today)
    }
    counts = []
    for n in range(days):
        day = first + timedelta(days=n)
        row = rows.get(day)
        counts.append(
            Day(day, row.grants, row.wrong_credentials, row.refused, row.outside_networks)
            if row
            else Day(day, 0, 0, 0)
        )
    peak = max((d.grants + d.failures for d in counts), default=0) or 1
    drawn = [
        Day(
            d.day,
            d.grants,
            d.wrong_credentials,
            d.refused,
            d.outside_networks,
            x=n * (BAR_WIDTH + BAR_GAP),
            grants_height=round(HEIGHT * d.grants / peak, 1),
            failures_height=round(HEIGHT * d.failures / peak, 1),
        )
        for n, d in enumerate(counts)
    ]
    return Usage(drawn, warning(key, drawn[-2:]))


def warning(key: ApiKey, recent: list[Day]) -> str | None:
    """What the owner should hear about the failed attempts of today and yesterday (UTC)."""
    wrong = sum(d.wrong_credentials for d in recent)
    refused = sum(d.refused for d in recent)
    outside = sum(d.outside_networks for d in recent)
    if key.status not in ACTIONS_ALLOWED["rotate"] and (tried := wrong + refused + outside):
        # Ended (revoked, expired, rejected) or being ended: nothing to rotate, nothing works.
        attempts = "attempt" if tried == 1 else "attempts"
        return (
            f"{tried} {attempts} to get a token since yesterday (UTC), refused: the key is "
            f"{key.get_status_display().lower()}. Something still uses it; it gets no token."
        )
    if outside:
        attempts = "attempt" if outside == 1 else "attempts"
        return (
            f"{outside} {attempts} to get a token since yesterday (UTC) from outside the key's "
            "allowed networks, refused by Keycloak. If it is one of your applications, add its "
            "network; if not, someone holds the secret: rotate it."
        )
    if wrong:
        what = {Credential.SECRET: "secret", Credential.WORKLOAD: "workload token"}.get(
            Credential(key.credential), "signature"
        )
        attempts = "failed attempt" if wrong == 1 else "failed attempts"
        return (
            f"{wrong} {attempts} with a wrong {what} since yesterday (UTC): someone may be "
            f"using an old or leaked {what}. If it is not one of your applications, rotate it."
        )
    if refused and key.status != ApiKey.Status.ACTIVE:
        attempts = "attempt" if refused == 1 else "attempts"
        return (
            f"{refused} {attempts} to get a token since yesterday (UTC), refused because the key "
            f"is {key.get_status_display().lower()}: something still uses it."
        )
    return None
