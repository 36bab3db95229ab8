"""msgf: Multi-Scale Glance-and-Focus Networks for cheap high-resolution recognition."""

__version__ = "0.1.0"
