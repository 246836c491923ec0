"""Importers: one parser per input format, all giving a :class:`ParseResult`.

:func:`parse_files` reads one or more files of one format (several files are the parts of one
split dump, ``dump-00.csv`` ...), refuses damaged input before anything changes and returns one
result; :func:`detect_format` guesses the format from a file's first bytes;
:func:`declared_source` reads the list's own name from its header, where the format has one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from sluice.registry.choices import FORMATS, LIST_FORMATS
from sluice.registry.importers._common import ParseResult, Progress
from sluice.registry.importers._input import MAX_INPUT_BYTES, Digest, check_damage, read_input
from sluice.registry.importers.lists import parse_list
from sluice.registry.importers.rkn_csv import parse_rkn_csv
from sluice.registry.importers.rkn_xml import parse_rkn_xml
from sluice.registry.importers.rpz import parse_rpz
from sluice.registry.importers.wallets import SDN_PHRASE, parse_sdn, parse_wallets_csv
from sluice.registry.model import RegistryError
from sluice.registry.names import BadIndicator, canon_ip

__all__ = [
    "FORMATS",
    "ParseResult",
    "declared_source",
    "detect_format",
    "parse_files",
    "parse_list",
    "parse_rkn_csv",
    "parse_rkn_xml",
    "parse_rpz",
    "parse_sdn",
    "parse_wallets_csv",
]


_DUMP_PART = re.compile(r"dump(?:-\d+)?\.csv$")
_WALLETS_HEADER = re.compile(r'"?chain"?\s*,\s*"?address"?\s*(?:,|$)', re.IGNORECASE)


def detect_format(data: bytes, path: str = "") -> str:
    """Guess an input's format from its first lines (and, for RKN parts, its name).

    Args:
        data: the file's bytes (only the first 64 KiB are looked at).
        path: file name.

    Returns:
        One of :data:`FORMATS`.
    """
    head = data[:65536].decode("latin-1")
    first = head.lstrip("\ufeff\xef\xbb\xbf").lstrip()
    if first.startswith("Updated:") or _DUMP_PART.search(Path(path).name):
        return "rkn-csv"
    if first.startswith("<?xml") or "<reg:register" in head[:4096]:
        return "rkn-xml"
    lines = [ln.strip() for ln in head.splitlines()[:200]]
    data_lines = [ln for ln in lines if ln and ln[0] not in "#!;["]
    first_data = next((ln.strip() for ln in first.splitlines()[:200] if ln.strip()[:1] not in ("", "#")), "")
    if _WALLETS_HEADER.match(first_data):
        return "wallets"
    if SDN_PHRASE.search(head):
        return "sdn"
    for ln in lines:
        up = ln.upper().split(";")[0].split()
        if ln.startswith(("$ORIGIN", "$TTL")) or "SOA" in up[1:4]:
            return "rpz"
    if any(ln.startswith("[Adblock") for ln in lines) or (data_lines and data_lines[0].startswith("||")):
        return "adblock"
    if not data_lines:
        return "domains"
    d0 = data_lines[0]
    if re.search(r";\s*SBL\d+", d0):
        return "drop"
    tok = d0.split()
    if len(tok) >= 2 and _is_ip(tok[0]) and not tok[1].startswith(("#", ";")):
        return "hosts"
    if sum(_is_ip(ln.split()[0].split(";")[0]) for ln in data_lines[:50]) > 0.9 * min(50, len(data_lines)):
        return "cidrs"
    return "domains"


_TITLE = re.compile(r"^[#!;]\s*Title\s*:\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)
_SPAMHAUS = re.compile(r"^;\s*Spamhaus\s+(E?DROP)\b", re.MULTILINE | re.IGNORECASE)
_RPZ_ORIGIN = re.compile(r"^\$ORIGIN\s+(\S+)", re.MULTILINE | re.IGNORECASE)
_RPZ_SOA_OWNER = re.compile(r"^([^\s;$@]\S*)\s+(?:\S+\s+){0,3}SOA\s", re.MULTILINE | re.IGNORECASE)
_DATE_LIKE = re.compile(r"\d{4}[-_./]?\d{2}[-_./]?\d{2}(?:[T _-]?\d{2}[:.]?\d{2}(?:[:.]?\d{2})?)?")
_FIXED_SOURCE = {"rkn-csv": "rkn", "rkn-xml": "rkn", "sdn": "ofac-sdn"}


def source_slug(text: str) -> str:
    """A stable source name from a list's title: lower case, dates dropped, ``-`` between words.

    ``HaGeZi's Fake DNS Blocklist`` gives ``hagezis-fake-dns-blocklist``; a date in the title
    (``... 2024-02-27``) is dropped, so next week's copy is the same source.
    """
    t = _DATE_LIKE.sub(" ", text.lower()).replace("'", "").replace("\u2019", "")
    return re.sub(r"[^\w.]+", "-", t).strip("-.")


def declared_source(data: bytes, fmt: str) -> str:
    """The source name an input declares in its header ("" when its format or copy has none).

    RKN dumps are ``rkn`` and OFAC SDN lists ``ofac-sdn``; a list with a ``# Title:`` (hosts,
    domains, CIDRs, wallets CSV) or ``! Title:`` (Adblock) header is named after the title
    (:func:`source_slug`); Spamhaus lists are ``spamhaus-drop`` or ``spamhaus-edrop``; an RPZ
    zone is its origin (``$ORIGIN``, or the owner of its SOA record).  Never the file's name:
    dated file names would make each day's copy a new source, and nothing would be removed.

    Args:
        data: the input's bytes (the first 64 KiB are read).
        fmt: its format.
    """
    if fmt in _FIXED_SOURCE:
        return _FIXED_SOURCE[fmt]
    head = data[:65536].decode("utf-8", "replace")
    if fmt == "rpz":
        m = _RPZ_ORIGIN.search(head) or _RPZ_SOA_OWNER.search(head)
        return m.group(1).rstrip(".").lower() if m else ""
    if fmt == "drop":
        sp = _SPAMHAUS.search(head)
        if sp is not None:
            return f"spamhaus-{sp.group(1).lower()}"
    m = _TITLE.search(head)
    return source_slug(m.group(1)) if m else ""


def _is_ip(text: str) -> bool:
    try:
        canon_ip(text)
    except BadIndicator:
        return False
    return True


def parse_files(
    paths: Sequence[str | Path],
    fmt: str = "auto",
    *,
    source: str = "",
    max_bytes: int = MAX_INPUT_BYTES,
    progress: Progress | None = None,
    digest: Digest | None = None,
) -> ParseResult:
    """Read and parse the files of one import, reading each once.

    Args:
        paths: the files (several only for the parts of a split RKN CSV dump).
        fmt: one of :data:`FORMATS` or ``auto``.
        source: the list name (authority of list decisions); "" takes the name the first
            file declares (:func:`declared_source`, kept in ``result.source``; "" when none).
        max_bytes: size limit per file.
        progress: called with bytes processed over all files.
        digest: a hash object fed every byte read, file after file (the import's digest).

    Returns:
        The parse result.

    Raises:
        RegistryError: the file cannot be read, or is refused as damaged, truncated, binary,
            badly encoded or empty (nothing has changed anywhere then).
    """
    if not paths:
        raise RegistryError("registry.no_input", "no file given")
    if fmt != "auto" and fmt not in FORMATS:
        raise RegistryError("registry.bad_format", f"unknown format {fmt!r}")
    if len(paths) > 1 and fmt not in ("auto", "rkn-csv"):
        raise RegistryError("registry.bad_format", "several files only for RKN CSV dump parts")
    done = 0

    def prog(n: int) -> None:
        if progress is not None:
            progress(done + n)

    result: ParseResult | None = None
    for i, p in enumerate(paths):
        path = str(p)
        data = read_input(path, max_bytes, digest)
        f = detect_format(data, path) if fmt == "auto" else fmt
        if i == 0 and not source:
            source = declared_source(data, f)
        if i > 0 and f != "rkn-csv":
            raise RegistryError("registry.bad_format", "later parts must be RKN CSV", path)
        if f == "rkn-csv":
            result = parse_rkn_csv(data, path, result=result, first_part=i == 0, progress=prog)
        elif f == "rkn-xml":
            result = parse_rkn_xml(data, path, prog)
        elif f == "rpz":
            result = parse_rpz(data, path, source=source, progress=prog)
        elif f in LIST_FORMATS:
            result = parse_list(data, f, path, source=source, progress=prog)
        elif f == "wallets":
            result = parse_wallets_csv(data, path, source=source, progress=prog)
        elif f == "sdn":
            result = parse_sdn(data, path, source=source, progress=prog)
        done += len(data)
    assert result is not None
    result.path = ";".join(str(p) for p in paths)
    result.source = source
    check_damage(result)
    return result
