"""sluice: a traffic policy engine.

A register of blocked resources, an engine that recognises what the register names and what tries
to get around it, and explained, auditable decisions.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
