"""Playwright with Debian's Chromium (a test tool's own browser download cannot work here)."""

from __future__ import annotations

import re

from django.conf import settings
from playwright.sync_api import Page

from tests import second_factor
from tests.accounts import PASSWORD
from tests.mail import plain_text, wait_for_message

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


def sign_in(page: Page, email: str, password: str = PASSWORD, *, url: str = "/keys/") -> None:
    """Sign in at Keycloak's pages from `url`: the password, then the enrolment of an
    authenticator app or a one-time password when Keycloak asks (administrators)."""
    page.goto(url)
    page.fill("#username", email)
    page.fill("#password", password)
    page.click("#kc-login")
    answer_second_factor(page, email)
    page.wait_for_url(f"**{url}")


def answer_second_factor(page: Page, email: str) -> None:
    """Enrol TOTP (reading the key Keycloak shows) or type a code, if Keycloak asks for it."""
    page.wait_for_load_state()
    portal = settings.PORTAL_URL
    while not page.url.startswith(portal):
        if page.locator("#totpSecret").count():  # "Mobile Authenticator Setup"
            second_factor.remember_raw(email, page.locator("#totpSecret").input_value())
            page.fill("#totp", second_factor.code(email))
            page.fill("#userLabel", "phone")
            page.click("#saveTOTPBtn")
        elif page.locator("#otp").count():
            page.fill("#otp", second_factor.code(email))
            page.click("#kc-login")
        else:
            return
        page.wait_for_load_state()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{settings.PORTAL_URL}/")


def start_registration(page: Page, email: str, first_name: str, last_name: str) -> None:
    """Fill Keycloak's registration form; it mails a verification link before any password."""
    page.goto("/")
    page.get_by_role("link", name="Create account").first.click()
    page.fill("#email", email)
    page.fill("#firstName", first_name)
    page.fill("#lastName", last_name)
    page.locator("[type=submit]").click()


def verification_link(email: str) -> str:
    """The action link in Keycloak's verification mail to `email`, from the mail sink."""
    text = plain_text(wait_for_message(email))
    link = re.search(r"https?://\S+/login-actions/action-token\?\S+", text)
    assert link is not None, text
    return link.group(0)


def wrapped_dates(page: Page) -> list[str]:
    """The dates on the page broken over two lines (at a hyphen): none on a page that reads
    well at any width."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => [...document.querySelectorAll('time')]
            .filter(e => new Set([...e.getClientRects()].map(r => Math.round(r.top))).size > 1)
            .map(e => e.textContent)"""
    )


def sticking_out(page: Page) -> list[str]:
    """What reaches past the window's right edge, so that the page scrolls sideways (a table
    may be wider, inside its own scrolling box): nothing on a page that reads well."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => {
            const edge = document.documentElement.clientWidth + 1;
            const out = [...document.querySelectorAll('body *')].filter(e =>
                e.getBoundingClientRect().right > edge && !e.parentElement.closest('.scroll, pre'));
            if (document.documentElement.scrollWidth > edge) out.push(document.documentElement);
            return out.map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''));
        }"""
    )


def broken_words(page: Page) -> list[str]:
    """Words and dates of the page's text broken over two lines (a break at a word's hyphen
    or slash is not one, at a date's it is; ids and secrets in `code` may break anywhere):
    none on a page that reads well at any width."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => {
            const broken = [];
            const main = document.querySelector('main');
            const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
            const words = /\\d{4}-\\d{2}-\\d{2}|[\\p{L}\\p{N}:.@]+/gu;  // a date, or a word
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                if (node.parentElement.closest('code, pre, .visually-hidden')) continue;
                for (const match of node.textContent.matchAll(words)) {
                    const range = document.createRange();
                    range.setStart(node, match.index);
                    range.setEnd(node, match.index + match[0].length);
                    const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
                    if (lines.size > 1) broken.push(match[0]);
                }
            }
            return broken;
        }"""
    )


def signing_out_alone(page: Page) -> bool:
    """Whether "Sign out" sits on a line of the header without the name it signs out."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => {
            const who = document.querySelector('.top .who').getBoundingClientRect();
            const out = document.querySelector('.top nav form').getBoundingClientRect();
            return Math.abs(who.top - out.top) > who.height / 2;
        }"""
    )


def overlapping_header_items(page: Page) -> list[tuple[str, str]]:
    """The pairs of the page header's items (the name, each link, who is signed in) drawn
    on one line closer than 8 pixels, or over each other: none on a page that reads well."""
    boxes = page.evaluate(
        """() => [...document.querySelectorAll(
            '.top > .brand, .top nav > :not(.session), .top nav .session > *'
        )].map(e => {
            const r = e.getBoundingClientRect();
            return [e.textContent.trim(), r.left, r.right, r.top, r.bottom];
        })"""
    )
    return [
        (a[0], b[0])
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a[1] < b[2] + 8 and b[1] < a[2] + 8 and a[3] < b[4] and b[3] < a[4]
    ]
