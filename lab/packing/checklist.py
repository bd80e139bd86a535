"""What the packing station's page shows of an order: its checklist, and the page token of what it showed.

A count, a pack, an unpack, a ship or a handover is posted with the token of its page; the station takes it
only while the box is still as the page showed it (the items, their printed jobs and reprints, the quality
check's rejections, the counts, its last trip away from the station).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from django.utils.crypto import salted_hmac

from lab.lib.errors import Conflict, DomainError
from lab.orders.models import Order, OrderEvent
from lab.packing.errors import PackingError
from lab.production.errors import ProductionError
from lab.production.models import PrintJob
from lab.production.states import JobStatus

# The token is one keyed digest per part of the box, so that a refusal can say which part changed without the
# page carrying anything a person could read or write by hand: (part, hex digits).
_TOKEN_PARTS = (("status", 8), ("jobs", 8), ("prints", 16))
_TOKEN_SLICES = {
    part: slice(end - width, end)
    for (part, width), end in zip(_TOKEN_PARTS, accumulate(width for _, width in _TOKEN_PARTS), strict=True)
}
TOKEN_LENGTH = sum(width for _, width in _TOKEN_PARTS)


@dataclass(frozen=True)
class JobCount:
    """A printed job of an item, as the station counts it."""

    pk: int
    copies: int
    copies_rejected: int
    copies_packed: int
    is_reprint: bool

    @property
    def copies_counted(self) -> int:
        # A print the quality check rejected (or a reprint replaced) is never in the box, whatever the count.
        return max(0, min(self.copies_packed, self.copies - self.copies_rejected))


@dataclass(frozen=True)
class ItemState:
    """What a page shows of an item, as its token digests it: the order's last status change (an unpack, or a
    trip back to the floor), the item's copies and its printed jobs with their rejections and counts."""

    status_event: int
    position: int
    copies: int
    jobs: tuple[JobCount, ...]


@dataclass(frozen=True)
class ChecklistLine:
    position: int
    product: str
    size: str
    paper: str
    copies: int
    copies_confirmed: int
    copies_reprinted: int = 0  # of its printed copies, those a reprint made
    state: ItemState | None = field(default=None, repr=False)

    @property
    def seen(self) -> str:
        """The page token of this line, posted with its count."""
        return page_token([self.state] if self.state else [])

    @property
    def is_confirmed(self) -> bool:
        return self.copies_confirmed >= self.copies

    @property
    def reprint_note(self) -> str:
        """For the packer, who may have the rejected print on the table beside its replacement."""
        if not self.copies_reprinted:
            return ""
        reprints = "is a reprint" if self.copies_reprinted == 1 else "are reprints"
        rejected = "print" if self.copies_reprinted == 1 else "prints"
        return f"{self.copies_reprinted} of {self.copies} {reprints}: put the rejected {rejected} aside"


def page_token(items: Sequence[ItemState]) -> str:
    """The token of what a page shows of these items: the one function that makes it, for a line and for the
    whole order alike. Keyed (SECRET_KEY), so no token is made but by the station."""
    parts = {
        "status": sorted({item.status_event for item in items}),
        "jobs": [[item.position, [job.pk for job in item.jobs]] for item in items],
        "prints": [
            [
                item.position,
                item.copies,
                [[job.copies, job.copies_rejected, job.copies_packed, job.is_reprint] for job in item.jobs],
            ]
            for item in items
        ],
    }
    return "".join(
        salted_hmac(f"lab.packing.page_token.{part}", json.dumps(parts[part])).hexdigest()[:width]
        for part, width in _TOKEN_PARTS
    )


def page_token_change(posted: str, current: str) -> str | None:
    """None when a posted token is the current one; else what changed since, in the packer's words."""
    if posted == current:
        return None
    if len(posted) != TOKEN_LENGTH:
        return "a reprint, a quality check or an unpack"
    changed = {part for part, where in _TOKEN_SLICES.items() if posted[where] != current[where]}
    if "jobs" in changed:
        return "a reprint"
    if "status" in changed:
        return "it left the packing station and came back"
    return "a quality check, or a count from another page"


def order_seen(checklist: list[ChecklistLine]) -> str:
    """The page token of the whole order, posted with its pack, unpack, ship or handover."""
    return page_token([line.state for line in checklist if line.state])


@dataclass(frozen=True)
class _StepWords:
    noun: str  # "This <noun> was posted without …"
    verb: str  # "… open the order again and <verb> from there."
    doing: str  # "… look at its checklist again before <doing>."
    refusal: str


# The steps a page's token is posted with, in the packer's words: the station's refusals and the staff
# pages' (a form posted without its token) say the same.
_STEPS = {
    "count": _StepWords("count", "count", "counting", "Nothing was confirmed."),
    "pack": _StepWords("pack", "pack", "packing", "It was not packed."),
    "unpack": _StepWords("unpack", "unpack it", "unpacking", "It was not unpacked."),
    "ship": _StepWords("shipment", "ship it", "shipping", "It was not shipped."),
    "hand_over": _StepWords("handover", "hand it over", "handing it over", "It was not handed over."),
}


def page_token_required(seen: str | None, *, step: str) -> str:
    """A post without its page's token says nothing of what the packer saw: refused, not taken unchecked."""
    if not seen:
        words = _STEPS[step]
        raise DomainError(
            PackingError.PAGE_TOKEN_REQUIRED,
            f"This {words.noun} was posted without the state of its page: open the order again and "
            f"{words.verb} from there. {words.refusal}",
        )
    return seen


def order_page_check(order: Order, *, seen: str, step: str) -> list[ChecklistLine]:
    """The order's checklist, once `seen` (the page token of the whole order) is still its token; else the
    step is refused as made from a page the box changed under since (a reprint, a count, an unpack and
    re-pack by another packer): it would act on a box its packer was not shown."""
    checklist = order_checklist(order=order)
    why = page_token_change(seen, order_seen(checklist))
    if why is not None:
        words = _STEPS[step]
        raise Conflict(
            ProductionError.JOB_CHANGED,
            f"Order {order.ref} changed since you opened this page ({why}): look at its checklist again "
            f"before {words.doing}. {words.refusal}",
        )
    return checklist


def _printed_job_counts(order: Order) -> dict[int, list[JobCount]]:
    # One query for every item's printed jobs, not one per item: photo orders run to hundreds of items.
    counts: dict[int, list[JobCount]] = defaultdict(list)
    rows = (
        PrintJob.objects.filter(order=order, status=JobStatus.PRINTED)
        .order_by("pk")
        .values_list("item_id", "pk", "copies", "copies_rejected", "copies_packed", "reprint_of_id")
    )
    for item_id, pk, copies, rejected, packed, reprint_of_id in rows:
        counts[item_id].append(JobCount(pk, copies, rejected, packed, is_reprint=reprint_of_id is not None))
    return counts


def _last_status_event(order: Order) -> int:
    """The order's last status change: an unpack, or a trip back to the floor, makes older pages stale."""
    last = (
        OrderEvent.objects.filter(order=order, kind="status_changed")
        .order_by("-pk")
        .values_list("pk")
        .first()
    )
    return last[0] if last else 0


def order_checklist(*, order: Order) -> list[ChecklistLine]:
    jobs = _printed_job_counts(order)
    status_event = _last_status_event(order)
    lines = []
    for item in order.items.select_related("product").order_by("position"):
        item_jobs = jobs[item.pk]
        confirmed = sum(job.copies_counted for job in item_jobs)
        reprinted = sum(job.copies - job.copies_rejected for job in item_jobs if job.is_reprint)
        lines.append(
            ChecklistLine(
                position=item.position,
                product=item.product.name,
                size=item.product.size_label,
                paper=item.product.paper,
                copies=item.copies,
                copies_confirmed=min(confirmed, item.copies),
                copies_reprinted=min(reprinted, item.copies),
                state=ItemState(status_event, item.position, item.copies, tuple(item_jobs)),
            )
        )
    return lines
