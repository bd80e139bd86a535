"""`manage.py erasures_reapply`: after a restore from a backup, erase again every account and guest order the
erasure log (LAB_ERASURE_LOG, outside the database) says was erased and the restored database holds
un-erased. The same erasure as DELETE me / DELETE orders/{ref}/personal-data: personal data removed, tokens
revoked, photo keys destroyed, files deleted, a receipt issued.

Safe to run twice: a subject erased already is skipped. Prints ids and counts only. A line of the log that is
not an entry is reported by its number and the command exits non-zero after doing the rest; so is a line
without a seal that verifies (lab/customer_data/erasure_log.py: only the lab's erasure makes one, under a key
the database never holds; a line written by hand, or copied from a row forged in the database, would erase
a customer who never asked, without their password), which is never applied; and so is an erasure the
restored database refuses (an order it shows open, or its money unsettled), naming the orders: bring them
to their real state (`stripe_replay`, the floor) and run it again.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from lab.accounts.models import User
from lab.customer_data.erasure import account_erase_again, guest_order_erase
from lab.customer_data.erasure_log import (
    KIND_ACCOUNT,
    KIND_GUEST_ORDER,
    ErasureLogEntry,
    erasure_log_flush,
    erasure_log_sink,
)
from lab.lib.errors import DomainError
from lab.orders.models import Order

REQUEST_ID = "erasures_reapply"  # the audit records of the erasures run again say so


class Command(BaseCommand):
    help = "Erase again the accounts and guest orders the erasure log says were erased (after a restore)."

    def handle(self, *args: Any, **options: Any) -> None:
        # Entries the restored database still owes the log (an erasure committed before the backup whose
        # append had failed) go first: the log is then whole before it is read.
        flush = erasure_log_flush()
        if flush.refused:
            self.stderr.write(
                f"{flush.refused} pending erasure log row(s) not appended: no valid seal, or a subject the"
                " database does not show erased (not written by an erasure: see the log by pending id, and"
                " delete them)"
            )
        sink = erasure_log_sink()
        try:
            reading = sink.read()
        except OSError as error:
            raise CommandError(
                f"the erasure log {sink.location} cannot be read ({type(error).__name__})"
            ) from error
        if not reading.exists:
            self.stdout.write(f"the erasure log {sink.location} does not exist: no erasure to apply again")
            return
        counts: Counter[str] = Counter()
        refused: list[str] = []
        seen: set[tuple[str, str]] = set()
        unsealed: list[tuple[int, str]] = []
        for number, entry in reading.entries:
            if not entry.seal_verifies():
                # Before it counts as seen: a forged line must not make a genuine one after it a repeat.
                unsealed.append((number, "no seal" if not entry.seal else "its seal does not verify"))
                continue
            if (entry.kind, entry.subject) in seen:
                counts["repeated"] += 1  # an entry written twice (its pending row's delete was lost)
                continue
            seen.add((entry.kind, entry.subject))
            try:
                outcome = self._apply(entry)
            except DomainError as error:
                orders = error.details.get("orders")
                named = f" orders={','.join(orders)}" if isinstance(orders, list) and orders else ""
                refused.append(f"{entry.kind} {entry.subject}: {error.code}{named}")
                self.stderr.write(f"not erased again: {entry.kind} {entry.subject} ({error.code}{named})")
                continue
            counts[outcome] += 1
        for number, problem in reading.problems:
            self.stderr.write(f"{sink.location} line {number}: {problem}")
        for number, problem in unsealed:
            self.stderr.write(
                f"{sink.location} line {number}: {problem}: not written by the lab's erasure (or altered"
                " since), not applied"
            )
        self.stdout.write(
            f"erasure log {sink.location}: {len(reading.entries)} entries;"
            f" erased again: {counts['account erased again']} accounts,"
            f" {counts['guest_order erased again']} guest orders;"
            f" erased already: {counts['erased already']}; not in the database: {counts['absent']};"
            f" refused: {len(refused)}; unreadable lines: {len(reading.problems)};"
            f" lines without a valid seal: {len(unsealed)}"
        )
        if reading.problems or refused or unsealed:
            raise CommandError(
                f"{len(reading.problems)} unreadable line(s) in the erasure log, {len(unsealed)} line(s)"
                f" without a valid seal and {len(refused)} erasure(s) refused: see above; every other entry"
                " was applied"
            )

    def _apply(self, entry: ErasureLogEntry) -> str:
        if entry.kind == KIND_ACCOUNT:
            user = User.objects.filter(public_id=entry.subject).first()
            if user is None:
                return "absent"
            if user.erased_at is not None:
                return "erased already"
            result = account_erase_again(user=user, request_id=REQUEST_ID)
            self.stdout.write(
                f"erased again: account {entry.subject} photos={result.photos_purged}"
                f" orders={result.orders_anonymized} cancelled={result.orders_cancelled}"
            )
            return "account erased again"
        if entry.kind == KIND_GUEST_ORDER:
            order = Order.objects.filter(ref=entry.subject).first()
            if order is None:
                return "absent"
            if order.is_anonymized:
                return "erased already"
            guest = guest_order_erase(order=order, request_id=REQUEST_ID)
            self.stdout.write(
                f"erased again: guest order {entry.subject} photos={guest.photos_purged}"
                f" cancelled={guest.order_cancelled}"
            )
            return "guest_order erased again"
        raise AssertionError(f"unknown kind {entry.kind}")  # from_line admits only the known kinds
