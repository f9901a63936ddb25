"""lenscal: calibrate strong-gravitational-lens finders on DESI Legacy Surveys DR10 cutouts."""

__version__ = "0.1.0"
