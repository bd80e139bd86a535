"""The CUPS event feed of the printer-events listener against a private cupsd: one request per pull for every
queue, job completion with the job's handle, and every way events get lost (first pull, restart, a
subscription gone, more events than cupsd keeps) reported as an incomplete batch."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from printers.base import EventBatch, JobState
from printers.cups_backend import CupsBackend
from printers.cups_events import JOB_EVENTS, CupsEventFeed
from printers.cups_ipp import connect
from printers.errors import TransientPrinterError
from tests.printers.conftest import PHOTO_MEDIA
from tests.support.cups import PrivateCups

SETTLE_SECONDS = 20.0


def pull_until(
    feed: CupsEventFeed, done: Callable[[list[EventBatch]], bool], *, timeout: float = SETTLE_SECONDS
) -> list[EventBatch]:
    """Pull every 50 ms until the batches so far satisfy `done`."""
    batches: list[EventBatch] = []
    deadline = time.monotonic() + timeout
    while True:
        batches.append(feed.pull())
        if done(batches):
            return batches
        assert time.monotonic() < deadline, f"timed out; batches {batches}"
        time.sleep(0.05)


def completed(handle: str) -> Callable[[list[EventBatch]], bool]:
    return lambda batches: any(
        notice.handle == handle and notice.state is JobState.COMPLETED
        for batch in batches
        for notice in batch.jobs
    )


def job_subscriptions(cups_server: PrivateCups) -> list[int]:
    return [
        int(subscription["notify-subscription-id"])
        for subscription in connect(server=cups_server.server).getSubscriptions("ipp://localhost/")
        if subscription.get("notify-events") == list(JOB_EVENTS)
    ]


def test_jobs_of_every_queue_arrive_in_one_feed_with_handle_title_and_state(
    restartable_cups: PrivateCups, small_jpeg: Path
) -> None:
    # given two queues on one cupsd and a feed on it
    restartable_cups.add_printer("left", media=PHOTO_MEDIA, device_uri_options="waitjob=false")
    restartable_cups.add_printer("right", media=PHOTO_MEDIA, device_uri_options="waitjob=false")
    feed = CupsEventFeed(server=restartable_cups.server)
    first = feed.pull()

    # when a job is printed on each queue
    server = restartable_cups.server
    left = CupsBackend(queue="left", server=server).submit(path=small_jpeg, title="lab-job-41")
    right = CupsBackend(queue="right", server=server).submit(path=small_jpeg, title="lab-job-42")
    batches = pull_until(feed, lambda seen: completed(left)(seen) and completed(right)(seen))

    # then the first pull was incomplete (nothing heard before it), every later one complete, and each job's
    # events name it with its title, ending completed
    assert (first.is_complete, first.needs_sweep) == (False, True)
    assert all(batch.is_complete and not batch.server_started for batch in batches)
    titles = {notice.handle: notice.title for batch in batches for notice in batch.jobs}
    assert titles == {left: "lab-job-41", right: "lab-job-42"}
    # one subscription for job events on the server, found again by a second feed
    second = CupsEventFeed(server=restartable_cups.server)
    second.pull()
    assert job_subscriptions(restartable_cups) == [feed.watches[0]] == [second.watches[0]]
    assert second.watches == feed.watches


def test_a_cupsd_restart_is_reported_and_the_feed_carries_on_with_the_same_subscriptions(
    restartable_cups: PrivateCups, small_jpeg: Path
) -> None:
    # given a feed that has pulled once
    restartable_cups.add_printer("restarted", media=PHOTO_MEDIA, device_uri_options="waitjob=false")
    feed = CupsEventFeed(server=restartable_cups.server)
    feed.pull()
    watches = feed.watches

    # when cupsd stops, the feed pulls, and cupsd starts again
    restartable_cups.stop_cupsd()
    with pytest.raises(TransientPrinterError):
        feed.pull()
    restartable_cups.start_cupsd()
    after = feed.pull()

    # then the pull after the start says the server started (events from before it are gone: sweep), the
    # subscriptions survived, and a later job's completion arrives as before
    assert (after.server_started, after.needs_sweep) == (True, True)
    assert feed.watches == watches
    handle = CupsBackend(queue="restarted", server=restartable_cups.server).submit(
        path=small_jpeg, title="lab-job-51"
    )
    batches = pull_until(feed, completed(handle))
    assert all(not batch.needs_sweep for batch in batches)


def test_a_lost_subscription_is_replaced_and_the_batch_is_incomplete(
    restartable_cups: PrivateCups, small_jpeg: Path
) -> None:
    restartable_cups.add_printer("lost", media=PHOTO_MEDIA, device_uri_options="waitjob=false")
    feed = CupsEventFeed(server=restartable_cups.server)
    feed.pull()
    job_watch, restart_watch = feed.watches

    connect(server=restartable_cups.server).cancelSubscription(job_watch)
    replaced = feed.pull()

    assert (replaced.is_complete, replaced.server_started) == (False, False)
    assert feed.watches[0] != job_watch and feed.watches[1] == restart_watch
    assert job_subscriptions(restartable_cups) == [feed.watches[0]]
    backend = CupsBackend(queue="lost", server=restartable_cups.server)
    handle = backend.submit(path=small_jpeg, title="lab-job-61")
    pull_until(feed, completed(handle))


def test_events_cupsd_dropped_before_a_pull_make_the_batch_incomplete(
    restartable_cups: PrivateCups, small_jpeg: Path
) -> None:
    # given a cupsd that keeps only 4 events per subscription, and a feed that has heard everything so far
    with (restartable_cups.directory / "cupsd.conf").open("a") as conf:
        conf.write("MaxEvents 4\n")
    restartable_cups.restart_cupsd()
    restartable_cups.add_printer("busy", media=PHOTO_MEDIA, device_uri_options="waitjob=false")
    feed = CupsEventFeed(server=restartable_cups.server)
    backend = CupsBackend(queue="busy", server=restartable_cups.server)
    warm_up = backend.submit(path=small_jpeg, title="lab-job-70")
    pull_until(feed, completed(warm_up))

    # when three jobs (three events each) complete before the next pull
    handles = [backend.submit(path=small_jpeg, title=f"lab-job-{71 + n}") for n in range(3)]
    deadline = time.monotonic() + SETTLE_SECONDS
    while any(backend.job_info(handle).state is not JobState.COMPLETED for handle in handles):
        assert time.monotonic() < deadline, "jobs did not complete"
        time.sleep(0.1)
    batch = feed.pull()

    # then the feed says events were lost, and names the jobs of the events cupsd still had
    assert (batch.is_complete, batch.server_started) == (False, False)
    assert handles[-1] in [notice.handle for notice in batch.jobs]
    assert feed.pull().is_complete
