"""The library's version, sent in CONNECT."""

__version__ = "0.1.0"
