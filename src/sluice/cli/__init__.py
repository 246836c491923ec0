"""The ``sluice`` command line: thin shells that parse options and call the services.

Private modules (``_context``, ``_exit``, ``_output`` …) are what the commands share.
"""

__all__ = [
    "analyze",
    "collect",
    "crypto",
    "decisions",
    "discover",
    "flows",
    "gateway",
    "lab",
    "main",
    "mirrors",
    "model",
    "policy",
    "proposals",
    "registry",
    "serve",
    "services",
    "snapshot",
    "sources",
]
