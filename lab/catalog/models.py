"""Products the lab sells: a print size on a paper, its price in minor units and its minimum DPI."""

from __future__ import annotations

from typing import ClassVar

from django.db import models


class Paper(models.TextChoices):
    LUSTRE = "lustre"
    GLOSSY = "glossy"
    MATTE = "matte"
    METALLIC = "metallic"


class Product(models.Model):
    sku = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    width_in = models.DecimalField(max_digits=5, decimal_places=2)  # short side
    height_in = models.DecimalField(max_digits=5, decimal_places=2)  # long side
    paper = models.CharField(max_length=16, choices=Paper.choices)
    price_minor = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    min_dpi = models.PositiveIntegerField(default=150)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["width_in", "height_in", "paper"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(condition=models.Q(width_in__gt=0), name="product_width_positive"),
            models.CheckConstraint(
                condition=models.Q(height_in__gte=models.F("width_in")), name="product_long_side"
            ),
        ]

    def __str__(self) -> str:
        return self.sku

    @property
    def size_label(self) -> str:
        return f"{self.width_in.normalize():f}x{self.height_in.normalize():f}"
