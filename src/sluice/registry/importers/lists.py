"""Operator block lists: hosts files, Adblock ``||d^``, plain domains, plain CIDRs, Spamhaus DROP.

Semantics of each format, as the tools that read it apply it:

* ``hosts``: ``ADDRESS name [name ...]`` per line, ``#`` comments; every name is a ``domain``
  (hosts files match exact names).  The loop-back names every hosts file carries (``localhost``,
  ``ip6-allnodes`` ...) are skipped, not entries.  A header ``# Domains: N`` is checked against
  the names found (fewer than 98 % of N refuses the file as truncated).
* ``adblock``: ``||domain^`` per line is a ``domain-mask`` (Adblock's ``||`` anchors the domain
  and every subdomain); ``!`` comments and ``[Adblock ...]`` headers skipped; exceptions
  (``@@``), rules with options (``$...``), paths and cosmetic rules are rejected with the reason.
  ``! Domains: N`` is checked like the hosts header.
* ``domains``: one name per line (``#`` comments); ``*.d`` is a mask, an address or CIDR (as in
  UT1's lists) an ``ip``/``subnet``.
* ``cidrs``: one address or CIDR per line (``#`` and ``;`` comments).
* ``drop``: Spamhaus DROP/EDROP, ``cidr ; SBLnnn``; the SBL number becomes the decision number.

Lists carry no decisions: the decision's authority is the source name (free text), its number
the list's version header when it has one.
"""

from __future__ import annotations

import re

from sluice.registry.choices import LIST_FORMATS
from sluice.registry.importers._common import ParseResult, Progress
from sluice.registry.importers._input import check_tail, decode_text, iter_lines
from sluice.registry.model import Kind, LegalBasis, RegistryError
from sluice.registry.names import BadIndicator, canon_host, canon_ip, canon_mask

__all__ = ["LIST_FORMATS", "parse_list"]


LOCAL_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
        "0.0.0.0",  # noqa: S104 - a name to skip, not an address to bind
    }
)
"""Names of hosts files that are the machine itself, never entries."""

_DECLARED = re.compile(r"^[#!]\s*(?:Domains|Number of (?:entries|domains))\s*:\s*([\d,]+)\s*$")
_VERSION = re.compile(r"^[#!;]\s*(?:Version|Last[- ]modified|Last-Modified)\s*:\s*(.+?)\s*$")
_ADBLOCK = re.compile(r"\|\|([^\s/^$|*]+)\^?")


def parse_list(
    data: bytes,
    fmt: str,
    path: str = "",
    *,
    source: str = "",
    progress: Progress | None = None,
) -> ParseResult:
    """Parse one operator list.

    Args:
        data: the file's bytes (UTF-8).
        fmt: one of :data:`LIST_FORMATS`.
        path: file name for messages.
        source: the list's name, used as the decisions' authority.
        progress: called with bytes processed.

    Returns:
        The parse result.

    Raises:
        RegistryError: ``registry.truncated``, ``registry.bad_encoding``, ``registry.bad_format``.
    """
    if fmt not in LIST_FORMATS:
        raise RegistryError("registry.bad_format", f"unknown list format {fmt!r}", path)
    res = ParseResult(fmt, path=path)
    text = decode_text(data, path)
    cut = check_tail(data)
    authority = "Spamhaus DROP" if fmt == "drop" else source
    basis = LegalBasis(authority)
    line_fn = _LINE_FNS[fmt]
    comment = _COMMENT[fmt]
    for lineno, raw, terminated in iter_lines(text, res, progress):
        line = raw.strip()
        if not line or line[0] in comment:
            _header(res, line)
            continue
        if not terminated and cut:
            raise RegistryError("registry.truncated", f"last line {lineno} cut at 4 KiB", path)
        res.rows += 1
        try:
            line_fn(res, line, basis)
        except BadIndicator as exc:
            if not terminated:
                raise RegistryError("registry.truncated", f"last line {lineno} is incomplete", path) from None
            res.reject(lineno, f"{fmt}.{exc.reason}", raw)
    return res


def _header(res: ParseResult, line: str) -> None:
    m = _DECLARED.match(line)
    if m is not None:
        res.declared = int(m.group(1).replace(",", ""))
        return
    m = _VERSION.match(line)
    if m is not None and not res.dump_time:
        res.dump_time = m.group(1)


def _hosts(res: ParseResult, line: str, basis: LegalBasis) -> None:
    parts = line.split("#", 1)[0].split()
    if len(parts) < 2:
        raise BadIndicator("hosts.no_name", line)
    canon_ip(parts[0])
    for name in parts[1:]:
        if name.lower() in LOCAL_NAMES:
            continue
        res.add(Kind.DOMAIN, canon_host(name), "", basis)


def _adblock(res: ParseResult, line: str, basis: LegalBasis) -> None:
    if line.startswith("@@"):
        raise BadIndicator("exception_rule", line)
    if "$" in line:
        raise BadIndicator("unsupported_options", line)
    m = _ADBLOCK.fullmatch(line)
    if m is None:
        raise BadIndicator("unsupported_rule", line)
    res.add(Kind.DOMAIN_MASK, canon_mask("*." + m.group(1)), "", basis)


def _domains(res: ParseResult, line: str, basis: LegalBasis) -> None:
    parts = line.split("#", 1)[0].split()
    if len(parts) != 1:
        raise BadIndicator("name.not_one_name", line)
    res.add_name(parts[0], basis)


def _cidrs(res: ParseResult, line: str, basis: LegalBasis) -> None:
    token = re.split(r"[\s#;]", line, maxsplit=1)[0]
    kind, ind = canon_ip(token)
    res.add(kind, ind, "", basis)


def _drop(res: ParseResult, line: str, basis: LegalBasis) -> None:
    cidr, _, comment = line.partition(";")
    kind, ind = canon_ip(cidr)
    sbl = comment.strip().split()[0] if comment.strip() else ""
    res.add(kind, ind, "", LegalBasis(basis.authority, sbl, basis.date) if sbl else basis)


_COMMENT = {"hosts": "#", "adblock": "![", "domains": "#", "cidrs": "#;", "drop": ";#"}

_LINE_FNS = {
    "hosts": _hosts,
    "adblock": _adblock,
    "domains": _domains,
    "cidrs": _cidrs,
    "drop": _drop,
}
