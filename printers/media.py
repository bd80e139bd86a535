"""Print sizes in inches <-> IPP PWG 5101.1 media names ("na_index-4x6_4x6in").
Sizes are orientation-independent: 6x4 and 4x6 are the same paper."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

MILLIMETRES_PER_INCH = Decimal("25.4")


class UnknownMediaError(ValueError):
    """No PWG media name is known for this size, a size is not one (not a positive number of inches), or a
    media name cannot be parsed."""


@dataclass(frozen=True, order=True)
class PrintSize:
    """A paper size in inches, short side first so that orientation never matters."""

    short_inches: Decimal
    long_inches: Decimal

    @classmethod
    def of(cls, *, width_inches: Decimal | int | str, height_inches: Decimal | int | str) -> PrintSize:
        """UnknownMediaError for what is not a size: not a number, not positive, or past what a Decimal holds
        (`1e999999999` overflows when normalized: before, that and a size of 0 escaped as other errors)."""
        try:
            width = Decimal(str(width_inches))
            height = Decimal(str(height_inches))
            if width <= 0 or height <= 0:
                raise UnknownMediaError(f"print size must be positive: {width}x{height}")
            return cls(
                short_inches=min(width, height).normalize(), long_inches=max(width, height).normalize()
            )
        except ArithmeticError as error:  # decimal's InvalidOperation (not a number, NaN), Overflow
            raise UnknownMediaError(f"not a print size: {width_inches}x{height_inches}") from error

    @property
    def label(self) -> str:
        """'4x6', '3.5x5': how a lab names the size."""
        return f"{_plain(self.short_inches)}x{_plain(self.long_inches)}"


_SIZE_TO_PWG: dict[tuple[Decimal, Decimal], str] = {
    (Decimal("3.5"), Decimal("5")): "oe_photo-l_3.5x5in",
    (Decimal("4"), Decimal("6")): "na_index-4x6_4x6in",
    (Decimal("5"), Decimal("7")): "na_5x7_5x7in",
    (Decimal("8"), Decimal("10")): "na_govt-letter_8x10in",
    (Decimal("8.5"), Decimal("11")): "na_letter_8.5x11in",
    (Decimal("11"), Decimal("14")): "na_11x14_11x14in",
}

# PWG self-describing names end in "_<width>x<height>in" or "_<width>x<height>mm".
_SELF_DESCRIBING = re.compile(r"_(?P<width>\d+(?:\.\d+)?)x(?P<height>\d+(?:\.\d+)?)(?P<unit>in|mm)$")


def pwg_media_for_size(*, width_inches: Decimal | int | str, height_inches: Decimal | int | str) -> str:
    """The PWG media name for a print size, e.g. 4x6 or 6x4 -> 'na_index-4x6_4x6in'."""
    size = PrintSize.of(width_inches=width_inches, height_inches=height_inches)
    try:
        return _SIZE_TO_PWG[(size.short_inches, size.long_inches)]
    except KeyError:
        raise UnknownMediaError(f"no PWG media name known for {size.label} in") from None


def size_for_pwg_media(name: str) -> PrintSize:
    """Parse a PWG self-describing media name to inches; millimetre sizes are rounded to 0.01 in."""
    match = _SELF_DESCRIBING.search(name.strip())
    if match is None:
        raise UnknownMediaError(f"not a PWG self-describing media name: {name!r}")
    width = Decimal(match["width"])
    height = Decimal(match["height"])
    if match["unit"] == "mm":
        hundredth = Decimal("0.01")
        width = (width / MILLIMETRES_PER_INCH).quantize(hundredth)
        height = (height / MILLIMETRES_PER_INCH).quantize(hundredth)
    return PrintSize.of(width_inches=width, height_inches=height)


def media_matches_size(
    name: str, *, width_inches: Decimal | int | str, height_inches: Decimal | int | str
) -> bool:
    """True when a printer's media name is the given print size, in either orientation."""
    try:
        return size_for_pwg_media(name) == PrintSize.of(
            width_inches=width_inches, height_inches=height_inches
        )
    except UnknownMediaError:
        return False


def _plain(value: Decimal) -> str:
    # normalize() turns 10 into 1E+1; format as a plain number.
    return format(value.normalize(), "f")
