"""The display (Unicode) form of a canonical indicator of any kind.

The one place that dispatches on the kind: host names, masks and URLs are shown with
:func:`~sluice.registry.names.display_host`, wallet addresses with their checksum mark
(:mod:`sluice.registry.wallets`).  It sits above both modules, so neither imports the other's
dispatch (``wallets`` reads ``names``' :class:`~sluice.registry.names.BadIndicator`, nothing
goes back).
"""

from __future__ import annotations

from sluice.registry.model import Kind
from sluice.registry.names import URL_PARTS, display_host
from sluice.registry.wallets import entry_checksum, wallet_display

__all__ = ["display_indicator"]


def display_indicator(kind: Kind, indicator: str) -> str:
    """Unicode form of a canonical indicator ("" when it is the same as the indicator).

    Args:
        kind: the entry's kind.
        indicator: canonical ASCII indicator.

    Returns:
        The Unicode form, or "" when it equals ``indicator``.
    """
    if kind is Kind.WALLET:
        return wallet_display(indicator, entry_checksum(indicator))
    if "xn--" not in indicator:
        return ""
    if kind is Kind.URL:
        m = URL_PARTS.fullmatch(indicator)
        if m is None:
            return ""
        shown = f"{m.group(1)}://{display_host(m.group(2))}{m.group(3)}"
    else:
        shown = display_host(indicator)
    return "" if shown == indicator else shown
