"""Playwright with Debian's Chromium (a test tool's own browser download cannot work here)."""

from __future__ import annotations

from django.conf import settings
from playwright.sync_api import Page

from tests.accounts import PASSWORD

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this
# machine's closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/keys/")
    page.fill("#username", email)
    page.fill("#password", password)
    page.click("#kc-login")
    page.wait_for_url("**/keys/")


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{settings.PORTAL_URL}/")
