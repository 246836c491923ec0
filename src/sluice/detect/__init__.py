"""Recognition: the detectors (fingerprints, the fully-encrypted test, the model), the combiner
that turns their opinions into one verdict per flow with its evidence, and their evaluation.

Rule modules are private (``_vpn``, ``_proxy`` …): they are reached through
:mod:`sluice.detect.fingerprints`.
"""

__all__ = [
    "combiner",
    "dataset",
    "evaluate",
    "fet",
    "fingerprints",
    "forest",
    "heldout",
    "model",
    "modeldir",
    "ndpi",
    "service",
    "verdict",
]
