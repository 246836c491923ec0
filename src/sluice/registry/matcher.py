"""The register matcher: which entries apply to a host name, a URL or an IP address, and why.

Semantics (what the register's users expect; the reason code says which rule fired):

* host names are compared in canonical form: case folded, one trailing dot ignored, Unicode
  converted with IDNA (``Пример.РФ.`` matches an entry ``xn--e1afmkfd.xn--p1ai``);
* ``domain`` entry ``d``: the name ``d`` (``domain.exact``) and ``www.d`` (``domain.www``) -
  people who list ``example.com`` mean the site, which users reach as ``www.example.com`` too.
  The converse does not hold: an entry ``www.example.com`` does not match ``example.com``
  (the register named only the ``www`` host);
* ``domain-mask`` entry ``*.d``: ``d`` and every name below it (``domain.mask``);
* ``url`` entry: the canonical URL, exactly (``url.exact``: the path and query are
  case-sensitive, as the canonical form keeps them; until issue 18's check rework the lookup
  went through the case-folding host-name table, so ``/Path`` entries never matched and ``/PATH``
  queries matched a ``/path`` entry); a URL query also gets every domain/mask/IP entry that
  applies to its host;
* ``ip`` entry: that address (``ip.exact``); ``subnet`` entry: every address in it
  (``ip.subnet``); all that apply are returned, the longest prefix first;
* ``wallet`` entry ``chain:address``: that address on that chain (``wallet.exact``), the query
  and the entry both in the canonical form of :mod:`sluice.registry.wallets` (EIP-55 case,
  lower-case Bech32 and CashAddr, TON's bounceable spelling), with or without the chain prefix;
  in content (:meth:`Matcher.find_wallets`), every checksum-valid address
  :func:`sluice.crypto.addresses.find_addresses` finds that is an entry.

The batch API takes arrays (Python sequences, numpy ``S``/``U``/object arrays, or Arrow string
arrays) and returns :class:`BatchMatches`, three aligned arrays of (query index, entry index,
reason); the single-lookup API returns :class:`Match` objects with the entry and its basis.  See
:mod:`sluice.registry._kernels` for how lookups stay at millions per second.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sluice.crypto.addresses import Address, find_addresses
from sluice.registry import _kernels as K
from sluice.registry.display import display_indicator
from sluice.registry.ipindex import IpIndex
from sluice.registry.matches import Match, MatchReason
from sluice.registry.model import Entry, Kind, LegalBasis, basis_from_json
from sluice.registry.names import BadIndicator, canon_host, split_url
from sluice.registry.stores import RegistryStore
from sluice.registry.wallets import canon_wallet, looks_like_wallet

__all__ = ["BatchMatches", "Match", "MatchReason", "Matcher", "WalletHit"]

_KIND_CODE = {k: i for i, k in enumerate(Kind)}
_KINDS = tuple(Kind)


@dataclass(frozen=True, slots=True)
class WalletHit:
    """A wallet address found in content that is a register entry."""

    offset: int
    """Where it starts (bytes content: byte offset; text: character offset)."""
    address: Address
    """The address as found and validated (chain, type, checksum status)."""
    matches: tuple[Match, ...]
    """The entries it is (one per source)."""


@dataclass(frozen=True, slots=True)
class BatchMatches:
    """Matches of a batch as aligned arrays (one row per query-entry pair)."""

    n_queries: int
    """Number of queries in the batch."""
    query: npt.NDArray[np.int64]
    """Index of the query, shape (m,)."""
    entry: npt.NDArray[np.int64]
    """Index of the entry in the matcher (see :meth:`Matcher.entry`), shape (m,)."""
    reason: npt.NDArray[np.uint8]
    """:class:`MatchReason` value, shape (m,)."""

    def hit(self) -> npt.NDArray[np.bool_]:
        """Whether each query matched anything, shape (n_queries,)."""
        out = np.zeros(self.n_queries, np.bool_)
        out[self.query] = True
        return out

    def __len__(self) -> int:
        return int(self.query.shape[0])


class _NameSet:
    """Unique byte strings -> entries (CSR), with the compiled hash table over them."""

    def __init__(self, names: dict[bytes, list[int]], entry_kind: npt.NDArray[np.uint8]) -> None:
        keys_list = list(names)
        lens = np.fromiter((len(k) for k in keys_list), np.int64, len(keys_list))
        self.off = np.zeros(len(keys_list) + 1, np.int64)
        np.cumsum(lens, out=self.off[1:])
        self.buf = np.frombuffer(b"".join(keys_list), np.uint8) if keys_list else np.zeros(0, np.uint8)
        groups = list(names.values())
        counts = np.fromiter((len(g) for g in groups), np.int64, len(groups))
        self.ent_off = np.zeros(len(groups) + 1, np.int64)
        np.cumsum(counts, out=self.ent_off[1:])
        flat = np.fromiter((e for g in groups for e in g), np.int32, int(self.ent_off[-1]))
        self.ent = flat
        self.ent_kind = np.where(entry_kind[flat] == _KIND_CODE[Kind.DOMAIN_MASK], 1, 0).astype(np.uint8)
        self.bits = max(4, int(2 * max(1, len(keys_list)) - 1).bit_length())
        hashes = K.hash_names(self.buf, self.off)
        self.table = K.build_table(hashes, self.bits)

    @property
    def nbytes(self) -> int:
        arrays = (self.off, self.buf, self.ent_off, self.ent, self.ent_kind, self.table)
        return sum(a.nbytes for a in arrays)


class Matcher:
    """Every register entry, loaded for fast matching (build with :meth:`from_store`).

    Args:
        rows: entries as ``(source, kind, indicator, basis_json)``, as
            :meth:`RegistryStore.rows` yields them.
        proposed: the rows are open proposals, not register entries (every :class:`Entry` it
            returns says ``proposed=True``; see :func:`sluice.registry.proposals.proposed_matcher`).
    """

    def __init__(self, rows: Iterable[tuple[str, str, str, str]], *, proposed: bool = False) -> None:
        self.proposed = proposed
        sources: dict[str, int] = {}
        bases: dict[str, int] = {}
        kinds: list[int] = []
        src_ids: list[int] = []
        basis_ids: list[int] = []
        indicators: list[str] = []
        for source, kind, ind, bj in rows:
            kinds.append(_KIND_CODE[Kind(kind)])
            src_ids.append(sources.setdefault(source, len(sources)))
            basis_ids.append(bases.setdefault(bj, len(bases)))
            indicators.append(ind)
        self._sources = list(sources)
        self._bases_json = list(bases)
        self._bases: dict[int, tuple[LegalBasis, ...]] = {}
        self.kind = np.asarray(kinds, np.uint8)
        self.source_id = np.asarray(src_ids, np.uint16 if len(sources) < 65536 else np.int32)
        self.basis_id = np.asarray(basis_ids, np.int32)
        enc = [s.encode() for s in indicators]
        self._ind_off = np.zeros(len(enc) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, enc), np.int64, len(enc)), out=self._ind_off[1:])
        self._ind_buf = b"".join(enc)
        host_names: dict[bytes, list[int]] = {}
        ip_rows: list[tuple[str, int]] = []
        self._wallets: dict[str, list[int]] = {}
        self._urls: dict[str, list[int]] = {}  # exact: a URL's path is case-sensitive
        dom, mask, url = _KIND_CODE[Kind.DOMAIN], _KIND_CODE[Kind.DOMAIN_MASK], _KIND_CODE[Kind.URL]
        wallet = _KIND_CODE[Kind.WALLET]
        for i, (k, b) in enumerate(zip(kinds, enc, strict=True)):
            if k == dom:
                host_names.setdefault(b, []).append(i)
            elif k == mask:
                host_names.setdefault(b[2:], []).append(i)
            elif k == url:
                self._urls.setdefault(indicators[i], []).append(i)
            elif k == wallet:
                self._wallets.setdefault(indicators[i], []).append(i)
            else:
                ip_rows.append((indicators[i], i))
        self._hosts = _NameSet(host_names, self.kind)
        self._ips = IpIndex(ip_rows)

    @classmethod
    def from_store(cls, store: RegistryStore, source: str | None = None) -> Matcher:
        """Load the entries of a store (all sources, or one).

        Args:
            store: the register.
            source: only this list, or every list when None.

        Returns:
            The matcher.
        """
        return cls(store.rows(source))

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    def kind_counts(self) -> dict[str, int]:
        """Entries per kind (``{"domain": 3814, ...}``, kinds with none left out), in kind order."""
        n = np.bincount(self.kind, minlength=len(_KINDS)) if len(self) else np.zeros(len(_KINDS), np.int64)
        return {_KINDS[i].value: int(c) for i, c in enumerate(n.tolist()) if c}

    @property
    def nbytes(self) -> int:
        """Memory held by the matcher's arrays and buffers (bytes)."""
        own = self.kind.nbytes + self.source_id.nbytes + self.basis_id.nbytes
        own += self._ind_off.nbytes + len(self._ind_buf)
        own += sum(len(b) + 50 for b in self._bases_json)
        own += sum(len(k) + 90 for k in (*self._wallets, *self._urls))  # slot, key, list of one
        return own + self._hosts.nbytes + self._ips.nbytes

    def entry(self, i: int) -> Entry:
        """The entry at index ``i`` (as :class:`BatchMatches` gives it)."""
        ind = self._ind_buf[self._ind_off[i] : self._ind_off[i + 1]].decode()
        kind = _KINDS[int(self.kind[i])]
        b = int(self.basis_id[i])
        basis = self._bases.get(b)
        if basis is None:
            basis = self._bases[b] = basis_from_json(self._bases_json[b])
        source = self._sources[int(self.source_id[i])]
        return Entry(kind, ind, source, basis, display_indicator(kind, ind), proposed=self.proposed)

    # -- batch --

    def match_hosts(self, names: Any) -> BatchMatches:
        """Match a batch of host names.

        Parameters
        ----------
        names : sequence of str/bytes, numpy array (``S``, ``U`` or object), shape (n,), or a
            pyarrow string array.

        Returns
        -------
        BatchMatches
            Every (query, entry, reason) that applies.
        """
        buf, start, end = _as_buffers(names)
        n = start.shape[0]
        q, e, r, status = self._run_names(buf, start, end)
        todo = np.flatnonzero(status)
        if todo.size:
            fixed: list[str] = []
            idx: list[int] = []
            for i in todo:
                raw = bytes(buf[start[i] : end[i]]).decode("utf-8", "replace")
                try:
                    fixed.append(canon_host(raw))
                    idx.append(int(i))
                except BadIndicator:
                    continue
            if fixed:
                b2, s2, e2 = _as_buffers(fixed)
                q2, e2_, r2, _ = self._run_names(b2, s2, e2)
                q = np.concatenate([q, np.asarray(idx, np.int64)[q2]])
                e = np.concatenate([e, e2_])
                r = np.concatenate([r, r2])
        return BatchMatches(n, q, e, r)

    def _run_names(
        self, buf: npt.NDArray[np.uint8], start: npt.NDArray[np.int64], end: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8], Any]:
        n = start.shape[0]
        cap = n + 64
        hs = self._hosts
        while True:
            oq = np.empty(cap, np.int64)
            oe = np.empty(cap, np.int64)
            orr = np.empty(cap, np.uint8)
            status = np.zeros(n, np.uint8)
            cnt = K.match_names(
                buf,
                start,
                end,
                hs.table,
                hs.bits,
                hs.buf,
                hs.off,
                hs.ent_off,
                hs.ent,
                hs.ent_kind,
                oq,
                oe,
                orr,
                status,
            )
            if cnt <= cap:
                return oq[:cnt], oe[:cnt], orr[:cnt], status
            cap = cnt

    def match_ips(self, ips: Any) -> BatchMatches:
        """Match a batch of addresses.

        Parameters
        ----------
        ips : numpy ``uint32`` array of IPv4 addresses (host order), shape (n,), or a sequence
            of address strings / ``ipaddress`` objects (IPv4 and IPv6 mixed).

        Returns
        -------
        BatchMatches
            Every (query, entry, reason) that applies, longest prefix first per query.
        """
        q, e = self._ips.match(ips)
        exact = self.kind[e] == _KIND_CODE[Kind.IP]
        r = np.where(exact, MatchReason.IP, MatchReason.SUBNET).astype(np.uint8)
        n = len(ips)
        return BatchMatches(n, q, e, r)

    # -- single --

    def host_hits(self, name: str) -> list[tuple[int, MatchReason]]:
        """``(entry index, reason)`` for one host name: the lean single lookup.

        Args:
            name: a host name in any case, Unicode or punycode, with or without trailing dot.

        Returns:
            Entry indices (see :meth:`entry`) with the rule that applied; [] for invalid names.
        """
        try:
            canon = canon_host(name)
        except BadIndicator:
            return []
        hs = self._hosts
        cap = 16
        while True:
            oe = np.empty(cap, np.int64)
            orr = np.empty(cap, np.uint8)
            n = K.match_name(
                np.frombuffer(canon.encode(), np.uint8),
                hs.table,
                hs.bits,
                hs.buf,
                hs.off,
                hs.ent_off,
                hs.ent,
                hs.ent_kind,
                oe,
                orr,
            )
            if n <= cap:
                return [(int(oe[i]), MatchReason(int(orr[i]))) for i in range(max(n, 0))]
            cap = n

    def match_host(self, name: str) -> list[Match]:
        """Entries that apply to one host name (most specific first)."""
        out = [Match(name, r, self.entry(e)) for e, r in self.host_hits(name)]
        out.sort(key=lambda m: (m.reason, -len(m.entry.indicator)))
        return out

    def match_ip(self, ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[Match]:
        """Entries that apply to one address (longest prefix first)."""
        try:
            got = self.match_ips([ip])
        except ValueError:
            return []
        return [
            Match(str(ip), MatchReason(int(r)), self.entry(int(e)))
            for e, r in zip(got.entry, got.reason, strict=True)
        ]

    def match_url(self, url: str) -> list[Match]:
        """Entries that apply to one URL: the URL itself, then its host's entries."""
        try:
            _, host, canon = split_url(url)
        except BadIndicator:
            return []
        out = [Match(url, MatchReason.URL, self.entry(i)) for i in self._urls.get(canon, ())]
        rest = self.match_ip(host) if _is_ip(host) else self.match_host(host)
        return out + [Match(url, m.reason, m.entry) for m in rest]

    # -- wallets --

    @property
    def n_wallets(self) -> int:
        """Distinct wallet indicators loaded."""
        return len(self._wallets)

    def match_wallet(self, text: str) -> list[Match]:
        """Entries of one wallet address (``address`` or ``chain:address``, any spelling).

        Returns:
            The entries (one per source); [] when ``text`` is no valid address or no entry.
        """
        try:
            w = canon_wallet(text, explicit=False)
        except BadIndicator:
            return []
        return [Match(text, MatchReason.WALLET, self.entry(i)) for i in self._wallets.get(w.indicator, ())]

    def address_matches(self, address: Address) -> list[Match]:
        """Entries of an address :func:`~sluice.crypto.addresses.find_addresses` reported."""
        if not self._wallets:
            return []
        try:
            w = canon_wallet(address.address, address.chain, explicit=False)
        except BadIndicator:
            return []
        ids = self._wallets.get(w.indicator, ())
        return [Match(address.address, MatchReason.WALLET, self.entry(i)) for i in ids]

    def find_wallets(self, content: str | bytes) -> list[WalletHit]:
        """Every register wallet in a payload, page or file (in order of offset).

        Args:
            content: text or bytes (see :func:`~sluice.crypto.addresses.find_addresses`: only
                checksum-valid addresses are found; a Solana address only next to its name).

        Returns:
            One :class:`WalletHit` per address found that is an entry; [] when the register
            holds no wallet (the content is not scanned then).
        """
        if not self._wallets:
            return []
        out = []
        for h in find_addresses(content):
            got = self.address_matches(h.address)
            if got:
                out.append(WalletHit(h.offset, h.address, tuple(got)))
        return out

    def match(self, item: str) -> list[Match]:
        """Entries that apply to a host name, a URL (``scheme://...``), an IP or a wallet address."""
        if "://" in item:
            return self.match_url(item)
        if _is_ip(item.strip()):
            return self.match_ip(item.strip())
        if looks_like_wallet(item):
            try:
                canon_wallet(item, explicit=False)
            except BadIndicator:
                pass
            else:
                return self.match_wallet(item)
        return self.match_host(item)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _as_buffers(
    names: Any,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Flat byte buffer plus start/end offsets for a batch of names."""
    if hasattr(names, "buffers") and hasattr(names, "offset"):
        return _arrow_buffers(names)
    if hasattr(names, "chunks"):
        import pyarrow as pa

        return _arrow_buffers(pa.concat_arrays(names.chunks) if names.chunks else pa.array([], pa.string()))
    if isinstance(names, np.ndarray) and names.dtype.kind == "S":
        w = names.dtype.itemsize
        n = names.shape[0]
        buf = np.ascontiguousarray(names).view(np.uint8)
        start = np.arange(n, dtype=np.int64) * w
        lens = np.char.str_len(names).astype(np.int64)
        return buf, start, start + lens
    seq: Sequence[Any] = names.tolist() if isinstance(names, np.ndarray) else names
    if seq and isinstance(seq[0], bytes):
        enc = list(seq)
    else:
        joined = "".join(seq)
        if joined.isascii():
            lens = np.fromiter(map(len, seq), np.int64, len(seq))
            end = np.cumsum(lens)
            return np.frombuffer(joined.encode("ascii"), np.uint8), end - lens, end
        enc = [s.encode("utf-8", "surrogatepass") for s in seq]
    lens = np.fromiter(map(len, enc), np.int64, len(enc))
    end = np.cumsum(lens)
    return np.frombuffer(b"".join(enc), np.uint8), end - lens, end


def _arrow_buffers(
    arr: Any,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    bufs = arr.buffers()
    n = len(arr)
    large = str(arr.type) in ("large_string", "large_utf8", "large_binary")
    offs = np.frombuffer(bufs[1], np.int64 if large else np.int32)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    start = offs[:-1].astype(np.int64)
    end = offs[1:].astype(np.int64)
    if arr.null_count:
        valid = np.asarray(arr.is_valid())
        end = np.where(valid, end, start)
    return data, start, end
