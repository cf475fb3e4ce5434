"""dkmonitor: audit shared, multi-user storage."""

__version__ = "0.1.0"
