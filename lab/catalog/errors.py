"""Error codes of the catalog (products).

Their HTTP statuses are mapped in api/errors.py; the values are the API's public `code` strings.
"""

from __future__ import annotations

from enum import StrEnum


class CatalogError(StrEnum):
    PRODUCT_SIZE_UNPRINTABLE = "product_size_unprintable"  # no printer media of that size exists
    # Placement of a photo on a product (lab.catalog.placement): an item's crop, focal point and border.
    CROP_OUT_OF_BOUNDS = "crop_out_of_bounds"  # the crop rectangle is not inside 0..1 of the upright photo
    CROP_ASPECT_MISMATCH = "crop_aspect_mismatch"  # off the print's image area aspect by more than 1 %
    CROP_AND_FOCAL_POINT = "crop_and_focal_point"  # an item gives one of them, never both
    CROP_REQUIRES_FILL = "crop_requires_fill"  # `fit` prints the whole photo: no crop, no focal point
    FOCAL_POINT_OUT_OF_BOUNDS = "focal_point_out_of_bounds"  # not inside 0..1 of the upright photo
    BORDER_OUT_OF_RANGE = "border_out_of_range"  # negative, or wider than 25 % of the paper's short side
