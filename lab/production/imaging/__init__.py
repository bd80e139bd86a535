"""Building blocks of the print rasterizer: source probing, geometry, colour, and the two resampling engines.
Production code calls lab.production.raster.rasterize; these modules are its parts, not a second API."""
