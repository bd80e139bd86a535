"""Packing slips (the PDF that travels with the box) and shipments."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class PackingSlip(models.Model):
    order = models.OneToOneField("orders.Order", on_delete=models.CASCADE, related_name="packing_slip")
    pdf = models.BinaryField()
    pages = models.PositiveSmallIntegerField()
    rendered_at = models.DateTimeField(default=timezone.now)
    # The seal (lab/lib/seals.py) of the PDF for this order: a slip written in the database alone (another
    # order's slip moved here, or a PDF someone rendered with their own address) is not served or printed;
    # the slip is rendered again from the order (lab/packing/services.py), as is one without a seal (stored
    # before slips had one, or by a process of a version before them: the database's default, packing/0003).
    seal = models.CharField(max_length=64, blank=True, db_default="")

    def __str__(self) -> str:
        return f"slip:{self.order_id}"
