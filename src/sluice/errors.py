"""The error types of sluice.

Dissectors raise only :class:`DecodeError`; the one packet loop counts them by ``reason``.
Configuration problems raise :class:`ConfigError` at load time; capture files that cannot be
read at all raise :class:`CaptureError`.
"""

from __future__ import annotations

__all__ = ["CaptureError", "ConfigError", "DecodeError", "SluiceError"]


class SluiceError(Exception):
    """Base class of every error sluice raises on purpose."""


class DecodeError(SluiceError, ValueError):
    """Bytes that do not decode as the protocol says they should.

    Attributes:
        reason: stable dotted code such as ``tcp.bad_data_offset`` (public output).
        layer: the protocol layer that failed (``tcp``).
        offset: byte offset into the buffer being decoded where the failure was found.
    """

    def __init__(self, reason: str, offset: int = 0, detail: str = "") -> None:
        self.reason = reason
        self.layer = reason.split(".", 1)[0]
        self.offset = offset
        self.detail = detail
        super().__init__(f"{reason} at offset {offset}" + (f": {detail}" if detail else ""))


class CaptureError(SluiceError):
    """A capture source that cannot be opened or has no valid header.

    Attributes:
        reason: stable dotted code (``capture.bad_magic``, ``capture.not_found`` ...).
        path: the file or interface concerned.
    """

    def __init__(self, reason: str, path: str, detail: str = "") -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {detail or reason}")


class ConfigError(SluiceError):
    """A configuration value that is invalid; ``option`` names it."""

    def __init__(self, option: str, detail: str) -> None:
        self.option = option
        super().__init__(f"{option}: {detail}")
