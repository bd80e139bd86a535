"""Supervisor alerts: find the conditions worth a supervisor's attention, record each once, e-mail it once.

Thresholds come from settings (ALERT_*); the beat task `production.alerts_check` runs `alerts_check`.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Concat, Now
from django.urls import reverse
from django.utils import timezone

from lab.accounts.models import User
from lab.accounts.roles import Role
from lab.accounts.seal import account_seal_holds
from lab.lib.mail import MailNotSent, address_has_mail_form, mail_send
from lab.orders.models import Order, StripeEvent
from lab.orders.selectors import promise_kept_q
from lab.orders.states import OrderStatus
from lab.orders.stripe_replay import UNKNOWN as UNKNOWN_PAYMENT_INTENT
from lab.production.cancellation import ALREADY_PRINTED, MAY_HAVE_PRINTED, PRINTER_CANCEL_REFUSED
from lab.production.models import Alert, JobEvent, Printer, PrintJob
from lab.production.states import NEEDS_PERSON_JOB_STATUSES, JobStatus, PrinterState

logger = logging.getLogger(__name__)
J = JobStatus
OPEN_ORDER_STATUSES = (
    OrderStatus.PAID,
    OrderStatus.IN_PRODUCTION,
    OrderStatus.ON_HOLD,
    OrderStatus.READY_TO_PACK,
    OrderStatus.PACKED,
)
# Jobs that wait for the lab's machines (not for a person): the queue whose growth is alerted.
WAITING_JOB_STATUSES = (J.NO_PRINTER, J.QUEUED, J.RASTERIZING, J.READY)
# How long a copy printed for a cancelled job, or a late second copy, stays listed (board, alert, gauge), on
# the database's clock. Nothing records that a person saw to those prints, so the list ends by time, not by
# an acknowledgement.
PRINTED_AFTER_CANCEL_HOURS = 24
# A late copy of a job in these states is not listed as one: a cancelled job is listed for any copy printed,
# an unknown or suspect job is on the board and alerted already (`job_needs_person`).
_ON_THE_BOARD_ALREADY = (J.CANCELLED, J.UNKNOWN, J.SUSPECT)


def printed_after_cancel_events() -> QuerySet[JobEvent]:
    """The job events of the last PRINTED_AFTER_CANCEL_HOURS (database clock) that say a copy printed though
    its job was cancelled: the cancel reached the printer after it printed (`printer_cancelled` with
    ALREADY_PRINTED) or while its device printed it (with MAY_HAVE_PRINTED; or `printer_cancel_refused`, the
    device having the copy still, the cancel pending), or our send landed after the
    cancel and the printer would not cancel it (`late_copy_not_cancelled`). Its prints lie at the printer
    for an order the customer was refunded."""
    return JobEvent.objects.filter(
        Q(kind="late_copy_not_cancelled")
        | Q(kind__in=["printer_cancelled", PRINTER_CANCEL_REFUSED])
        & (Q(note__startswith=ALREADY_PRINTED) | Q(note__startswith=MAY_HAVE_PRINTED)),
        created_at__gte=Now() - timedelta(hours=PRINTED_AFTER_CANCEL_HOURS),
    )


def late_copy_unflagged_events() -> QuerySet[JobEvent]:
    """The `late_copy_not_cancelled` events of the same window that moved their job nowhere: a stalled
    worker's send landed after a person had sent the job again (or called it printed), the printer would not
    cancel it, and the job was not `submitted` to be made `suspect` (already `printed`, still `ready`, …).
    One that made its job `suspect` carries that status and is the suspect list's."""
    return printed_after_cancel_events().filter(kind="late_copy_not_cancelled", to_status="")


def printed_after_cancel_q() -> Q:
    """Jobs with a copy printed that nobody asked for: cancelled jobs with a copy printed anyway
    (printed_after_cancel_events), and jobs in any other state but unknown or suspect (listed as such already)
    whose late second copy the printer would not cancel (late_copy_unflagged_events: may have printed twice).
    The board's "Prints of cancelled orders at the printers, and late copies that may have printed twice",
    their alert and the `printlab_cancelled_jobs_printed` gauge. Before, a late copy on a job already
    `printed` (the resent copy printed and polled within a second, long before a stalled worker's lease runs
    out) was only in the job's history: two prints, nothing on the board.

    Read from the day's few such events (indexed by kind and time), not per job: under the board's OR the job
    ids are hashed once and each job costs a lookup, not a probe of its events."""
    return Q(status=J.CANCELLED, pk__in=printed_after_cancel_events().values("job_id")) | (
        ~Q(status__in=_ON_THE_BOARD_ALREADY) & Q(pk__in=late_copy_unflagged_events().values("job_id"))
    )


@dataclass(frozen=True)
class Condition:
    key: str
    kind: str
    message: str
    link: str


def orders_at_risk(*, now: datetime.datetime) -> list[Order]:
    """Open orders promised within ALERT_ORDER_AT_RISK_HOURS from now, or already past their promise."""
    horizon = now + timedelta(hours=settings.ALERT_ORDER_AT_RISK_HOURS)
    return list(
        Order.objects.filter(status__in=OPEN_ORDER_STATUSES, promised_by__lte=horizon)
        .exclude(promise_kept_q())  # a pickup packed waits at the counter: its promise is kept
        .order_by("promised_by")
    )


def alert_conditions(*, now: datetime.datetime) -> list[Condition]:
    conditions = [
        Condition(
            key=f"order_at_risk:{order.ref}:{order.promised_by.isoformat() if order.promised_by else ''}",
            kind=Alert.Kind.ORDER_AT_RISK,
            message=f"Order {order.ref} ({order.status}) is promised by "
            f"{order.promised_by:%Y-%m-%d %H:%M} UTC",
            link=reverse("staff:order", args=[order.ref]),
        )
        for order in orders_at_risk(now=now)
    ]
    error_since = now - timedelta(minutes=settings.ALERT_PRINTER_ERROR_MINUTES)
    for printer in Printer.objects.filter(
        state__in=[PrinterState.ERROR, PrinterState.OFFLINE], state_changed_at__lte=error_since
    ):
        # One alert per stretch in error or offline: the key carries when the stretch began, which tracking
        # moves only when the printer goes down or comes back (not when the reasons, or offline and error,
        # alternate meanwhile).
        conditions.append(
            Condition(
                key=f"printer_error:{printer.pk}:{printer.state_changed_at.isoformat()}",
                kind=Alert.Kind.PRINTER_ERROR,
                message=f"Printer {printer.name} is {printer.state}, down since "
                f"{printer.state_changed_at:%Y-%m-%d %H:%M} UTC",
                link=reverse("staff:board"),
            )
        )
    # Paused at the printer (cupsdisable, a hot folder's PAUSED file) and not on the board: a person's pause,
    # or CUPS stopped the queue after its backend failed and said nothing the CUPS backend could read as an
    # error (printers/cups_backend.py). Either way its jobs wait and nobody in the lab chose it: alert it like
    # an outage, once per stretch.
    for printer in Printer.objects.filter(
        state=PrinterState.PAUSED, is_paused_by_lab=False, state_changed_at__lte=error_since
    ):
        conditions.append(
            Condition(
                key=f"printer_paused:{printer.pk}:{printer.state_changed_at.isoformat()}",
                kind=Alert.Kind.PRINTER_ERROR,
                message=f"Printer {printer.name} is paused at its print server, not by the lab, since "
                f"{printer.state_changed_at:%Y-%m-%d %H:%M} UTC"
                + (f" ({printer.state_message})" if printer.state_message else "")
                + ": its jobs wait",
                link=reverse("staff:board"),
            )
        )
    # One alert per time a job comes to need a person: the key carries the event that moved it there, so a
    # job sent again after a person's decision and unknown (or suspect) again is alerted again.
    moved_there = JobEvent.objects.filter(job_id=OuterRef("pk"), to_status=OuterRef("status")).order_by("-pk")
    needing_person = (
        PrintJob.objects.filter(status__in=NEEDS_PERSON_JOB_STATUSES)
        .annotate(moved_there_event=Subquery(moved_there.values("pk")[:1]))
        .select_related("order")
    )
    for job in needing_person:
        wording = "has an unknown fate" if job.status == J.UNKNOWN else "may have printed twice"
        conditions.append(
            Condition(
                key=f"job_needs_person:{job.pk}:{job.status}:{job.moved_there_event or ''}",
                kind=Alert.Kind.JOB_NEEDS_PERSON,
                message=f"Job {job.pk} of order {job.order.ref} {wording}",
                link=reverse("staff:job", args=[job.pk]),
            )
        )
    conditions.extend(_printed_after_cancel())
    conditions.extend(_queue_growing(now=now))
    conditions.extend(_payments_without_order())
    return conditions


def _printed_after_cancel() -> list[Condition]:
    """A copy printed for a cancelled job: someone must take its prints off the printer (the customer was
    refunded; a cancelled order is never packed). A late second copy the printer would not cancel: someone
    must count the prints and discard the extra. One alert per such event: a later copy is alerted again."""
    latest = printed_after_cancel_events().filter(job_id=OuterRef("pk")).order_by("-pk")
    jobs = (
        PrintJob.objects.filter(printed_after_cancel_q())
        .annotate(printed_event=Subquery(latest.values("pk")[:1]))
        .select_related("order", "printer")
        .order_by("pk")
    )
    conditions = []
    for job in jobs:
        at = job.printer.name if job.printer else "its printer"
        if job.status == J.CANCELLED:
            key = f"printed_after_cancel:{job.pk}:{job.printed_event or ''}"
            message = (
                f"Job {job.pk} of order {job.order.ref} ({job.order.status}) was cancelled but printed "
                f"at {at}: take its prints off the printer"
            )
        else:
            key = f"late_copy_printed:{job.pk}:{job.printed_event or ''}"
            message = (
                f"Job {job.pk} of order {job.order.ref} ({job.status}) may have printed twice: a late copy "
                f"at {at} was not cancelled: count the prints, discard the extra"
            )
        conditions.append(
            Condition(
                key=key,
                kind=Alert.Kind.JOB_NEEDS_PERSON,
                message=message,
                link=reverse("staff:job", args=[job.pk]),
            )
        )
    return conditions


def _queue_growing(*, now: datetime.datetime) -> list[Condition]:
    """The waiting queue is deep and more jobs came in than were printed in the last window."""
    depth = PrintJob.objects.filter(status__in=WAITING_JOB_STATUSES).count()
    if depth < settings.ALERT_QUEUE_DEPTH:
        return []
    window = timedelta(minutes=settings.ALERT_QUEUE_WINDOW_MINUTES)
    recent = JobEvent.objects.filter(created_at__gt=now - window, created_at__lte=now)
    arrived = recent.filter(Q(kind="created") | Q(kind="reprint_requested")).count()
    printed = recent.filter(to_status=J.PRINTED).count()
    if arrived <= printed:
        return []
    # One alert per window: a queue that keeps growing is reported again an hour later, not every check.
    bucket = int(now.timestamp()) // int(window.total_seconds())
    return [
        Condition(
            key=f"queue_growing:{bucket}",
            kind=Alert.Kind.QUEUE_GROWING,
            message=f"{depth} jobs wait to print; {arrived} arrived and {printed} printed "
            f"in the last {settings.ALERT_QUEUE_WINDOW_MINUTES} minutes",
            link=reverse("staff:supervisor"),
        )
    ]


def supervisor_emails() -> list[str]:
    """The active supervisors' addresses an alert can be mailed to. An address with no mail form (one stored
    as typed, lab.accounts.seal.email_as_stored) made every alert message raise before it was sent, to every
    supervisor: it is left out, logged by its account's public id (never the address), and the others are
    mailed. So is an account whose seal does not hold (lab.accounts.seal): the role given, or the account
    re-activated, by a write in the database alone, which every staff page refuses (it was mailed every
    alert: `tests/staff/test_supervisor_alerts.py`)."""
    return _alert_recipients().addresses


@dataclass(frozen=True)
class _Recipients:
    addresses: list[str]
    left_out: int  # active supervisors no alert can go to: no mail form, or a seal that does not hold


def _alert_recipients() -> _Recipients:
    addresses: list[str] = []
    left_out = 0
    supervisors = (
        User.objects.filter(groups__name=Role.SUPERVISOR, is_active=True)
        .prefetch_related("groups")
        .order_by("email")
    )
    for supervisor in supervisors:
        roles = [group.name for group in supervisor.groups.all()]
        if not account_seal_holds(supervisor, roles=roles):
            left_out += 1
            logger.warning(
                "supervisor left out of alert e-mails: account changed outside the lab's tools user=%s",
                supervisor.public_id,
            )
        elif address_has_mail_form(supervisor.email):
            addresses.append(supervisor.email)
        else:
            left_out += 1
            logger.warning(
                "supervisor left out of alert e-mails: no mail can go to their address user=%s",
                supervisor.public_id,
            )
    return _Recipients(addresses=addresses, left_out=left_out)


def alert_subject(message: str) -> str:
    """The alert's e-mail subject: its message on one line (a printer's state message, from a hot folder's
    PAUSED file or CUPS, may have line breaks, and a header with one is refused), at most 200 characters."""
    return f"[{settings.LAB_NAME}] {' '.join(message.split())}"[:200]


def alerts_check(*, now: datetime.datetime | None = None) -> int:
    """Record every current condition once (unique key) and e-mail each unsent alert once; returns sent.

    An alert whose mail could not be sent stays unsent (the next check tries it again) and holds up none
    after it."""
    now = now or timezone.now()
    Alert.objects.bulk_create(
        [
            Alert(key=c.key[:200], kind=c.kind, message=c.message[:500], link=c.link, created_at=now)
            for c in alert_conditions(now=now)
        ],
        ignore_conflicts=True,
    )
    unsent = list(Alert.objects.filter(emailed_at__isnull=True).order_by("pk").values_list("pk", flat=True))
    if not unsent:
        return 0
    recipients = _alert_recipients()
    sent = 0
    for alert_id in unsent:
        if _alert_email(alert_id=alert_id, recipients=recipients):
            sent += 1
    return sent


def _alert_email(*, alert_id: int, recipients: _Recipients) -> bool:
    """E-mail one alert while holding its row: a concurrent check skips it, and a worker that dies before
    recording the e-mail leaves it unsent for the next check (a mail the server accepted just before may then
    go out twice; never none). Alert mails are rare and small, so the lock is held for the send."""
    with transaction.atomic():
        alert = (
            Alert.objects.select_for_update(skip_locked=True)
            .filter(pk=alert_id, emailed_at__isnull=True)
            .first()
        )
        if alert is None:
            return False
        if not recipients.addresses and recipients.left_out:
            # Supervisors there are, and no mail can go to any of them: kept for when an address is fixed.
            return False
        if recipients.addresses:
            try:
                mail_send(
                    EmailMessage(
                        subject=alert_subject(alert.message),
                        body=f"{alert.message}\n\n{settings.SITE_URL}{alert.link}\n",
                        from_email=settings.DEFAULT_FROM_EMAIL,
                        to=recipients.addresses,
                        headers={"Auto-Submitted": "auto-generated"},
                    )
                )
            except MailNotSent as error:  # MailRefused is one; neither names an address
                logger.warning("alert e-mail failed alert=%s kind=%s reason=%s", alert.pk, alert.kind, error)
                return False  # left unsent: the next check sends it again
        Alert.objects.filter(pk=alert.pk).update(emailed_at=timezone.now())
    if not recipients.addresses:
        return False
    logger.info("alert e-mailed alert=%s kind=%s", alert_id, alert.kind)
    return True


def _payments_without_order() -> list[Condition]:
    """A `payment_intent.succeeded` the webhook recorded as `unknown_payment_intent`: Stripe took money for a
    PaymentIntent no order holds. After a restore from a backup that is an order placed after the backup and
    paid after `manage.py stripe_replay` ran (its customer's checkout page still held the client secret; the
    replay lists only the PaymentIntents its events name): the webhook answers 200 and Stripe never sends it
    again, so before nobody heard of the money. One alert per PaymentIntent, under the key the replay's own
    alert takes (`payment_without_order_alert`): whichever comes first raises it, the other adds none.

    The recorded event keeps no amount, so the alert names the PaymentIntent only. Left out: an intent an
    order holds now, one alerted already (the key), and one a `charge.refunded` is recorded for (money went
    back: a replay that found it refunded raises nothing either; a partial refund made in Stripe's dashboard
    is taken as seen to by whoever made it). A failed payment (`payment_intent.payment_failed`) took no
    money: never alerted. Recorded events are read without a window, through a partial index of the
    orderless ones only (orders/0019: `stripe_event_orderless`), and a payment's refund by its
    PaymentIntent."""
    prefix = f"{Alert.Kind.PAYMENT_WITHOUT_ORDER}:"
    intent = OuterRef("payment_intent_id")
    intents = (
        StripeEvent.objects.filter(event_type="payment_intent.succeeded", outcome=UNKNOWN_PAYMENT_INTENT)
        .exclude(payment_intent_id="")
        .exclude(Exists(Alert.objects.filter(key=Concat(Value(prefix), intent))))
        .exclude(Exists(Order.objects.filter(payment_intent_id=intent)))
        .exclude(Exists(StripeEvent.objects.filter(event_type="charge.refunded", payment_intent_id=intent)))
        .values_list("payment_intent_id", flat=True)
        .distinct()
        .order_by("payment_intent_id")
    )
    return [
        Condition(
            key=payment_without_order_key(intent_id),
            kind=Alert.Kind.PAYMENT_WITHOUT_ORDER,
            message=(
                f"Stripe took a payment no order in the database holds: PaymentIntent {intent_id} (an order "
                f"lost in a restore from a backup, paid since). If its metadata names an order_ref and it is "
                f"not refunded, refund it in Stripe's dashboard, or place the order again; without an "
                f"order_ref it is not this lab's."
            ),
            link=reverse("staff:supervisor"),
        )
        for intent_id in intents
    ]


def payment_without_order_key(intent_id: str) -> str:
    """The one alert of a payment at Stripe no order holds, whichever raises it (the replay, alerts_check)."""
    return f"{Alert.Kind.PAYMENT_WITHOUT_ORDER}:{intent_id}"[:200]


def payment_without_order_alert(*, intent_id: str, left: int, currency: str) -> bool:
    """The supervisors' alert for a payment at Stripe that no order in the database holds (a database
    restored from a backup: `manage.py stripe_replay`), once per PaymentIntent, e-mailed by the next
    alerts_check; True when raised now. Ids and amounts only. The same alert is raised by alerts_check for a
    payment whose event the webhook recorded with no order (`_payments_without_order`): one key, one alert."""
    message = (
        f"A payment at Stripe has no order in the database (restored from a backup): PaymentIntent "
        f"{intent_id}, {left} {currency} not refunded. Refund it in Stripe's dashboard, or place the order "
        f"again."
    )
    _alert, created = Alert.objects.get_or_create(
        key=payment_without_order_key(intent_id),
        defaults={
            "kind": Alert.Kind.PAYMENT_WITHOUT_ORDER,
            "message": message[:500],
            "link": reverse("staff:supervisor"),
        },
    )
    return created
