"""TMC Console: a desktop console for USBTMC/USB488 instruments."""

__version__ = "0.1.0"
