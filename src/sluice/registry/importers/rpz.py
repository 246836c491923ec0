"""DNS Response Policy Zones (RPZ) as master files: QNAME and ``rpz-ip`` triggers.

The zone file syntax is RFC 1035 section 5.1 (``$ORIGIN``, ``$TTL``, ``@``, owner inheritance from
a line starting with white space, ``( ... )`` continuation, ``;`` comments, quoted strings); the
RPZ meaning is draft-vixie-dnsop-dns-rpz (sections 4 and 5):

* ``name CNAME .`` (NXDOMAIN), ``CNAME *.`` (NODATA), ``CNAME rpz-drop.``, a CNAME elsewhere
  and local data (A, AAAA, TXT ...) all block: ``name`` gives a ``domain`` entry, ``*.name`` a
  ``domain-mask`` (which in sluice also covers ``name``; a zone listing both ``name`` and
  ``*.name`` gives the mask alone).
* ``P.B4.B3.B2.B1.rpz-ip`` is the IPv4 network ``B1.B2.B3.B4/P``; ``P.W8...W1.rpz-ip`` an IPv6
  network with ``zz`` standing for ``::``; they give ``ip``/``subnet`` entries.
* ``rpz-passthru.`` (allow) and ``rpz-tcp-only.`` rules, and ``rpz-nsip``, ``rpz-nsdname``,
  ``rpz-client-ip`` triggers are rejected with their reason: the register has no allow list,
  and sluice matches names and addresses, not name servers or clients.
* ``$INCLUDE`` is never followed (rejected).

An unclosed parenthesis at the end of the file means the zone is cut: refused as truncated.  A
zone without SOA is refused (``registry.rpz.no_soa``).
"""

from __future__ import annotations

from sluice.registry.importers._common import ParseResult, Progress
from sluice.registry.importers._input import check_tail, decode_text, iter_lines
from sluice.registry.model import Kind, LegalBasis, RegistryError
from sluice.registry.names import BadIndicator, canon_host, canon_ip, canon_mask

__all__ = ["parse_rpz", "rpz_ip_trigger"]

FMT = "rpz"
_CLASSES = frozenset({"IN", "CH", "HS", "CS"})
_UNSUPPORTED = (".rpz-nsip", ".rpz-nsdname", ".rpz-client-ip")


def _tokens(line: str) -> tuple[list[str], int]:
    """Split one line into tokens; return them and the change in parenthesis depth."""
    out: list[str] = []
    depth = 0
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t":
            i += 1
        elif c == ";":
            break
        elif c in "()":
            depth += 1 if c == "(" else -1
            i += 1
        elif c == '"':
            j = i + 1
            while j < n and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            out.append(line[i : j + 1])
            i = j + 1
        else:
            j = i
            while j < n and line[j] not in ' \t;()"':
                j += 2 if line[j] == "\\" else 1
            out.append(line[i:j])
            i = j
    return out, depth


def rpz_ip_trigger(labels: str) -> tuple[Kind, str]:
    """Decode the part of an ``rpz-ip`` owner before ``.rpz-ip`` (``24.0.2.0.192``).

    Returns:
        ``(Kind.SUBNET, "192.0.2.0/24")`` or ``(Kind.IP, ...)`` for a full-length prefix.

    Raises:
        BadIndicator: ``rpz.bad_ip_trigger``.
    """
    parts = labels.split(".")
    if len(parts) < 2 or not parts[0].isdigit():
        raise BadIndicator("rpz.bad_ip_trigger", labels)
    prefix, rest = parts[0], parts[1:][::-1]
    if len(rest) == 4 and all(p.isdigit() for p in rest):
        addr = ".".join(rest)
    else:
        addr = ":".join("" if p.lower() == "zz" else p for p in rest)
        if addr.startswith(":") and not addr.startswith("::"):
            addr = ":" + addr
        if addr.endswith(":") and not addr.endswith("::"):
            addr += ":"
    try:
        return canon_ip(f"{addr}/{int(prefix)}")
    except BadIndicator:
        raise BadIndicator("rpz.bad_ip_trigger", labels) from None


def _relative(owner: str, origin: str) -> str | None:
    """Owner name relative to the zone origin ("" for the apex, None when outside)."""
    if owner == "@":
        return ""
    if not owner.endswith("."):
        return owner.lower()
    name = owner[:-1].lower()
    if not origin:
        return name
    if name == origin:
        return ""
    if name.endswith("." + origin):
        return name[: -len(origin) - 1]
    return None


def _absolute(name: str, origin: str) -> str:
    if name == "@":
        return origin
    if name.endswith("."):
        return name[:-1].lower()
    return f"{name}.{origin}".lower() if origin else name.lower()


def parse_rpz(
    data: bytes, path: str = "", *, source: str = "", progress: Progress | None = None
) -> ParseResult:
    """Parse one RPZ master file.

    Args:
        data: the file's bytes (UTF-8/ASCII).
        path: file name for messages.
        source: the list's name, used as the decisions' authority.
        progress: called with bytes processed.

    Returns:
        The parse result.

    Raises:
        RegistryError: ``registry.truncated``, ``registry.rpz.no_soa``,
            ``registry.bad_encoding``.
    """
    res = ParseResult(FMT, path=path)
    text = decode_text(data, path)
    if check_tail(data):
        raise RegistryError("registry.truncated", "zone ends mid-line at a 4 KiB boundary", path)
    origin, owner, soa = "", "", False
    pending: list[str] = []
    start, depth = 0, 0
    records: list[tuple[int, list[str]]] = []
    for lineno, line, _ in iter_lines(text, res, progress):
        toks, d = _tokens(line)
        if depth == 0:
            start = lineno
            if line[:1] in " \t" and toks:
                toks.insert(0, "\x00")  # owner inherited
        depth += d
        if depth < 0:
            res.reject(lineno, "rpz.unbalanced_parenthesis", line)
            depth, pending = 0, []
            continue
        pending.extend(toks)
        if depth == 0 and pending:
            records.append((start, pending))
            pending = []
    if depth:
        raise RegistryError("registry.truncated", f"record from line {start} never closes", path)
    basis = LegalBasis(source or "RPZ")
    for lineno, toks in records:
        if toks[0].startswith("$"):
            directive = toks[0].upper()
            if directive == "$ORIGIN" and len(toks) > 1:
                origin = _absolute(toks[1], origin)
            elif directive == "$INCLUDE":
                res.reject(lineno, "rpz.include_not_followed", " ".join(toks))
            continue
        if toks[0] != "\x00":
            owner = toks[0]
        rest = toks[1:]
        while rest and (rest[0][:1].isdigit() or rest[0].upper() in _CLASSES):
            rest = rest[1:]
        if not rest:
            res.reject(lineno, "rpz.no_type", " ".join(toks))
            continue
        rtype, rdata = rest[0].upper(), rest[1:]
        if rtype == "SOA":
            soa = True
            if not origin and owner not in ("@", "\x00"):
                origin = _absolute(owner, "")
            res.dump_time = rdata[2] if len(rdata) > 2 else ""
            continue
        rel = _relative(owner, origin)
        if rel == "" or (rtype == "NS" and rel is not None and not rel.endswith(".rpz-ip")):
            continue
        res.rows += 1
        try:
            if rel is None:
                raise BadIndicator("rpz.outside_origin", owner)
            _trigger(res, rel, rtype, rdata, basis)
        except BadIndicator as exc:
            reason = exc.reason if exc.reason.startswith("rpz.") else f"rpz.{exc.reason}"
            res.reject(lineno, reason, " ".join(toks))
    if not soa:
        raise RegistryError("registry.rpz.no_soa", "no SOA record: not a zone file", path)
    _fold_masks(res)
    return res


def _trigger(res: ParseResult, rel: str, rtype: str, rdata: list[str], basis: LegalBasis) -> None:
    if rtype == "CNAME":
        target = rdata[0].lower() if rdata else ""
        if target == "rpz-passthru.":
            raise BadIndicator("rpz.passthru_not_imported", rel)
        if target == "rpz-tcp-only.":
            raise BadIndicator("rpz.tcp_only_not_imported", rel)
    if rel.endswith(".rpz-ip"):
        kind, ind = rpz_ip_trigger(rel[: -len(".rpz-ip")])
        res.add(kind, ind, "", basis)
    elif rel.endswith(_UNSUPPORTED):
        raise BadIndicator("rpz.unsupported_trigger", rel)
    elif rel.startswith("*."):
        res.add(Kind.DOMAIN_MASK, canon_mask(rel), "", basis)
    else:
        res.add(Kind.DOMAIN, canon_host(rel), "", basis)


def _fold_masks(res: ParseResult) -> None:
    """Drop ``domain`` entries that a ``domain-mask`` of the same name and basis covers."""
    for kind, ind in [k for k in res.entries if k[0] == Kind.DOMAIN_MASK.value]:
        key = (Kind.DOMAIN.value, ind[2:])
        got = res.entries.get(key)
        if got is not None and got[1] == res.entries[(kind, ind)][1]:
            del res.entries[key]
