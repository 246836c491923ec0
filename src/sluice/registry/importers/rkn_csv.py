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

from sluice.registry.importers._common import (
    ParseResult,
    Progress,
    check_tail,
    decode_text,
    iter_lines,
)
from sluice.registry.model import Kind, LegalBasis, RegistryError
from sluice.registry.names import (
    BadIndicator,
    canon_host,
    canon_ip,
    canon_mask,
    display_indicator,
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


def parse_rkn_csv(
    data: bytes,
    path: str = "",
    *,
    result: ParseResult | None = None,
    first_part: bool = True,
    progress: Progress | None = None,
) -> ParseResult:
    """Parse one RKN CSV dump (or one part of a split dump).

    Args:
        data: the file's bytes.
        path: the file name, for messages.
        result: a result to add to (later parts of a split dump), or None for a new one.
        first_part: whether the ``Updated:`` header is required.
        progress: called with bytes processed.

    Returns:
        The parse result (rows counted, rejects listed).

    Raises:
        RegistryError: ``registry.rkn_csv.no_header``, ``registry.truncated``,
            ``registry.bad_encoding``.
    """
    res = result if result is not None else ParseResult(FMT)
    res.path = path
    text = decode_text(data, path, "cp1251")
    cut = check_tail(data)
    lines = iter_lines(text, res, progress)
    header_seen = False
    bases: dict[tuple[str, str, str], object] = {}
    for lineno, line, terminated in lines:
        if lineno == 1 and line.startswith("Updated:"):
            header_seen = True
            if first_part:
                res.dump_time = line[len("Updated:") :].strip()
            continue
        if lineno == 1 and first_part:
            raise RegistryError("registry.rkn_csv.no_header", "first line is not 'Updated: ...'", path)
        if not line.strip():
            continue
        f = _fields(line)
        basis = None
        if len(f) == 6:
            bkey = (f[3], f[4], f[5])
            basis = bases.get(bkey, _UNSEEN)
            if basis is _UNSEEN:
                date = f[5].strip()
                ok = _DATE.fullmatch(date) is not None
                basis = bases[bkey] = LegalBasis(f[3].strip(), f[4].strip(), date) if ok else None
        if not terminated and (cut or basis is None):
            raise RegistryError(
                "registry.truncated",
                f"last line {lineno} is cut" + (" at a 4 KiB boundary" if cut else ""),
                path,
            )
        res.rows += 1
        if len(f) != 6:
            res.reject(lineno, "rkn_csv.bad_field_count", line)
            continue
        if not isinstance(basis, LegalBasis):
            res.reject(lineno, "rkn_csv.bad_date", line)
            continue
        try:
            if not _fast_row(res, f[0], f[1], f[2], basis):
                add_record(res, f[0], [f[1]], split_urls(f[2]), basis)
        except BadIndicator as exc:
            res.reject(lineno, f"rkn_csv.{exc.reason}", line)
    if first_part and not header_seen and res.rows == 0:
        raise RegistryError("registry.rkn_csv.no_header", "empty file", path)
    return res
