"""What production tells the apps above it, inside the transaction that makes it so (lab.notify listens:
production may not import it, and a message sent after the commit could be lost)."""

from __future__ import annotations

from django.dispatch import Signal

# A reprint was made: sent with `reprint` (the new PrintJob) and `reason`, inside the reprint's transaction,
# once per reprint (a replayed request makes none).
reprint_made = Signal()
