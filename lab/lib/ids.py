"""Checks of identifiers that come from outside (URLs, query strings) before they reach a query."""

from __future__ import annotations

import uuid


def is_uuid(value: str) -> bool:
    """A UUID in any of the forms uuid.UUID accepts: a malformed id is refused before it reaches a query."""
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True
