"""jasper: distil several text-embedding models into one small, fast student."""

__version__ = "0.1.0"
