"""Ending photo grants when the task they rest on closes (a job printed or cancelled, an order leaving the
packing station, a maintenance ticket or clarification case closed).

The gate also re-checks the context on every delivery, so access ends at once either way; this marks the
grants themselves, so the record of who could see what, and until when, is exact.
"""

from __future__ import annotations

from django.db.models.functions import Now

from lab.audit.models import AccessGrant


def grants_revoke(*, context_type: str, context_id: str | int, reason: str) -> int:
    return AccessGrant.objects.filter(
        context_type=context_type, context_id=str(context_id), revoked_at__isnull=True
    ).update(revoked_at=Now(), revoked_reason=reason[:64])
