"""Roskomnadzor register, CSV dump (``dump.csv`` and its ``dump-NN.csv`` parts, as z-i publishes).

Format: cp1251 (UTF-8 also accepted), first line ``Updated: 2016-06-13 12:04:00 +0000``, then one
row per register record: ``ips;domain;urls;authority;decision number;decision date``.  Fields
holding ``;`` are quoted (``"..."``, quotes doubled inside); several IPs or URLs in one field are
joined by `` | `` or ``|``.  A split dump repeats no header after its first part.

Kind inference, as operators apply the register (one row may give several entries):

1. a domain written ``*.d`` gives a ``domain-mask`` (and nothing else);
2. each ``http://`` URL gives a ``url`` entry;
3. each URL of another scheme (``https://``, ``newcamd525://`` ...) gives a ``domain`` entry for
   its host (the path cannot be seen on the wire) or an ``ip`` entry when the host is an address;
4. a domain with no URL gives a ``domain`` entry;
5. only when neither domain nor URL is present do the IPs and subnets become ``ip``/``subnet``
   entries (otherwise they are the addresses the site resolved to, not what is blocked).

A row that has one invalid indicator is rejected whole, with the reason.
"""

from __future__ import annotations

import csv
import re
from itertools import compress

import numpy as np

from sluice.registry.display import display_indicator
from sluice.registry.importers._common import KIND_LETTER, ParseResult, Progress
from sluice.registry.importers._csvscan import scan_rows
from sluice.registry.importers._input import MAX_LINE_CHARS, check_mojibake, check_tail, decode_text
from sluice.registry.model import Kind, LegalBasis, RegistryError
from sluice.registry.names import (
    BadIndicator,
    canon_host,
    canon_ip,
    canon_mask,
    split_url,
)

__all__ = ["add_record", "parse_rkn_csv", "split_urls"]

FMT = "rkn-csv"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_IP_SEP = re.compile(r"\s*\|\s*")
_URL_SEP = re.compile(r"\s*\|\s*(?=[A-Za-z][A-Za-z0-9+.-]{0,30}://)")


def split_urls(field: str) -> list[str]:
    """Split a URL field on ``|`` separators, but never inside a URL.

    A ``|`` splits only where a new ``scheme://`` follows it: real rows hold URLs with ``|`` in
    their query string (``utm_campaign=RF_|_Magnity``).
    """
    f = field.strip()
    return [u for u in _URL_SEP.split(f) if u] if f else []


def add_record(
    result: ParseResult,
    ips: list[str] | str,
    domains: list[str],
    urls: list[str],
    basis: LegalBasis,
    block_type: str = "default",
) -> None:
    """Add the entries of one register record (CSV row or XML ``content``).

    Args:
        result: where the entries go.
        ips: addresses and subnets as text (or one field joined by ``|``, split only when
            the record is an IP block).
        domains: domains as text (``*.d`` for masks).
        urls: URLs as text.
        basis: the record's decision.
        block_type: the XML ``blockType`` (``default``, ``domain``, ``domain-mask``, ``ip``).

    Raises:
        BadIndicator: when any indicator of the record is invalid (nothing is added then).
    """
    out: list[tuple[Kind, str]] = []
    domains = [d.strip() for d in domains if d.strip()]
    if block_type == "ip":
        out.extend(canon_ip(ip) for ip in _ip_list(ips))
    elif block_type in ("domain-mask", "domain") or any(d.startswith("*.") for d in domains):
        for d in domains:
            if block_type == "domain-mask" or d.startswith("*."):
                out.append((Kind.DOMAIN_MASK, canon_mask(d if d.startswith("*.") else "*." + d)))
            else:
                out.append(_domain_or_ip(d))
    else:
        for u in urls:
            scheme, host, canon = split_url(u)
            if scheme == "http":
                out.append((Kind.URL, canon))
            else:
                out.append(_domain_or_ip(host))
        if not urls:
            out.extend(_domain_or_ip(d) for d in domains)
        if not urls and not domains:
            out.extend(canon_ip(ip) for ip in _ip_list(ips))
    if not out:
        raise BadIndicator("empty_record", "")
    for kind, ind in out:
        result.add(kind, ind, display_indicator(kind, ind), basis)


def _ip_list(ips: list[str] | str) -> list[str]:
    if isinstance(ips, str):
        return [x for x in _IP_SEP.split(ips.strip()) if x]
    return ips


def _domain_or_ip(text: str) -> tuple[Kind, str]:
    t = text.strip()
    if t.replace(".", "").isdigit() or ":" in t:
        return canon_ip(t)
    return Kind.DOMAIN, canon_host(t)


_UNSEEN = object()
_FAST_URL = re.compile(r"(https?)://([a-z0-9.-]+)(/[!$-~]*)?")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_CANON_V4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _fast_row(res: ParseResult, ips: str, domain: str, url: str, basis: LegalBasis) -> bool:
    """The commonest row shapes, without the general machinery; False when not one of them."""
    if not url:
        d = domain.strip()
        if d:
            if d.isascii() and not d.startswith("*.") and not d[-1].isdigit():
                res.add(Kind.DOMAIN, canon_host(d), "", basis)
                return True
            return False
        if _CANON_V4.fullmatch(ips) is not None:
            res.add(Kind.IP, ips, "", basis)
            return True
        return False
    m = _FAST_URL.fullmatch(url)
    if m is None or m.group(2)[-1:].isdigit() or domain.startswith("*"):
        return False
    host = canon_host(m.group(2))
    if m.group(1) == "https":
        res.add(Kind.DOMAIN, host, "", basis)
    else:
        res.add(Kind.URL, f"http://{host}{m.group(3) or '/'}", "", basis)
    return True


def _fields(line: str) -> list[str]:
    if '"' not in line:
        return line.split(";")
    try:
        return next(csv.reader([line], delimiter=";", strict=True))
    except (csv.Error, StopIteration):
        return []


class _SlowRows(ParseResult):
    """Collects the entries of the rows the compiled fast path left to Python, with row order."""

    __slots__ = ("basis", "keys", "owner", "seq", "where")

    def __init__(self, owner: ParseResult) -> None:
        super().__init__(owner.fmt)
        self.owner = owner
        self.keys: list[str] = []
        self.seq: list[int] = []
        self.basis: list[int] = []
        self.where = 0

    def add(self, kind: Kind, indicator: str, display: str, basis: LegalBasis) -> None:
        """Record one entry of the current row."""
        self.keys.append(KIND_LETTER[kind.value] + indicator)
        self.seq.append(self.where)
        self.basis.append(self.owner.basis_index(basis))


def _encoding(data: bytes, path: str) -> str:
    """``utf-8-sig`` or ``cp1251``, as :func:`decode_text` decides (same errors).

    The decoded text is checked for mojibake and UTF-8 lines in a cp1251 file
    (:func:`~sluice.registry.importers._input.check_mojibake`) outside the URL field: the
    register itself holds URLs written in raw UTF-8 (the 2018 dump has one, ``adf.party``), but
    never a garbled decision or domain.
    """
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError:
        check_mojibake(data, "cp1251", path, keep=_without_url)  # UTF-8 lines may hold 0x98
        if b"\x98" in data:  # the one byte cp1251 leaves undefined
            decode_text(data, path, "cp1251")
        return "cp1251"
    check_mojibake(data, "utf-8", path, keep=_without_url)
    return "utf-8-sig"


def _without_url(line: str) -> str:
    """A row without its URL field (the whole line when it is not six fields)."""
    f = _fields(line)
    return ";".join(f[:2] + f[3:]) if len(f) == 6 else line


def parse_rkn_csv(
    data: bytes,
    path: str = "",
    *,
    result: ParseResult | None = None,
    first_part: bool = True,
    progress: Progress | None = None,
    fast: bool = True,
) -> ParseResult:
    """Parse one RKN CSV dump (or one part of a split dump).

    The common row shapes are decided by the compiled scanner
    (:func:`~sluice.registry.importers._csvscan.scan_rows`) straight from the bytes; every other
    line goes through the Python parser below, which alone rejects (with line numbers).

    Args:
        data: the file's bytes.
        path: the file name, for messages.
        result: a result to add to (later parts of a split dump), or None for a new one.
        first_part: whether the ``Updated:`` header is required.
        progress: called with bytes processed.
        fast: False sends every line through the Python parser (the reference the compiled
            fast path is tested against).

    Returns:
        The parse result (rows counted, rejects listed).

    Raises:
        RegistryError: ``registry.rkn_csv.no_header``, ``registry.truncated``,
            ``registry.bad_encoding``, ``registry.mixed_encoding``, ``registry.mojibake``.
    """
    res = result if result is not None else ParseResult(FMT)
    res.path = path
    enc = _encoding(data, path)
    line_enc = "utf-8" if enc == "utf-8-sig" else enc
    cut = check_tail(data)
    if progress is not None:
        progress(0)
    arr = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(arr == 10)
    base = res.seq_base
    res.seq_base = base + len(nl) + 2
    slow = _SlowRows(res)
    bases: dict[tuple[str, str, str], object] = {}
    header_seen = False

    def line_at(lineno: int) -> None:
        """Parse one line with the Python parser (lineno is 1-based)."""
        nonlocal header_seen
        k = lineno - 1
        start = 0 if k == 0 else int(nl[k - 1]) + 1
        terminated = k < len(nl)
        end = int(nl[k]) if terminated else len(data)
        raw = data[start:end].decode(enc if k == 0 else line_enc)
        if len(raw) > MAX_LINE_CHARS:
            res.reject(lineno, f"{res.fmt}.line_too_long", raw[:80])
            if not terminated:
                raise RegistryError("registry.truncated", "last line is too long and unterminated", res.path)
            return
        line = raw.rstrip("\r")
        if lineno == 1 and line.startswith("Updated:"):
            header_seen = True
            if first_part:
                res.dump_time = line[len("Updated:") :].strip()
            return
        if lineno == 1 and first_part:
            raise RegistryError("registry.rkn_csv.no_header", "first line is not 'Updated: ...'", path)
        if not line.strip():
            return
        f = _fields(line)
        basis = None
        if len(f) == 6:
            bkey = (f[3], f[4], f[5])
            basis = bases.get(bkey, _UNSEEN)
            if basis is _UNSEEN:
                basis = bases[bkey] = _basis(f[3], f[4], f[5])
        if not terminated and (cut or basis is None):
            raise RegistryError(
                "registry.truncated",
                f"last line {lineno} is cut" + (" at a 4 KiB boundary" if cut else ""),
                path,
            )
        res.rows += 1
        if len(f) != 6:
            res.reject(lineno, "rkn_csv.bad_field_count", line)
            return
        if not isinstance(basis, LegalBasis):
            res.reject(lineno, "rkn_csv.bad_date", line)
            return
        slow.where = base + lineno
        try:
            if not _fast_row(slow, f[0], f[1], f[2], basis):
                add_record(slow, f[0], [f[1]], split_urls(f[2]), basis)
        except BadIndicator as exc:
            res.reject(lineno, f"rkn_csv.{exc.reason}", line)

    if len(data):
        line_at(1)
    n_body = max(0, len(nl) - 1)  # terminated lines after the first
    fast_keys = np.zeros(0, np.uint8)
    n_fast = 0
    fast_lines = np.zeros(0, np.int64)
    fast_basis = np.zeros(0, np.int32)
    slow_lines: list[int] = []
    if n_body and not fast:
        slow_lines = list(range(2, n_body + 2))
    elif n_body:
        out, _, _, kind, dec, ds, de, _ = scan_rows(arr, int(nl[0]) + 1, n_body)
        ids = []
        for s, e in zip(ds.tolist(), de.tolist(), strict=True):
            a, n, d = data[s:e].decode(line_enc).split(";")
            b = _basis(a, n, d)
            ids.append(-1 if b is None else res.basis_index(b))
        dec_basis = np.asarray([*ids, -1], np.int32)[dec]  # dec = -1 for slow lines
        good = (kind != 0) & (dec_basis >= 0)
        idx = np.flatnonzero(good)
        n_fast = idx.shape[0]
        fast_lines = idx + 2
        fast_basis = dec_basis[idx]
        fast_keys = out
        if n_fast != np.count_nonzero(kind):  # rows whose decision is bad go to the slow path
            keep = good[kind != 0].tolist()
            kept = compress(out.tobytes().decode("ascii").split("\n"), keep)
            fast_keys = np.frombuffer("".join(k + "\n" for k in kept).encode("ascii"), np.uint8)
        slow_lines = (np.flatnonzero(~good) + 2).tolist()
    for lineno in slow_lines:
        line_at(lineno)
    if len(data) and not data.endswith(b"\n") and len(nl):
        line_at(len(nl) + 1)
    res.rows += n_fast
    res.add_rows(fast_keys, fast_lines + base, fast_basis)
    if slow.keys:
        slow_buf = np.frombuffer("".join(k + "\n" for k in slow.keys).encode("utf-8"), np.uint8)
        res.add_rows(slow_buf, np.asarray(slow.seq, np.int64), np.asarray(slow.basis, np.int32))
    if progress is not None:
        progress(len(data))
    if first_part and not header_seen and res.rows == 0:
        raise RegistryError("registry.rkn_csv.no_header", "empty file", path)
    return res


def _basis(authority: str, number: str, date: str) -> LegalBasis | None:
    d = date.strip()
    return LegalBasis(authority.strip(), number.strip(), d) if _DATE.fullmatch(d) is not None else None
