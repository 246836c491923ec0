"""Fingerprints of crypto-asset traffic: node protocols, mining, and exchanges/wallets by name.

Each rule reads the first bytes of each direction's first payload and fires only on structure a
random byte string matches with negligible probability:

* **Bitcoin family** (Bitcoin, Litecoin, Dogecoin, Bitcoin Cash, testnets): every P2P message
  starts with a 24-byte header — 4-byte network magic, a 12-byte command of lower-case ASCII padded
  with NULs, a little-endian payload length and a checksum (Bitcoin Core ``protocol.h``; magics from
  each coin's ``chainparams.cpp``). The magic names the coin; the regtest magic ``fabfb5da`` is
  shared by Bitcoin, Litecoin and Dogecoin regtest, so there the family is the protocol's
  (``bitcoin``) and the evidence says so.
* **Monero P2P (levin)**: a 33-byte header starting with the signature ``0x0101010101012101``
  (little-endian), then the body length, a return flag, a command (1001 handshake, 1002 timed
  sync, 1003 ping, 2001–2010 notifications), a return code, flags and protocol version 1
  (``contrib/epee/include/net/levin_base.h``).
* **Nano** (XNO) node protocol: magic ``R``, network ``A``/``B``/``C``/``X``, three version bytes
  (min ≤ using ≤ max) and a message type (nano-node ``messages.hpp``).
* **Stratum** (mining), in clear and over TLS: :mod:`sluice.detect._mining`.
* **Electrum**: JSON-RPC lines whose method is ``server.*`` or ``blockchain.*`` (Electrum protocol
  1.4, ``server.version`` first).
* **Ethereum devp2p (RLPx)**: the first message each way is an ECIES handshake message — EIP-8
  (a 2-byte size equal to the rest of the message, then ``0x04`` and the sender's ephemeral
  secp256k1 public key) or the legacy 307/210-byte form (``0x04`` and the key first). The
  record's first 64 bytes hold the key's x and most of y: x must give a point of the curve
  (y² = x³ + 7 mod p) whose y starts with the bytes seen — chance for random bytes ≈ 2⁻²³².
  Discovery (discv4: keccak-256 hash ‖ signature ‖ type ‖ RLP) is *not* recognised: its type byte
  sits at offset 97 and the hash covers the whole datagram, beyond the 64 bytes a record keeps;
  discv5's header is masked with the recipient's node id.
* **Monero RPC**: an HTTP request to ``/json_rpc`` or one of monerod's ``*.bin`` and ``get_*``
  endpoints.
* **Exchanges, wallets, pools by name**: the flow's server name (SNI, HTTP Host, DNS query) under a
  domain of the crypto catalogue (:mod:`sluice.crypto.catalogue`).

Beside the fingerprint, the first packets' sizes and directions say what a node or miner flow
*carries* — block download (full-size segments one way) or transaction relay (small messages both
ways), share submissions at a steady size — as evidence with no weight of its own (code
``crypto.pattern.*``).

That evidence (:func:`~sluice.detect._mining.pattern_evidence`) lives beside the mining rules in
:mod:`sluice.detect._mining`; :data:`RULES` lists every crypto rule, the mining ones included, in one
order, for :mod:`sluice.detect.fingerprints`.
"""

from __future__ import annotations

__all__ = ["BITCOIN_MAGICS", "RULES"]

import re

from sluice.crypto.catalogue import default_crypto_catalogue
from sluice.detect._mining import json_method, pattern_evidence, stratum, stratum_tls
from sluice.detect._rules import TCP, Rule, ev, hexs, transports
from sluice.detect._rules import RuleMatch as Match
from sluice.detect.verdict import Evidence
from sluice.features.view import FlowView

BITCOIN_MAGICS: dict[bytes, tuple[str, str]] = {
    bytes.fromhex("f9beb4d9"): ("bitcoin", "Bitcoin mainnet (also Bitcoin Cash before 2018)"),
    bytes.fromhex("0b110907"): ("bitcoin", "Bitcoin testnet3"),
    bytes.fromhex("1c163f28"): ("bitcoin", "Bitcoin testnet4"),
    bytes.fromhex("0a03cf40"): ("bitcoin", "Bitcoin signet"),
    bytes.fromhex("fabfb5da"): ("bitcoin", "regtest (Bitcoin, Litecoin and Dogecoin share it)"),
    bytes.fromhex("e3e1f3e8"): ("bitcoin", "Bitcoin Cash mainnet"),
    bytes.fromhex("fbc0b6db"): ("litecoin", "Litecoin mainnet"),
    bytes.fromhex("fdd2c8f1"): ("litecoin", "Litecoin testnet4"),
    bytes.fromhex("c0c0c0c0"): ("dogecoin", "Dogecoin mainnet"),
    bytes.fromhex("fcc1b7dc"): ("dogecoin", "Dogecoin testnet"),
}
"""Network magic -> (family, network) of the Bitcoin protocol family."""
_BTC_MAX_PAYLOAD = 32 * 1024 * 1024
_BTC_CMD = re.compile(rb"[a-z0-9]{2,12}")


def _btc_header(head: bytes) -> tuple[str, str, str, int] | None:
    """(family, network, command, length) of a Bitcoin-family message header, or None."""
    if len(head) < 24:
        return None
    net = BITCOIN_MAGICS.get(head[:4])
    if net is None:
        return None
    raw = head[4:16]
    cmd = raw.rstrip(b"\0")
    if not _BTC_CMD.fullmatch(cmd) or b"\0" in cmd:
        return None
    length = int.from_bytes(head[16:20], "little")
    if length > _BTC_MAX_PAYLOAD:
        return None
    return net[0], net[1], cmd.decode(), length


def bitcoin_p2p(v: FlowView) -> Match | None:
    """Bitcoin-family P2P: a message header with a known magic in either direction."""
    got = [_btc_header(v.head(0)), _btc_header(v.head(1))]
    if not any(got):
        return None
    evidence: list[Evidence] = []
    decided = -1
    families = set()
    for d, item in enumerate(got):
        if item is None:
            continue
        family, network, cmd, length = item
        families.add(family)
        idx = v.first_payload_index(d)
        decided = max(decided, idx)
        head = v.head(d)
        evidence.append(
            ev(
                "bitcoin.header",
                f"{'c2s' if d == 0 else 's2c'}_head",
                f"magic {hexs(head[:4])} ({network}), command {cmd!r}, payload {length} bytes",
                "known network magic, NUL-padded lower-case command, payload ≤ 32 MiB",
                0.9,
                f"the {'client' if d == 0 else 'server'}'s first message is a Bitcoin-protocol {cmd!r}",
                idx,
            )
        )
    if len(families) > 1:
        return None  # two different networks: not one peer connection
    family = families.pop()
    conf = 0.97 if all(got) else 0.9
    if all(got) and got[0] is not None and got[1] is not None and got[0][2] == got[1][2] == "version":
        evidence.append(
            ev(
                "bitcoin.version_exchange",
                "c2s_head,s2c_head",
                "version, version",
                "each peer opens with version",
                0.07,
                "both peers sent version: a node handshake",
                decided,
            )
        )
    if bytes.fromhex("fabfb5da") in (v.head(0)[:4], v.head(1)[:4]):
        evidence.append(
            ev(
                "bitcoin.regtest_magic",
                "c2s_head",
                "fabfb5da",
                "regtest",
                0.0,
                "regtest's magic is shared by Bitcoin, Litecoin and Dogecoin: the family is the protocol's",
                decided,
            )
        )
    evidence += pattern_evidence(v, family)
    return Match("bitcoin-p2p", "crypto", family, conf, decided, tuple(evidence))


_LEVIN_SIG = bytes.fromhex("0121010101010101")
_LEVIN_COMMANDS = {
    1001: "handshake", 1002: "timed sync", 1003: "ping", 1007: "support flags",
    2001: "new block", 2002: "new transactions", 2003: "request get objects",
    2004: "response get objects", 2006: "request chain", 2007: "response chain entry",
    2008: "new fluffy block", 2009: "request fluffy missing tx", 2010: "get txpool complement",
}  # fmt: skip


def _levin(head: bytes) -> tuple[int, int] | None:
    if len(head) < 33 or head[:8] != _LEVIN_SIG:
        return None
    length = int.from_bytes(head[8:16], "little")
    cmd = int.from_bytes(head[17:21], "little")
    flags = int.from_bytes(head[25:29], "little")
    version = int.from_bytes(head[29:33], "little")
    if cmd not in _LEVIN_COMMANDS or version != 1 or flags not in (1, 2) or length > 100_000_000:
        return None
    return cmd, length


def monero_levin(v: FlowView) -> Match | None:
    """Monero's P2P protocol: a levin header (signature, command, flags, version 1)."""
    got = [_levin(v.head(0)), _levin(v.head(1))]
    if not any(got):
        return None
    evidence: list[Evidence] = []
    decided = -1
    for d, item in enumerate(got):
        if item is None:
            continue
        cmd, length = item
        idx = v.first_payload_index(d)
        decided = max(decided, idx)
        evidence.append(
            ev(
                "monero.levin_header",
                f"{'c2s' if d == 0 else 's2c'}_head",
                f"signature {_LEVIN_SIG.hex()}, command {cmd} ({_LEVIN_COMMANDS[cmd]}), body {length} bytes",
                "levin signature 0x0101010101012101, known command, flags 1|2, version 1",
                0.9,
                f"the {'client' if d == 0 else 'server'}'s first message is a levin {_LEVIN_COMMANDS[cmd]}",
                idx,
            )
        )
    evidence += pattern_evidence(v, "monero")
    return Match("monero-levin", "crypto", "monero", 0.97 if all(got) else 0.9, decided, tuple(evidence))


_NANO_NETS = {0x41: "test", 0x42: "beta", 0x43: "live", 0x58: "dev"}
_NANO_TYPES = {
    2: "keepalive", 3: "publish", 4: "confirm_req", 5: "confirm_ack", 6: "bulk_pull", 7: "bulk_push",
    8: "frontier_req", 10: "node_id_handshake", 11: "bulk_pull_account", 12: "telemetry_req",
    13: "telemetry_ack", 14: "asc_pull_req", 15: "asc_pull_ack",
}  # fmt: skip


def _nano(head: bytes) -> tuple[str, int, str] | None:
    if len(head) < 8 or head[0] != 0x52 or head[1] not in _NANO_NETS:
        return None
    vmax, vusing, vmin, mtype = head[2], head[3], head[4], head[5]
    if not (0 < vmin <= vusing <= vmax <= 0x40) or mtype not in _NANO_TYPES:
        return None
    return _NANO_NETS[head[1]], vusing, _NANO_TYPES[mtype]


def nano(v: FlowView) -> Match | None:
    """Nano's node protocol: magic R, network, versions min ≤ using ≤ max, message type."""
    got = [_nano(v.head(0)), _nano(v.head(1))]
    if not all(got):  # 8 bytes of structure: both directions are needed
        return None
    evidence = []
    decided = -1
    for d, item in enumerate(got):
        assert item is not None
        net, version, mtype = item
        idx = v.first_payload_index(d)
        decided = max(decided, idx)
        evidence.append(
            ev(
                "nano.header",
                f"{'c2s' if d == 0 else 's2c'}_head",
                f"{hexs(v.head(d)[:8])}: network {net}, version {version}, {mtype}",
                "'R', network A|B|C|X, versions min ≤ using ≤ max ≤ 64, known type",
                0.45,
                f"the {'client' if d == 0 else 'server'} speaks Nano's node protocol ({mtype})",
                idx,
            )
        )
    return Match("nano", "crypto", "nano", 0.9, decided, tuple(evidence))


def electrum(v: FlowView) -> Match | None:
    """Electrum protocol: a JSON-RPC line calling ``server.*`` or ``blockchain.*``."""
    head = v.head(0)
    method = json_method(head)
    if not method.startswith(("server.", "blockchain.")):
        return None
    idx = v.first_payload_index(0)
    evidence = [
        ev(
            "electrum.method",
            "c2s_head",
            method,
            "server.version, server.* or blockchain.*",
            0.85,
            "the client's first line is an Electrum protocol call",
            idx,
        )
    ]
    conf = 0.85
    if v.head(1).startswith(b"{") and b'"result"' in v.head(1):
        conf = 0.93
        evidence.append(
            ev(
                "electrum.response",
                "s2c_head",
                v.head(1)[:32].decode("latin-1"),
                '{"jsonrpc":"2.0","result":…',
                0.08,
                "the server answered it",
                v.first_payload_index(1),
            )
        )
    return Match("electrum", "crypto", "electrum", conf, idx, tuple(evidence))


_SECP256K1_P = 2**256 - 2**32 - 977
_RLPX_LEGACY = {0: 307, 1: 210}
"""Pre-EIP-8 auth (client) and ack (server) sizes: 65-byte key + 16 IV + body + 32-byte MAC."""
_RLPX_MAX = 4096


def _on_secp256k1(x: bytes, y_prefix: bytes) -> bool:
    """Whether ``x`` is a point's x coordinate whose y (either root) starts with ``y_prefix``."""
    xi = int.from_bytes(x, "big")
    if xi >= _SECP256K1_P or len(y_prefix) < 16:
        return False
    rhs = (pow(xi, 3, _SECP256K1_P) + 7) % _SECP256K1_P
    y = pow(rhs, (_SECP256K1_P + 1) // 4, _SECP256K1_P)
    if y * y % _SECP256K1_P != rhs:
        return False
    return any(cand.to_bytes(32, "big").startswith(y_prefix) for cand in (y, _SECP256K1_P - y))


def _rlpx_handshake(v: FlowView, d: int) -> str:
    """``eip8`` / ``legacy`` when direction ``d``'s first payload is an RLPx auth/ack, else ''."""
    head = v.head(d)
    if len(head) < 64 or 0x04 not in (head[0], head[2]):
        return ""  # neither layout's key marker (below): most flows stop here
    idx = v.first_payload_index(d)
    if idx < 0:
        return ""
    first = v.payload_lens[idx]
    size = int.from_bytes(head[:2], "big")
    if (
        head[2] == 0x04
        and 64 < size <= _RLPX_MAX
        and first <= size + 2
        and _on_secp256k1(head[3:35], head[35:64])
    ):
        return "eip8"
    if head[0] == 0x04 and first <= _RLPX_LEGACY[d] and _on_secp256k1(head[1:33], head[33:64]):
        return "legacy"
    return ""


@transports(TCP)
def rlpx(v: FlowView) -> Match | None:
    """Ethereum devp2p: an RLPx ECIES handshake (ephemeral secp256k1 key on the curve) opening the flow."""
    if v.rec.proto != 6:
        return None
    got = [_rlpx_handshake(v, 0), _rlpx_handshake(v, 1)]
    if not any(got):
        return None
    evidence = []
    decided = -1
    for d, kind in enumerate(got):
        if not kind:
            continue
        idx = v.first_payload_index(d)
        decided = max(decided, idx)
        head = v.head(d)
        what = "auth" if d == 0 else "ack"
        layout = (
            f"size {int.from_bytes(head[:2], 'big')} then 04‖x‖y"
            if kind == "eip8"
            else "04‖x‖y first (pre-EIP-8)"
        )
        evidence.append(
            ev(
                "ethereum.rlpx_" + what,
                f"{'c2s' if d == 0 else 's2c'}_head",
                f"{hexs(head[:8])}: {layout}, {v.payload_lens[idx]} bytes",
                "ECIES handshake: ephemeral public key on secp256k1 (y² = x³ + 7 mod p)",
                0.9,
                f"the {'client' if d == 0 else 'server'} opens with an RLPx {what} message ({kind})",
                idx,
            )
        )
    return Match("rlpx", "crypto", "ethereum", 0.97 if all(got) else 0.9, decided, tuple(evidence))


_XMR_RPC = re.compile(
    rb"^(?:GET|POST) /(?:json_rpc|get_info|getheight|get_transactions|get_transaction_pool"
    rb"|send_raw_transaction|get_outs|getblocks\.bin|get_o_indexes\.bin|get_hashes\.bin"
    rb"|getblocks_by_height\.bin|get_output_distribution\.bin)[ ?]"
)


def monero_rpc(v: FlowView) -> Match | None:
    """Monero daemon/wallet RPC: an HTTP request to ``/json_rpc`` or a monerod endpoint."""
    m = _XMR_RPC.match(v.head(0))
    if not m:
        return None
    idx = v.first_payload_index(0)
    line = v.head(0).split(b"\r\n", 1)[0].decode("latin-1")
    return Match(
        "monero-rpc",
        "crypto",
        "monero",
        0.8,
        idx,
        (
            ev(
                "monero.rpc",
                "c2s_head",
                line,
                "POST /json_rpc or a monerod *.bin / get_* endpoint",
                0.8,
                "an HTTP call to the Monero daemon's (or wallet's) RPC interface",
                idx,
            ),
        ),
    )


def crypto_names(v: FlowView) -> Match | None:
    """A server name under an exchange's, wallet service's or mining pool's domain."""
    meta = v.rec.meta
    for feature, name in (("sni", meta.sni), ("http_host", meta.http_host), ("dns_query", meta.dns_query)):
        if not name:
            continue
        got = default_crypto_catalogue().lookup(name.split(":")[0])
        if got is None:
            continue
        entry, domain = got
        conf = 0.6 if feature == "dns_query" else 0.7
        return Match(
            "crypto-names",
            "crypto",
            entry.family,
            conf,
            max(v.first_payload_index(0), 0),
            (
                ev(
                    "crypto.name",
                    feature,
                    name,
                    f"{domain} ({entry.brand}; source: {entry.source})",
                    conf,
                    f"the flow's {feature.replace('_', ' ')} belongs to {entry.brand}, a crypto {entry.kind}",
                ),
            ),
        )
    return None


RULES: tuple[tuple[str, Rule], ...] = (
    ("bitcoin-p2p", bitcoin_p2p),
    ("monero-levin", monero_levin),
    ("nano", nano),
    ("stratum", stratum),
    ("stratum-tls", stratum_tls),
    ("electrum", electrum),
    ("rlpx", rlpx),
    ("monero-rpc", monero_rpc),
    ("crypto-names", crypto_names),
)
