"""Knowledge about services: the catalogue of VPN, proxy and circumvention services and of the shared
infrastructure (CDNs, clouds, hosters) that carries them (:mod:`sluice.services.catalogue`, read from
its TOML file by :mod:`sluice.services.catalogue_toml`)."""

from __future__ import annotations

from sluice.services.catalogue import (
    Catalogue,
    Service,
    ServiceMatch,
    SharedEntry,
    SharedInfra,
)
from sluice.services.catalogue_toml import default_catalogue, load_catalogue, loads_catalogue

__all__ = [
    "Catalogue",
    "Service",
    "ServiceMatch",
    "SharedEntry",
    "SharedInfra",
    "default_catalogue",
    "load_catalogue",
    "loads_catalogue",
]
