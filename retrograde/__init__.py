"""retrograde: record-and-replay reverse debugging for Linux x86-64 programs."""

__version__ = "0.1.0"
