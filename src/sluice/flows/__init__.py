"""Flows: the one packet loop, the streaming flow table, the flow record and the application
inspectors that fill its metadata.
"""

__all__ = [
    "app",
    "loop",
    "record",
    "stats",
    "table",
]
