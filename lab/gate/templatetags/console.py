"""Template filters of the auditor console: long machine names that may wrap at their separators."""

from __future__ import annotations

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter
def breakable(value: object) -> SafeString:
    """`maintenance_full_resolution_needs_approval` may wrap after each `_` or `.`, never mid-word."""
    text = escape("" if value is None else str(value))
    return mark_safe(text.replace("_", "_<wbr>").replace(".", ".<wbr>"))  # noqa: S308 - escaped above
