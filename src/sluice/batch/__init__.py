"""The batch flow path: a whole capture in memory, parsed by numba kernels, flows by sorting;
the same flow records as the streaming path (:mod:`sluice.flows`), bit for bit.
"""

__all__ = [
    "build",
    "flows",
    "index",
    "kernels",
]
