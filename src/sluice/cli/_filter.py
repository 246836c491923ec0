"""``--filter EXPR`` on commands that read capture files: filtered copies, then the usual work."""

from __future__ import annotations

__all__ = ["FILTER_HELP", "filtered_paths"]

from contextlib import ExitStack

import click

from sluice.cli._exit import InputFailure, UsageFailure
from sluice.errors import CaptureError, ConfigError

FILTER_HELP = (
    "Only packets matching this pcap-filter(7) expression ('tcp port 443'), as `tcpdump -r FILE "
    "EXPR` selects them (libpcap's compiler); flow ids then count the packets that passed."
)
"""``--help`` text of ``--filter`` on file commands."""


def filtered_paths(stack: ExitStack, captures: tuple[str, ...], bpf: str | None) -> list[str]:
    """The captures, or with a filter their filtered copies (removed when ``stack`` closes).

    Each copy has its capture's base name, so rows name captures as without a filter. The packets
    kept are reported on stderr. A rejected expression exits 2, an unreadable capture 3.
    """
    if not bpf:
        return list(captures)
    from sluice.io.bpf import filtered_captures

    try:
        reports = stack.enter_context(filtered_captures(captures, bpf))
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None
    except CaptureError as exc:
        raise InputFailure(f"{exc} [{exc.reason}]") from None
    for r in reports:
        click.echo(f"{r.path}: filter '{bpf}': {r.kept_text()}", err=True)
    return [r.filtered_path for r in reports]
