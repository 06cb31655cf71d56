"""Dates on pages, kept whole: a line never breaks at a date's hyphens (`time` and `.date`
never wrap: static/portal.css). Loaded in every template (settings.TEMPLATES' builtins)."""

from __future__ import annotations

import re
from datetime import date

from django import template
from django.utils.formats import date_format
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# A date as the portal writes them in text (an audit entry's reason), with its time if any.
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}(?::\d{2})?)?\b")


@register.filter(expects_localtime=True)
def when(value: date | None, format: str = "Y-m-d H:i") -> str:
    """`value` in Django's date `format`, in a `time` element."""
    if value is None:
        return ""
    shown = date_format(value, format)
    return format_html('<time datetime="{}">{}</time>', value.isoformat(), shown)


@register.filter(needs_autoescape=True)
def dates_whole(text: str, autoescape: bool = True) -> SafeString:
    """Free text (an audit entry's reason) with the dates in it kept whole."""
    escaped = str(conditional_escape(text)) if autoescape else text
    # Safe: the text is escaped, and what is added holds only digits, hyphens and colons.
    return mark_safe(DATE.sub(lambda found: f'<span class="date">{found[0]}</span>', escaped))  # noqa: S308
