"""`manage.py stripe_replay --since TIME`: after the database was restored from a backup, apply what Stripe
knows since TIME (the backup's time less a margin) through the webhook handler: its events, and the refunds
no event of theirs lists (lab/orders/stripe_replay.py). A payment no order in the database holds is listed by
PaymentIntent id and amount and raised as a supervisor alert (production's, so the command lives here, above
orders), never refunded here.

Prints counts; safe to run twice (an event applied already is skipped by its id). Exit 1, nothing applied,
when Stripe cannot be read, TIME is not an ISO 8601 time with its zone, or TIME is later than the newest
record the database holds (`database_newest`: what happened between the two, a refund, would be skipped and
its order released to print) and `--since-after-backup` does not say so on purpose."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from lab.orders.stripe_replay import (
    PaymentWithoutOrder,
    ReplayResult,
    StripeUnreadable,
    database_newest,
    stripe_replay,
)
from lab.production.alerts import payment_without_order_alert

# Stripe lists the events of the last 30 days only; its refunds and PaymentIntents it keeps.
EVENTS_KEPT = timedelta(days=30)


class Command(BaseCommand):
    help = "After a database restore: apply Stripe's events and refunds since TIME; list orderless payments."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since",
            required=True,
            metavar="TIME",
            help="ISO 8601 with its zone, e.g. 2026-03-01T02:00:00+00:00: the backup's time less a margin",
        )
        parser.add_argument(
            "--since-after-backup",
            action="store_true",
            help="accept a TIME later than the newest record the database holds (refused without it)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since = _since(options["since"])
        newest = database_newest()
        if newest is not None and since > newest and not options["since_after_backup"]:
            raise CommandError(
                f"--since {since.isoformat()} is later than the newest record the database holds"
                f" ({newest.isoformat()}): a payment or refund between the two would be skipped. Pass a TIME"
                f" before {newest.isoformat()} (the backup's time less a margin), or --since-after-backup if"
                f" that TIME is meant: nothing was applied"
            )
        if since < timezone.now() - EVENTS_KEPT:
            self.stderr.write(
                "Stripe lists the events of the last 30 days only: a payment older than that is not read"
            )
        try:
            result = stripe_replay(since=since)
        except StripeUnreadable as error:
            raise CommandError(f"Stripe could not be read ({error}): nothing was applied") from error
        alerts = sum(
            payment_without_order_alert(intent_id=p.intent_id, left=p.left, currency=p.currency)
            for p in result.payments_without_order
            if p.needs_person
        )
        self.stdout.write(_summary(since=since, result=result, alerts=alerts))
        for payment in result.payments_without_order:
            self.stdout.write(_payment_line(payment))


def _since(text: str) -> datetime:
    try:
        since = datetime.fromisoformat(text.strip())
    except ValueError as error:
        raise CommandError(f"--since {text!r} is not an ISO 8601 time") from error
    if since.tzinfo is None:
        raise CommandError(f"--since {text!r} has no zone: write it with one (+00:00, Z)")
    if since > timezone.now():
        raise CommandError(f"--since {text!r} is in the future")
    return since


def _summary(*, since: datetime, result: ReplayResult, alerts: int) -> str:
    applied = sum(result.applied.values())
    outcomes = ", ".join(f"{outcome} {count}" for outcome, count in sorted(result.applied.items()))
    return (
        f"stripe since {since.isoformat()}: {result.events_read} events read"
        f" ({result.events_not_handled} of kinds the lab does not handle),"
        f" {result.refunds_read} refunds read ({result.refunds_replayed} without an event of theirs);"
        f" applied: {applied}{f' ({outcomes})' if outcomes else ''};"
        f" already known: {result.already_known}; unknown: {result.unknown}"
        f" ({len(result.payments_without_order)} payments with no order,"
        f" {alerts} alerts raised)" + (f"; refused as malformed: {result.refused}" if result.refused else "")
    )


def _payment_line(payment: PaymentWithoutOrder) -> str:
    if payment.needs_person:
        what = "no order: refund it or place the order again (supervisor alert)"
    elif not payment.is_lab_s:
        what = "no order, not made by this lab (no order_ref): left alone"
    elif payment.captured:
        what = "no order, refunded at Stripe"
    else:
        what = "no order, not paid"
    return (
        f"payment without order: {payment.intent_id} {payment.status} captured {payment.captured}"
        f" refunded {payment.refunded} {payment.currency}: {what}"
    )
