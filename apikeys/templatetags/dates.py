"""Dates on pages, kept whole: a line never breaks at a date's hyphens (`time` and `.date`
never wrap: static/portal.css). Loaded in every template (settings.TEMPLATES' builtins)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from django import template
from django.template.defaultfilters import stringfilter
from django.utils.formats import date_format
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# A date as the portal writes them in text (an audit entry's reason), with its time if any.
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}(?::\d{2})?)?\b")


@register.filter(expects_localtime=True, needs_autoescape=True)
def when(value: Any, format: str = "Y-m-d H:i", autoescape: bool = True) -> str:
    """`value` in Django's date `format`, as the `date` filter shows it, in a `time` element
    (plain text where nothing is escaped: a mail); empty for what is not a date."""
    if not isinstance(value, date):
        return ""
    shown = date_format(value, format)
    if not autoescape:
        return shown
    moment = value.isoformat(timespec="seconds") if isinstance(value, datetime) else value
    return format_html('<time datetime="{}">{}</time>', moment, shown)


@register.filter(needs_autoescape=True)
@stringfilter
def dates_whole(text: str, autoescape: bool = True) -> SafeString | str:
    """Free text (an audit entry's reason) with the dates in it kept whole."""
    if not autoescape:
        return text
    escaped = str(conditional_escape(text))
    # Safe: the text is escaped, and what is added holds only digits, hyphens and colons.
    return mark_safe(DATE.sub(lambda found: f'<span class="date">{found[0]}</span>', escaped))  # noqa: S308
