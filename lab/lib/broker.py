"""The broker transports the lab's Celery uses (lab/celery.py `broker_transport`): kombu's own, each with one
change. Redis: an ack or reject that Redis did not take still frees the message's prefetch slot. The
embedded filesystem broker: a message file is written whole before it is put in the queue folder, and one
that cannot be read is dropped, not fatal.

kombu's Redis QoS frees the slot only after Redis has answered. When Redis went away while a task ran (a
restart, a failover), the ack failed, Celery logged "Couldn't ack" and went on, and the slot stayed taken for
good: with one slot a process (worker_prefetch_multiplier=1) the worker never read its queues again, and
paid orders waited until a person restarted it (tests/e2e/test_broker_ack.py). With the slot freed, the
consumer polls again, finds the broken connection and reconnects as after any broker restart.

The message Redis did not hear the ack of stays in its unacked set and is delivered again once its
visibility timeout has passed: at least once, as every task of the lab is written for (README: what is at
least once).
"""

from __future__ import annotations

import logging
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem as kombu_filesystem
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps

logger = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    # `_remove_from_indices` is kombu's own (private, so absent from the type stubs): what its ack does first.
    def ack(self, delivery_tag: Any) -> None:
        try:
            self._remove_from_indices(delivery_tag).execute()  # type: ignore[attr-defined]
        finally:
            virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        try:
            if requeue:
                self.restore_by_tag(delivery_tag, leftmost=True)
            else:
                self._remove_from_indices(delivery_tag).execute()  # type: ignore[attr-defined]
        finally:
            virtual.QoS.ack(self, delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


class FilesystemChannel(kombu_filesystem.Channel):
    """kombu's filesystem broker (the embedded default, var/broker/) created a message's file where readers
    look and then wrote it, and its reader took the file without the writer's lock: a worker that read one
    still empty or half written stopped with "Unrecoverable error: JSONDecodeError", and `./scripts/run`
    then stopped the whole lab (kombu #1551; seen after some 19,000 messages, and at once with an empty file
    in the folder: tests/e2e/test_embedded_broker.py)."""

    # (The stubs of kombu's base channel and of its filesystem channel name the payload differently.)
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        # Written under a dot-name the reader passes over (its name check wants `<n>_<uuid>.<queue>.msg`),
        # then renamed into place: a reader sees the whole file or none.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        path = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as file:
                file.write(dumps(payload).encode())
            os.replace(partial, path)
        except OSError as error:
            raise ChannelError(f"Cannot add file {name!r} to the queue folder") from error

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        while True:
            try:
                return super()._get(queue)
            except ValueError:
                # Taken from the folder and not JSON (written by something else, or cut short): dropped.
                # What it asked for is left to the reconcile sweeps, as for any lost message.
                logger.error("broker message file unreadable, dropped queue=%s", queue)


class FilesystemTransport(kombu_filesystem.Transport):
    Channel = FilesystemChannel
