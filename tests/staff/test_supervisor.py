"""The supervisor's view: seeded event histories, row links, CSV, role access, alerts sent once."""

from __future__ import annotations

import csv
import io
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from lab.orders.models import Order, OrderEvent
from lab.production import jobs, resolutions, tracking
from lab.production.alerts import alerts_check, orders_at_risk
from lab.production.cancellation import ALREADY_PRINTED, order_cancel_in_production
from lab.production.holds import order_hold
from lab.production.models import Alert, JobEvent, Printer, PrintJob
from lab.staff import supervisor
from lab.staff.views.supervisor import TABLE_COLUMNS
from tests.builders import (
    client_as,
    hotfolder_printer,
    job_walk,
    order_with_items,
    person,
    printer_folder,
    released_order,
)
from tests.support.mail import WorkerDiesWhileSending

pytestmark = pytest.mark.django_db
DAY = datetime(2026, 11, 20, tzinfo=UTC)
URL = "/lab/supervisor/"
RANGE = {"from": "2026-11-20", "to": "2026-11-21"}


@dataclass(frozen=True)
class History:
    alpha: Printer
    beta: Printer
    alpha_jobs: list[PrintJob]
    beta_jobs: list[PrintJob]
    express: Order


def _shipped(*, method: str, paid_at: datetime, shipped_at: datetime, promised_by: datetime) -> Order:
    order = order_with_items(lines=[("PRINT-4X6-LUSTRE", 1)], promised_by=promised_by)
    Order.objects.filter(pk=order.pk).update(shipping_method=method)
    for to_status, at in (("paid", paid_at), ("shipped", shipped_at)):
        OrderEvent.objects.create(order=order, kind="status_changed", to_status=to_status, created_at=at)
    return order


@pytest.fixture
def history() -> History:
    alpha = hotfolder_printer("alpha", sizes=["4x6"])
    beta = hotfolder_printer("beta", sizes=["5x7"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 2)] * 3 + [("PRINT-5X7-GLOSSY", 3)] * 2)
    alpha_jobs = list(PrintJob.objects.filter(order=order, printer=alpha).order_by("pk"))
    beta_jobs = list(PrintJob.objects.filter(order=order, printer=beta).order_by("pk"))
    # Printed: alpha 2 jobs in 10:00-11:00 and 1 at 11:xx; beta 2 jobs at 10:xx.
    for job, minute_of_day in zip(alpha_jobs + beta_jobs, [600, 659, 700, 610, 620], strict=True):
        JobEvent.objects.create(
            job=job,
            kind="printed",
            from_status="submitted",
            to_status="printed",
            created_at=DAY + timedelta(minutes=minute_of_day),
        )
    # Failures and a reprint on the same day (moved to failed through the state machine, then dated).
    for job, code in ((alpha_jobs[0], "printer_aborted"), (beta_jobs[0], "printer_aborted")):
        JobEvent.objects.create(
            job=job,
            kind="backend_failed",
            from_status="submitted",
            to_status="failed",
            created_at=DAY + timedelta(hours=12),
        )
        PrintJob.objects.filter(pk=job.pk).update(failure_code=code)
    # Turnaround: two standard orders (26 h on time, 80 h late) and one express (20 h, on time).
    paid = DAY - timedelta(days=4)
    _shipped(method="standard", paid_at=DAY - timedelta(hours=26), shipped_at=DAY, promised_by=DAY)
    _shipped(
        method="standard",
        paid_at=paid,
        shipped_at=paid + timedelta(hours=80),
        promised_by=paid + timedelta(days=3),
    )
    express = _shipped(
        method="express",
        paid_at=DAY + timedelta(hours=1),
        shipped_at=DAY + timedelta(hours=21),
        promised_by=DAY + timedelta(days=1),
    )
    return History(alpha=alpha, beta=beta, alpha_jobs=alpha_jobs, beta_jobs=beta_jobs, express=express)


def _filters(printer_id: int | None = None) -> supervisor.Filters:
    return supervisor.Filters(start=DAY, end=DAY + timedelta(days=2), printer_id=printer_id)


def test_throughput_is_recomputed_from_the_raw_printed_events(history: History) -> None:
    rows = supervisor.throughput(filters=_filters())

    expected: Counter[tuple[str, datetime]] = Counter()
    for event in JobEvent.objects.filter(to_status="printed", created_at__gte=DAY).select_related(
        "job__printer"
    ):
        assert event.job is not None and event.job.printer is not None
        expected[(event.job.printer.name, event.created_at.replace(minute=0, second=0, microsecond=0))] += 1
    assert {(row.printer, row.hour): row.jobs for row in rows} == dict(expected)
    assert [(row.printer, row.hour.hour, row.jobs, row.copies) for row in rows] == [
        ("alpha", 10, 2, 4),
        ("beta", 10, 2, 6),
        ("alpha", 11, 1, 2),
    ]


def test_turnaround_per_day_and_method_against_the_promise(history: History) -> None:
    rows = supervisor.turnaround(
        filters=supervisor.Filters(
            start=DAY - timedelta(days=1), end=DAY + timedelta(days=1), printer_id=None
        )
    )

    assert [
        (
            row.day.isoformat(),
            row.shipping_method,
            row.orders,
            row.on_time,
            row.mean_hours,
            row.max_hours,
            row.promised_hours,
        )
        for row in rows
    ] == [
        ("2026-11-19", "standard", 1, 0, 80.0, 80.0, 72),
        ("2026-11-20", "express", 1, 1, 20.0, 20.0, 24),
        ("2026-11-20", "standard", 1, 1, 26.0, 26.0, 72),
    ]


def test_failures_by_reason_and_printer_and_the_printer_filter(history: History) -> None:
    rows = supervisor.failures(filters=_filters())
    only_beta = supervisor.failures(filters=_filters(printer_id=history.beta.pk))

    assert [(row.reason, row.printer, row.jobs, row.copies) for row in rows] == [
        ("printer_aborted", "alpha", 1, 2),
        ("printer_aborted", "beta", 1, 3),
    ]
    assert [(row.printer, row.jobs) for row in only_beta] == [("beta", 1)]


def test_queue_depth_counts_jobs_per_stage_now(history: History) -> None:
    job_walk(history.alpha_jobs[1], "ready")
    job_walk(history.beta_jobs[1], "submitting")

    depth = {row.stage: row.jobs for row in supervisor.queue_depth(printer_id=None)}

    assert depth == {
        "no_printer": 0,
        "queued": 3,
        "rasterizing": 0,
        "ready": 1,
        "submitted": 1,
        "unknown": 0,
        "suspect": 0,
    }
    # the jobs behind the "submitted" row are those it counts: the one being handed to its printer too
    client, _ = client_as("supervisor")
    behind = client.get(reverse("staff:supervisor_behind"), {"table": "queue", "stage": "submitted"})
    assert [job.pk for job in behind.context["jobs"]] == [history.beta_jobs[1].pk]
    assert behind.context["total"] == depth["submitted"]


def test_the_printer_filter_keeps_only_that_printers_throughput_turnaround_and_queue(
    history: History,
) -> None:
    # given the express order printed at beta and an order shipped the same day printed at alpha (the other
    # orders shipped were printed nowhere)
    def printed_at(order: Order, printer: Printer) -> None:
        PrintJob.objects.create(
            order=order, item=order.items.get(), copies=1, printer=printer, status="printed"
        )

    printed_at(history.express, history.beta)
    at_alpha = _shipped(
        method="standard",
        paid_at=DAY - timedelta(hours=10),
        shipped_at=DAY + timedelta(hours=20),
        promised_by=DAY + timedelta(days=2),
    )
    printed_at(at_alpha, history.alpha)
    only_beta = _filters(printer_id=history.beta.pk)

    # when the supervisor reads the figures of beta alone
    throughput = supervisor.throughput(filters=only_beta)
    turnaround = supervisor.turnaround(filters=only_beta)
    queue = supervisor.queue_depth(printer_id=history.beta.pk)

    # then each holds beta's alone: its two jobs printed at 10:xx, the express order, its two jobs queued
    assert [(row.printer, row.hour.hour, row.jobs, row.copies) for row in throughput] == [("beta", 10, 2, 6)]
    assert [(row.day.isoformat(), row.shipping_method, row.orders) for row in turnaround] == [
        ("2026-11-20", "express", 1)
    ]
    assert {row.stage: row.jobs for row in queue if row.jobs} == {"queued": 2}
    # and unfiltered, alpha's are there too
    assert [(row.shipping_method, row.orders) for row in supervisor.turnaround(filters=_filters())] == [
        ("express", 1),
        ("standard", 2),
    ]


def test_the_default_range_is_the_last_seven_days_with_today() -> None:
    client, _ = client_as("supervisor")

    page = client.get(URL)

    today = timezone.now().date()
    assert (page.context["first_day"], page.context["last_day"]) == (today - timedelta(days=6), today)


def test_what_happened_at_the_very_end_of_the_range_is_the_next_days(history: History) -> None:
    # given an order packed inside the range and shipped exactly at its end, and a job printed exactly then
    end = _filters().end
    order = order_with_items(lines=[("PRINT-4X6-LUSTRE", 1)], promised_by=end)
    for to_status, at in (("paid", DAY), ("packed", end - timedelta(hours=1)), ("shipped", end)):
        OrderEvent.objects.create(order=order, kind="status_changed", to_status=to_status, created_at=at)
    JobEvent.objects.create(
        job=history.alpha_jobs[2],
        kind="printed",
        from_status="submitted",
        to_status="printed",
        created_at=end,
    )

    # when the supervisor reads the range
    turnaround = supervisor.turnaround(filters=_filters())
    throughput = supervisor.throughput(filters=_filters())

    # then neither is in it: the range's end is the next range's start
    assert [(row.day.isoformat(), row.shipping_method, row.orders) for row in turnaround] == [
        ("2026-11-20", "express", 1),
        ("2026-11-20", "standard", 1),
    ]
    assert [(row.printer, row.hour.hour, row.jobs) for row in throughput] == [
        ("alpha", 10, 2),
        ("beta", 10, 2),
        ("alpha", 11, 1),
    ]


def test_a_held_order_past_its_promise_is_at_risk_listed_in_the_csv_and_alerted(settings) -> None:
    # given a released order put on hold, whose promise passed an hour ago
    settings.ALERT_ORDER_AT_RISK_HOURS = 6
    settings.ALERT_QUEUE_DEPTH = 1000
    person("supervisor", email="sup@lab.example")
    hotfolder_printer("alpha", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)], promised_by=timezone.now() + timedelta(days=3))
    order_hold(order_ref=order.ref, actor=person("technician"), message="Which crop?")
    now = timezone.now()
    promised = now - timedelta(hours=1)
    Order.objects.filter(pk=order.pk).update(promised_by=promised)
    client, _ = client_as("supervisor")

    # when the supervisor reads the orders at risk and the alerts are checked
    at_risk = orders_at_risk(now=now)
    table = client.get(URL, {"format": "csv", "table": "at_risk"}).content.decode()
    alerted = alerts_check()

    # then the held order is in each: waiting for the customer does not keep the promise
    assert [(risky.pk, risky.status) for risky in at_risk] == [(order.pk, "on_hold")]
    assert list(csv.reader(io.StringIO(table)))[1:] == [
        [order.ref, "on_hold", "standard", f"{promised:%Y-%m-%d %H:%M}", "True"]
    ]
    assert alerted == 1
    assert [(alert.kind, alert.link) for alert in Alert.objects.all()] == [
        ("order_at_risk", reverse("staff:order", args=[order.ref]))
    ]


def test_the_page_links_each_row_to_the_jobs_behind_it(history: History) -> None:
    client, _ = client_as("supervisor")

    page = client.get(URL, RANGE)
    throughput_hour: dict[str, str | int] = {
        **RANGE,
        "table": "throughput",
        "printer": history.alpha.pk,
        "hour": (DAY + timedelta(hours=10)).isoformat(),
    }
    behind = client.get(reverse("staff:supervisor_behind"), throughput_hour)

    assert page.status_code == 200
    html = page.content.decode()
    # turnaround express and standard, throughput, queue now; printer states, queue depth/age, reprint rate
    assert html.count("<svg") == 8
    assert "/lab/supervisor/behind/?" in html
    assert behind.status_code == 200
    assert [job.pk for job in behind.context["jobs"]] == [job.pk for job in history.alpha_jobs[:2]]


def test_csv_of_a_table_has_exactly_its_rows(history: History) -> None:
    client, _ = client_as("admin")

    response = client.get(URL, {**RANGE, "format": "csv", "table": "failures"})
    unknown = client.get(URL, {**RANGE, "format": "csv", "table": "nope"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert list(csv.reader(io.StringIO(response.content.decode()))) == [
        ["reason", "printer", "jobs", "copies"],
        ["printer_aborted", "alpha", "1", "2"],
        ["printer_aborted", "beta", "1", "3"],
    ]
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("role", "status"),
    [
        ("supervisor", 200),
        ("admin", 200),
        ("technician", 200),
        ("auditor", 403),
        ("packer", 403),
        ("customer", 403),
    ],
)
def test_who_may_open_the_view(role: str, status: int) -> None:
    client, _ = client_as(role)

    assert client.get(URL).status_code == status


def test_anonymous_visitors_are_sent_to_sign_in() -> None:
    response = Client().get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/lab/login/")


def test_each_alert_is_emailed_once_to_the_supervisors(settings) -> None:
    settings.ALERT_PRINTER_ERROR_MINUTES = 15
    settings.ALERT_ORDER_AT_RISK_HOURS = 6
    settings.ALERT_QUEUE_DEPTH = 1000
    person("supervisor", email="sup1@lab.example")
    person("supervisor", email="sup2@lab.example")
    person("technician", email="tech@lab.example")
    alpha = hotfolder_printer("alpha", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)], promised_by=timezone.now() + timedelta(hours=2))
    released_order(
        lines=[("PRINT-4X6-LUSTRE", 1)], promised_by=timezone.now() + timedelta(days=3)
    )  # not at risk
    job = job_walk(PrintJob.objects.get(order=order), "submitting")
    assert jobs.job_move(job_id=job.pk, from_statuses={"submitting"}, to_status="unknown")
    Printer.objects.filter(pk=alpha.pk).update(
        state="error", state_changed_at=timezone.now() - timedelta(minutes=20)
    )

    first = alerts_check()
    second = alerts_check()

    assert (first, second) == (3, 0)
    assert sorted(Alert.objects.values_list("kind", flat=True)) == [
        "job_needs_person",
        "order_at_risk",
        "printer_error",
    ]
    assert len(mail.outbox) == 3
    assert {tuple(message.to) for message in mail.outbox} == {("sup1@lab.example", "sup2@lab.example")}
    assert f"Order {order.ref}" in " ".join(str(message.subject) for message in mail.outbox)


def test_an_alert_whose_worker_died_while_e_mailing_it_is_sent_by_the_next_check(settings) -> None:
    # given an alert being e-mailed by a check whose worker dies before it records the e-mail
    person("supervisor", email="sup@lab.example")
    alpha = hotfolder_printer("alpha", sizes=["4x6"])
    Printer.objects.filter(pk=alpha.pk).update(
        state="error", state_changed_at=timezone.now() - timedelta(minutes=20)
    )
    settings.EMAIL_BACKEND = "tests.support.mail.DyingEmailBackend"
    with pytest.raises(WorkerDiesWhileSending):
        alerts_check()
    assert Alert.objects.get().emailed_at is None

    # when the next check runs, then it sends that alert, once
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert (alerts_check(), alerts_check()) == (1, 0)
    assert [message.to for message in mail.outbox] == [["sup@lab.example"]]


def test_a_printer_in_error_for_less_than_the_threshold_is_not_alerted(settings) -> None:
    settings.ALERT_PRINTER_ERROR_MINUTES = 15
    person("supervisor")
    alpha = hotfolder_printer("alpha", sizes=["4x6"])
    Printer.objects.filter(pk=alpha.pk).update(
        state="error", state_changed_at=timezone.now() - timedelta(minutes=5)
    )

    assert alerts_check() == 0
    assert Alert.objects.count() == 0
    assert mail.outbox == []


def test_a_printer_paused_at_its_server_but_not_by_the_lab_is_alerted_after_the_threshold(settings) -> None:
    # given three printers paused at their print server 20 minutes ago (CUPS stopped a queue after a fault it
    # gave no error text for, or a person ran cupsdisable), one of them also paused on the board, and a fourth
    # paused there 5 minutes ago
    settings.ALERT_PRINTER_ERROR_MINUTES = 15
    settings.ALERT_QUEUE_DEPTH = 1000
    person("supervisor", email="sup@lab.example")
    long_ago = timezone.now() - timedelta(minutes=20)
    stopped = hotfolder_printer("alpha", sizes=["4x6"])
    by_the_lab = hotfolder_printer("beta", sizes=["4x6"])
    recent = hotfolder_printer("gamma", sizes=["4x6"])
    Printer.objects.filter(pk__in=[stopped.pk, by_the_lab.pk]).update(
        state="paused", state_message="Paused", state_changed_at=long_ago
    )
    Printer.objects.filter(pk=by_the_lab.pk).update(is_paused_by_lab=True)
    Printer.objects.filter(pk=recent.pk).update(
        state="paused", state_changed_at=timezone.now() - timedelta(minutes=5)
    )

    # when the alerts are checked twice
    first, second = alerts_check(), alerts_check()

    # then only the printer nobody in the lab paused is alerted, once, as a printer problem: its jobs wait
    assert (first, second) == (1, 0)
    alert = Alert.objects.get()
    assert (alert.kind, alert.key) == ("printer_error", f"printer_paused:{stopped.pk}:{long_ago.isoformat()}")
    assert alert.message.startswith("Printer alpha is paused at its print server, not by the lab")
    assert len(mail.outbox) == 1


def test_a_printer_down_while_its_reasons_change_is_alerted_once_for_the_outage(settings) -> None:
    # given a hot-folder printer whose folder went away 20 minutes ago (the poll saw it offline then)
    settings.ALERT_PRINTER_ERROR_MINUTES = 15
    person("supervisor", email="sup@lab.example")
    alpha = hotfolder_printer("alpha", sizes=["4x6"])
    folder = printer_folder(alpha)
    shutil.rmtree(folder)
    tracking.printer_poll()
    alpha.refresh_from_db()
    assert (alpha.state, alpha.state_reasons) == ("offline", ["offline", "folder-missing"])
    down_since = timezone.now() - timedelta(minutes=20)
    Printer.objects.filter(pk=alpha.pk).update(state_changed_at=down_since)

    # when it stays offline for another reason (a file where its folder was), then for the first again
    folder.write_text("not a folder")
    tracking.printer_poll()
    alpha.refresh_from_db()
    first = alerts_check()
    folder.unlink()
    tracking.printer_poll()
    second = alerts_check()

    # then its outage still began 20 minutes ago, and it is alerted once
    assert (alpha.state, alpha.state_reasons) == ("offline", ["offline", "folder-not-writable"])
    assert alpha.state_changed_at == down_since
    assert (first, second) == (1, 0)
    assert list(Alert.objects.values_list("kind", flat=True)) == ["printer_error"]


def test_a_job_of_unknown_fate_again_after_it_was_sent_again_is_alerted_again(settings) -> None:
    # given a job of unknown fate, alerted, that a person said did not print, so it was sent again
    settings.ALERT_QUEUE_DEPTH = 1000
    supervisor_person = person("supervisor", email="sup@lab.example")
    hotfolder_printer("alpha", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)], promised_by=timezone.now() + timedelta(days=3))
    job = job_walk(PrintJob.objects.get(order=order), "submitting")
    assert jobs.job_move(job_id=job.pk, from_statuses={"submitting"}, to_status="unknown")
    assert alerts_check() == 1
    resolutions.job_resolve_unknown(job_id=job.pk, actor=supervisor_person, was_printed=False)

    # when that send's fate is unknown too
    job_walk(job, "submitting")
    assert jobs.job_move(job_id=job.pk, from_statuses={"submitting"}, to_status="unknown")
    again = alerts_check()

    # then the supervisors hear of it again, once
    assert (again, alerts_check()) == (1, 0)
    assert list(Alert.objects.values_list("kind", flat=True)) == ["job_needs_person", "job_needs_person"]
    assert len(mail.outbox) == 2


def test_a_copy_printed_for_a_cancelled_order_is_alerted_once(settings) -> None:
    # given two cancelled orders on the floor: one whose late send printed and the printer would not cancel
    # (as lab.production.send_landed records it), one whose cancel withdrew its copy
    settings.ALERT_QUEUE_DEPTH = 1000
    person("supervisor", email="sup@lab.example")
    hotfolder_printer("alpha", sizes=["4x6"])
    printed, withdrawn = (
        PrintJob.objects.get(
            order=released_order(
                lines=[("PRINT-4X6-LUSTRE", 1)], promised_by=timezone.now() + timedelta(days=3)
            )
        )
        for _ in range(2)
    )
    for job in (printed, withdrawn):
        order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))
    late = JobEvent.objects.create(
        job=printed, kind="late_copy_not_cancelled", note=f"{ALREADY_PRINTED}: backend job 4, not cancelled"
    )
    JobEvent.objects.create(job=withdrawn, kind="printer_cancelled", note="5:cancelled")

    # when the alerts are checked twice
    first, second = alerts_check(), alerts_check()

    # then the supervisors hear once of the prints lying at the printer, and of nothing else
    assert (first, second) == (1, 0)
    alert = Alert.objects.get()
    assert (alert.kind, alert.key) == ("job_needs_person", f"printed_after_cancel:{printed.pk}:{late.pk}")
    assert printed.order.ref in alert.message and alert.link == f"/lab/jobs/{printed.pk}/"
    assert len(mail.outbox) == 1


def test_a_growing_queue_is_alerted_and_shown_on_the_view(settings) -> None:
    settings.ALERT_QUEUE_DEPTH = 3
    person("supervisor")
    hotfolder_printer("alpha", sizes=["4x6"])
    released_order(lines=[("PRINT-4X6-LUSTRE", 1)] * 3, promised_by=timezone.now() + timedelta(days=3))
    client, _ = client_as("supervisor")

    assert alerts_check() == 1
    page = client.get(URL).content.decode()

    assert list(Alert.objects.values_list("kind", flat=True)) == ["queue_growing"]
    assert "3 jobs wait to print; 3 arrived and 0 printed" in page


@pytest.mark.parametrize("query", ["printer=%C2%B2", "to=9999-12-31", "to=0001-01-03", "from=0001-01-01"])
def test_malformed_filters_fall_back_to_the_default_not_a_500(query: str) -> None:
    client, _ = client_as("supervisor")
    client.raise_request_exception = False

    assert client.get(f"{reverse('staff:supervisor')}?{query}").status_code == 200


def test_a_row_hour_at_the_calendars_end_is_a_404_not_a_500() -> None:
    client, _ = client_as("supervisor")
    client.raise_request_exception = False
    url = reverse("staff:supervisor_behind") + "?table=throughput&printer=1&hour=9999-12-31T23:00"

    assert client.get(url).status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        "table=failures&reason=%00",
        "table=reprints&reason=a%00",
        "table=queue&stage=%00",
        "table=queue&stage=no_such_stage",
        "table=reprints&reason=no_such_reason",
    ],
)
def test_a_row_key_no_row_can_have_is_a_404_not_a_500(query: str) -> None:
    """A NUL in a row's reason or stage reached PostgreSQL, which refuses it in text (DataError, a 500)."""
    client, _ = client_as("supervisor")
    client.raise_request_exception = False

    response = client.get(f"{reverse('staff:supervisor_behind')}?{query}")

    assert response.status_code == 404
    assert "<h1>Page not found</h1>" in response.content.decode()


def _pickup(*, promised_by: datetime, events: list[tuple[str, datetime]]) -> Order:
    order = order_with_items(lines=[("PRINT-4X6-LUSTRE", 1)], promised_by=promised_by)
    Order.objects.filter(pk=order.pk).update(shipping_method="pickup")
    for to_status, at in events:
        OrderEvent.objects.create(order=order, kind="status_changed", to_status=to_status, created_at=at)
    return order


def test_a_pickup_unpacked_and_packed_again_is_ready_when_it_was_packed_the_last_time() -> None:
    # given a pickup packed on time at 24 h, unpacked at 50 h (a wrong print reprinted), packed again at 96 h,
    # and collected at 100 h; it was promised ready at 48 h
    hours = [("paid", 0), ("packed", 24), ("ready_to_pack", 50), ("in_production", 51)]
    hours += [("ready_to_pack", 90), ("packed", 96), ("shipped", 100)]
    _pickup(
        promised_by=DAY + timedelta(hours=48),
        events=[(to_status, DAY + timedelta(hours=hour)) for to_status, hour in hours],
    )

    # when the supervisor reads the turnaround of its week
    rows = supervisor.turnaround(
        filters=supervisor.Filters(start=DAY, end=DAY + timedelta(days=7), printer_id=None)
    )

    # then it was ready at its last packing, 96 h after payment: late
    assert [
        (row.day.isoformat(), row.shipping_method, row.orders, row.on_time, row.mean_hours) for row in rows
    ] == [("2026-11-24", "pickup", 1, 0, 96.0)]


def test_a_pickup_is_counted_under_the_day_it_was_ready_whatever_the_range() -> None:
    # given a pickup ready on the 21st and collected on the 23rd, and a parcel shipped on the 23rd
    pickup = _pickup(
        promised_by=DAY + timedelta(days=3),
        events=[
            ("paid", DAY),
            ("packed", DAY + timedelta(hours=30)),
            ("shipped", DAY + timedelta(days=3, hours=10)),
        ],
    )
    _shipped(
        method="standard",
        paid_at=DAY,
        shipped_at=DAY + timedelta(days=3, hours=1),
        promised_by=DAY + timedelta(days=3, hours=2),
    )

    def days(first: int, last: int) -> list[tuple[str, str, int]]:
        rows = supervisor.turnaround(filters=_days(first, last))
        return [(row.day.isoformat(), row.shipping_method, row.orders) for row in rows]

    # when the supervisor reads the 21st alone, the 23rd alone, the three days and the week
    # then the pickup is on the 21st in each range holding it, and in no other; each row's day is in its range
    assert days(1, 1) == [("2026-11-21", "pickup", 1)]
    assert days(3, 3) == [("2026-11-23", "standard", 1)]
    assert days(1, 3) == days(0, 6) == [("2026-11-21", "pickup", 1), ("2026-11-23", "standard", 1)]
    behind = supervisor.orders_behind_turnaround(
        filters=_days(1, 1), day=DAY.date() + timedelta(days=1), method="pickup"
    )
    assert [order.pk for order in behind] == [pickup.pk]


def _days(first: int, last: int) -> supervisor.Filters:
    """The days DAY + first to DAY + last, both included."""
    return supervisor.Filters(
        start=DAY + timedelta(days=first), end=DAY + timedelta(days=last + 1), printer_id=None
    )


def test_a_job_that_failed_twice_is_one_job_of_its_failures_row() -> None:
    # given a job of two copies that failed at alpha, was sent there again and failed again with the same code
    alpha = hotfolder_printer("alpha", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 2)]))
    for from_status, to_status, hour in (
        ("ready", "failed", 1),
        ("failed", "queued", 2),
        ("ready", "failed", 3),
    ):
        JobEvent.objects.create(
            job=job,
            printer=alpha,
            kind="moved",
            from_status=from_status,
            to_status=to_status,
            failure_code="printer_held_job" if to_status == "failed" else "",
            created_at=DAY + timedelta(hours=hour),
        )

    # when the supervisor reads the failures and the jobs behind the row
    rows = supervisor.failures(filters=_filters())
    behind = supervisor.jobs_behind(
        table="failures", filters=_filters(), key={"reason": "printer_held_job", "printer": str(alpha.pk)}
    )

    # then the row counts the job once, with its copies once, as the list behind it shows
    assert [(row.reason, row.printer, row.jobs, row.copies) for row in rows] == [
        ("printer_held_job", "alpha", 1, 2)
    ]
    assert [(behind_job.pk, behind_job.copies) for behind_job in behind] == [(job.pk, 2)]


def test_the_csv_of_an_empty_table_has_its_header_row() -> None:
    # given nothing shipped, printed, failed or reprinted in the range
    client, _ = client_as("supervisor")

    # when the supervisor downloads each table
    headers = {
        table: list(
            csv.reader(
                io.StringIO(client.get(URL, {**RANGE, "format": "csv", "table": table}).content.decode())
            )
        )
        for table in ("turnaround", "throughput", "failures", "reprints", "at_risk")
    }

    # then each one is its header row alone
    assert headers == {
        "turnaround": [
            ["day", "shipping_method", "orders", "on_time", "mean_hours", "max_hours", "promised_hours"]
        ],
        "throughput": [["printer", "hour", "jobs", "copies"]],
        "failures": [["reason", "printer", "jobs", "copies"]],
        "reprints": [["reason", "printer", "jobs", "copies"]],
        "at_risk": [["order", "status", "shipping_method", "promised_by", "is_late"]],
    }


def test_each_tables_rows_have_exactly_its_declared_columns(history: History) -> None:
    client, _ = client_as("supervisor")

    figures = client.get(URL, RANGE).context["figures"]

    assert set(figures) == set(TABLE_COLUMNS)
    for table, rows in figures.items():
        for row in rows:
            assert tuple(column for column in row if column != "link") == TABLE_COLUMNS[table]
