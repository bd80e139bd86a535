"""The Redis broker transport the lab's Celery uses (lab/celery.py `broker_transport`): kombu's own, with one
change: an ack or reject that Redis did not take still frees the message's prefetch slot.

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

from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual


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
