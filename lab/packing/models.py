"""Packing slips (the PDF that travels with the box) and shipments."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class PackingSlip(models.Model):
    order = models.OneToOneField("orders.Order", on_delete=models.CASCADE, related_name="packing_slip")
    pdf = models.BinaryField()
    pages = models.PositiveSmallIntegerField()
    rendered_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"slip:{self.order_id}"
