"""Crypto-asset node and mining traffic: Litecoin Core, Monero, Stratum v1 (issue 17).

* ``litecoin``: two Litecoin Core nodes (Debian ``litecoind``), one per namespace, the client
  node ``-connect``-ed to the server node. ``regtest``: the client mines 101+ blocks, each side
  sends the other transactions, blocks confirm them; verified when both nodes hold the same best
  block, every transaction reached the other node's mempool and then a block, and the wallets see
  the payments confirmed. ``testnet``: the same two nodes on Litecoin's testnet4 (its own network
  magic), no internet: they handshake and exchange headers requests; verified by both nodes'
  per-message byte counters (scrypt proof of work at testnet's minimum difficulty takes minutes of
  this CPU, so no block is mined there).
* ``monero``: two ``monerod`` (Debian ``monero``) on ``--regtest`` with a fixed difficulty, the
  client node bound to the server node with ``--add-exclusive-node``; the server node mines to a
  wallet address, blocks reach the client node over levin; ``monero-wallet-rpc`` in the client
  namespace refreshes that wallet from the server daemon's RPC port. Verified when the client
  node's chain has the mined blocks (same top hash) and the wallet reached the daemon's height with
  a non-zero balance from the mined coinbases.
* ``stratum``: :mod:`sluice.lab.stratum_pool` (written for the lab: no Stratum pool or miner is
  packaged in Debian, and PyPI's ``stratum`` 0.2.15 is Python 2 / Twisted from 2014) and its
  miner, which hashes real scrypt (Litecoin's proof of work) against the pool's share target; the
  pool re-hashes each submitted share. Plain TCP, or over TLS with stunnel4 on both ends.
* ``electrum``: Debian's Electrum 4.3.4 (client namespace, daemon + wallet) against the ElectrumX
  fork ``e-x`` 2.0.0 (PyPI) indexing a Litecoin Core regtest node (server namespace). Electrum
  is told Litecoin regtest's genesis hash, bech32 prefix and P2SH version
  (:mod:`sluice.lab.electrum_client`: no bitcoind in Debian bookworm). The node pays 1–3 of the
  wallet's addresses, a block confirms them, the wallet pays one back through the server's
  ``blockchain.transaction.broadcast``; verified by Electrum's confirmed balance, the node's
  mempool and ``getreceivedbyaddress``.
* ``ethereum``: two devp2p nodes of ``@ethereumjs/devp2p`` 10.0.0 (npm; no Ethereum client is
  packaged in Debian, and PyPI's ``trinity``/``ddht`` are unmaintained alphas), the lab's
  ``clients/eth_node.mjs``: discv4 (ping, pong, findnode, neighbors) to the server node, then an
  RLPx connection (ECIES auth/ack, Hello with eth/68), eth Status both ways and a
  GetBlockHeaders answered. Verified by the client's discovered peer, the Hello's client id and
  capability, the Status exchange and the header answer.
"""

from __future__ import annotations

__all__ = ["Electrum", "Ethereum", "Litecoin", "Monero", "Stratum"]

import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, which
from sluice.lab.topology import LabError, Role

_READY_S = 40.0


def _poll(what: str, fn: Any, timeout: float, interval: float = 0.1) -> Any:
    """Call ``fn`` until it returns something truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise LabError("lab.timeout", f"{what} after {timeout:.0f}s (last: {str(last)[-200:]})")


def _run_cli(s: Session, role: Role, argv: list[str], what: str, check: bool) -> Any:
    """A wallet/node command-line call in ``role``'s namespace: its JSON output, or its text.

    Returns None when it failed and ``check`` is off.

    Raises:
        LabError: it failed and ``check`` is on.
    """
    r = s.topo.run(role, argv, check=False, timeout=60)
    if r.returncode != 0:
        if check:
            raise LabError("lab.rpc_failed", f"{what}: {(r.stderr or r.stdout)[-300:]}")
        return None
    out = r.stdout.strip()
    try:
        return json.loads(out)
    except ValueError:
        return out


class _LtcNode:
    """One litecoind and its RPC (via litecoin-cli in the node's namespace)."""

    def __init__(
        self, s: Session, role: Role, chain: str, p2p: tuple[str, int], connect: str | None, *extra: str
    ) -> None:
        self.s, self.role, self.chain = s, role, chain
        self.dir = s.workdir / f"ltc-{role}"
        self.dir.mkdir()
        self.rpcport = s.rng.randrange(20000, 30000)
        self.auth = [f"-rpcuser=lab{secrets.token_hex(3)}", f"-rpcpassword={secrets.token_hex(12)}"]
        net = "-regtest" if chain == "regtest" else "-testnet"
        self.base = [net, f"-datadir={self.dir}", f"-rpcport={self.rpcport}", *self.auth]
        argv = [
            "litecoind",
            *self.base,
            "-printtoconsole",
            "-server",
            "-rpcbind=127.0.0.1",
            "-rpcallowip=127.0.0.1",
            "-dnsseed=0",
            "-discover=0",
            "-upnp=0",
            "-onlynet=ipv4",
            "-fallbackfee=0.0002",
            "-listenonion=0",
            *extra,
        ]
        if connect is None:
            argv += ["-listen=1", f"-bind={p2p[0]}:{p2p[1]}", f"-port={p2p[1]}", "-connect=0"]
        else:
            argv += ["-listen=0", f"-connect={connect}"]
        self.proc = s.topo.spawn(role, f"litecoind-{role}", argv)

    def cli(self, *args: str, wallet: bool = False, check: bool = True) -> Any:
        argv = ["litecoin-cli", *self.base, *(["-rpcwallet=w"] if wallet else []), *args]
        return _run_cli(self.s, self.role, argv, f"{self.role} {' '.join(args)}", check)

    def ready(self) -> None:
        def up() -> bool:
            if not self.proc.alive():
                raise LabError("lab.program_died", f"litecoind ({self.role}) exited")
            return self.cli("getblockchaininfo", check=False) is not None

        _poll(f"litecoind RPC ({self.role})", up, _READY_S, 0.2)


def _ltc_peer(node: _LtcNode) -> dict[str, Any]:
    peers = node.cli("getpeerinfo")
    return peers[0] if isinstance(peers, list) and peers else {}


class Litecoin(Scenario):
    """Two Litecoin Core nodes: blocks and transactions on regtest, handshakes on testnet4."""

    name = "litecoin"
    summary = "two Litecoin Core nodes (litecoind): regtest blocks + tx relay, or testnet4 handshake"
    traffic_class = "crypto"
    family = "litecoin"
    programs: ClassVar[dict[str, str]] = {"litecoind": "litecoind", "litecoin-cli": "litecoind"}
    variants = ("regtest", "testnet")
    max_rtt_ms = 80

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        port = s.port("port", 19444 if variant == "regtest" else 19335, 0.4)
        srv = _LtcNode(s, "server", variant, (a.server_ip, port), None)
        # the client node starts once the server node listens: no refused first SYN in the capture
        s.topo.wait_port("server", port, timeout=_READY_S)
        cli = _LtcNode(s, "client", variant, (a.client_ip, 0), f"{a.server_ip}:{port}")
        s.identify(stack="litecoind", impl="litecoind")
        srv.ready()
        cli.ready()
        _poll(
            "litecoin peers connected",
            lambda: srv.cli("getconnectioncount") and cli.cli("getconnectioncount"),
            20,
        )
        out = Outcome(
            rules=[FlowRule("p2p", PROTO["tcp"], a.server_ip, port, "crypto", "litecoin")],
            software=["litecoind", "litecoin-cli"],
        )
        if variant == "regtest":
            self._regtest(s, srv, cli, out)
        else:
            self._testnet(s, srv, cli, out)
        peer = _ltc_peer(cli)
        out.checks["client_peer_bytes_sent"] = int(peer.get("bytessent", 0))
        out.checks["client_peer_bytes_recv"] = int(peer.get("bytesrecv", 0))
        out.checks["client_msgs_recv"] = sorted(peer.get("bytesrecv_per_msg", {}))
        out.carried_bytes = int(peer.get("bytessent", 0)) + int(peer.get("bytesrecv", 0))
        return out

    def _regtest(self, s: Session, srv: _LtcNode, cli: _LtcNode, out: Outcome) -> None:
        for n in (srv, cli):
            n.cli("createwallet", "w")
        types = ("legacy", "p2sh-segwit", "bech32")
        mine_to = cli.cli("getnewaddress", "", s.choose("miner_address_type", types), wallet=True)
        nblocks = 101 + s.rng.randrange(0, 30)
        s.params["initial_blocks"] = nblocks
        cli.cli("generatetoaddress", str(nblocks), mine_to, wallet=True)
        tip = cli.cli("getbestblockhash")
        _poll("server node synced the mined blocks", lambda: srv.cli("getbestblockhash") == tip, 30)
        ntx = s.rng.randrange(2, 7)
        s.params["payments"] = ntx
        sent: dict[str, tuple[str, float]] = {}
        for _ in range(ntx):
            addr = srv.cli("getnewaddress", "", s.rng.choice(types), wallet=True)
            amount = round(s.rng.uniform(0.01, 5.0), 6)
            txid = cli.cli("sendtoaddress", addr, f"{amount:.6f}", wallet=True)
            sent[txid] = (addr, amount)
            time.sleep(s.rng.uniform(0.05, 0.6))
        _poll(
            "transactions relayed to the server node", lambda: set(sent) <= set(srv.cli("getrawmempool")), 40
        )
        cli.cli("generatetoaddress", "1", mine_to, wallet=True)
        tip = cli.cli("getbestblockhash")
        _poll("server node got the confirming block", lambda: srv.cli("getbestblockhash") == tip, 30)
        ok = sum(
            1
            for addr, amount in sent.values()
            if abs(float(srv.cli("getreceivedbyaddress", addr, "1", wallet=True)) - amount) < 1e-8
        )
        # and back: the server pays the client, the server mines the block
        back = cli.cli("getnewaddress", "", s.rng.choice(types), wallet=True)
        back_amount = round(s.rng.uniform(0.001, 0.5), 6)
        back_txid = srv.cli("sendtoaddress", back, f"{back_amount:.6f}", wallet=True)
        _poll("transaction relayed to the client node", lambda: back_txid in cli.cli("getrawmempool"), 40)
        srv_mine = srv.cli("getnewaddress", wallet=True)
        srv.cli("generatetoaddress", "1", srv_mine, wallet=True)
        tip = srv.cli("getbestblockhash")
        _poll("client node got the server's block", lambda: cli.cli("getbestblockhash") == tip, 30)
        back_ok = abs(float(cli.cli("getreceivedbyaddress", back, "1", wallet=True)) - back_amount) < 1e-8
        height = int(srv.cli("getblockcount"))
        out.checks |= {
            "blocks": height,
            "best_block": str(tip),
            "payments_confirmed": ok + int(back_ok),
            "payments_sent": ntx + 1,
        }
        if ok != ntx or not back_ok or int(cli.cli("getblockcount")) != height:
            out.problems.append(f"{ok}/{ntx} payments and back {back_ok} confirmed on the other node")

    def _testnet(self, s: Session, srv: _LtcNode, cli: _LtcNode, out: Outcome) -> None:
        need = {"version", "verack", "getheaders"}

        def handshaken() -> bool:
            return all(need <= set(_ltc_peer(n).get("bytesrecv_per_msg", {})) for n in (srv, cli))

        _poll("testnet handshake and getheaders both ways", handshaken, 30, 0.3)
        # keep the connection a little (pings, feefilter, addr), as long as a short session
        time.sleep(min(s.duration_s, 3.0) * s.rng.uniform(0.3, 1.0))
        info = cli.cli("getblockchaininfo")
        out.checks["chain"] = str(info.get("chain"))
        out.checks["server_msgs_recv"] = sorted(_ltc_peer(srv).get("bytesrecv_per_msg", {}))
        if info.get("chain") != "test":
            out.problems.append(f"client node is on {info.get('chain')!r}, not test")


_last_error: dict[str, str] = {}


def _json_rpc(
    s: Session, role: Role, url: str, method: str, params: dict[str, Any] | None, timeout: float
) -> Any:
    """``result`` of a JSON-RPC call made with curl in ``role``'s namespace (None on any failure)."""
    body = json.dumps({"jsonrpc": "2.0", "id": "0", "method": method, "params": params or {}})
    argv = ["curl", "-s", "--max-time", str(timeout), "-H", "Content-Type: application/json", "-d", body, url]
    r = s.topo.run(role, argv, check=False, timeout=timeout + 5)
    if r.returncode != 0 or not r.stdout.strip():
        return None
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        return None
    if isinstance(doc, dict) and "error" in doc:
        _last_error[url] = f"{method}: {doc['error']}"
    return doc.get("result") if isinstance(doc, dict) else None


class _WalletRpc:
    def __init__(self, s: Session, port: int) -> None:
        self.s, self.url = s, f"http://127.0.0.1:{port}/json_rpc"

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        return _json_rpc(self.s, "client", self.url, method, params, timeout)


class _Monerod:
    def __init__(self, s: Session, role: Role, ip: str, p2p: int, rpc: int, peer: str | None) -> None:
        self.s, self.role, self.ip, self.rpc = s, role, ip, rpc
        self.url = f"http://{ip}:{rpc}/json_rpc"
        d = s.workdir / f"xmr-{role}"
        d.mkdir()
        argv = [
            "monerod",
            "--regtest",
            "--fixed-difficulty",
            "1",
            "--data-dir",
            str(d),
            "--log-file",
            str(d / "monerod.log"),
            "--p2p-bind-ip",
            ip,
            "--p2p-bind-port",
            str(p2p),
            "--rpc-bind-ip",
            ip,
            "--rpc-bind-port",
            str(rpc),
            "--confirm-external-bind",
            "--rpc-ssl",
            "disabled",
            "--no-igd",
            "--no-zmq",
            "--non-interactive",
            "--allow-local-ip",
            "--hide-my-port",
            "--disable-dns-checkpoints",
            "--check-updates",
            "disabled",
        ]
        if peer:
            argv += ["--add-exclusive-node", peer]
        else:
            argv += ["--add-exclusive-node", "127.0.0.9:1"]  # no outbound peers at all
        self.proc = s.topo.spawn(role, f"monerod-{role}", argv)

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 10) -> Any:
        return _json_rpc(self.s, self.role, self.url, method, params, timeout)

    def info(self) -> dict[str, Any]:
        if not self.proc.alive():
            raise LabError("lab.program_died", f"monerod ({self.role}) exited")
        got = self.call("get_info")
        return got if isinstance(got, dict) else {}


class Monero(Scenario):
    """Two monerod on regtest, one mining; levin block relay; wallet RPC to the daemon."""

    name = "monero"
    summary = "two monerod on --regtest (exclusive peers, blocks mined on one) + monero-wallet-rpc refresh"
    traffic_class = "crypto"
    family = "monero"
    programs: ClassVar[dict[str, str]] = {"monerod": "monero", "monero-wallet-rpc": "monero"}
    variants = ("regtest",)
    max_rtt_ms = 80

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        p2p = s.port("p2p_port", 18080, 0.4)
        rpc = s.port("rpc_port", 18081, 0.4)
        cp2p = s.rng.randrange(20000, 30000)
        srv = _Monerod(s, "server", a.server_ip, p2p, rpc, None)
        cli = _Monerod(s, "client", a.client_ip, cp2p, cp2p + 1, f"{a.server_ip}:{p2p}")
        wport = s.rng.randrange(30000, 40000)
        wdir = s.workdir / "xmr-wallet"
        wdir.mkdir()
        wallet = _WalletRpc(s, wport)
        s.topo.spawn(
            "client",
            "monero-wallet-rpc",
            ["monero-wallet-rpc", "--daemon-address", f"{a.server_ip}:{rpc}", "--trusted-daemon",
             "--daemon-ssl", "disabled", "--rpc-ssl", "disabled", "--wallet-dir", str(wdir),
             "--rpc-bind-ip", "127.0.0.1", "--rpc-bind-port", str(wport), "--disable-rpc-login",
             "--non-interactive", "--log-file", str(wdir / "wallet-rpc.log")],
        )  # fmt: skip
        s.identify(stack="monerod", impl="monerod")
        s.topo.wait_port("client", wport, timeout=_READY_S)
        if (
            wallet.call(
                "create_wallet", {"filename": "w", "password": secrets.token_hex(8), "language": "English"}
            )
            is None
        ):
            raise LabError("lab.wallet_failed", "monero-wallet-rpc create_wallet")
        address = str((wallet.call("get_address") or {}).get("address", ""))
        if not address:
            raise LabError("lab.wallet_failed", "monero-wallet-rpc get_address")
        _poll("monerod RPC (server)", srv.info, _READY_S, 0.3)
        _poll("monerod RPC (client)", cli.info, _READY_S, 0.3)
        _poll(
            "client node connected over levin",
            lambda: cli.info().get("outgoing_connections_count", 0),
            30,
            0.3,
        )
        rounds = s.rng.randrange(2, 5)
        mined: list[str] = []
        for _ in range(rounds):
            n = s.rng.randrange(2, 7)
            got = srv.call("generateblocks", {"amount_of_blocks": n, "wallet_address": address}, timeout=60)
            if not isinstance(got, dict) or len(got.get("blocks", [])) != n:
                raise LabError(
                    "lab.mining_failed", f"generateblocks {n}: {got!r:.200} {_last_error.get(srv.url)}"
                )
            mined += got["blocks"]
            time.sleep(s.rng.uniform(0.2, 1.5))
        s.params["blocks_mined"] = len(mined)
        s.params["mining_rounds"] = rounds
        top = srv.info()
        height = int(top.get("height", 0))
        _poll(
            "client node synced over levin",
            lambda: cli.info().get("top_block_hash") == top.get("top_block_hash"),
            40,
            0.3,
        )

        def refreshed() -> bool:
            wallet.call("refresh", timeout=40)
            return int((wallet.call("get_height") or {}).get("height", 0)) >= height

        _poll("wallet refreshed from the daemon RPC", refreshed, 40, 0.5)
        bal = wallet.call("get_balance") or {}
        cli_info = cli.info()
        out = Outcome(
            rules=[
                FlowRule("p2p", PROTO["tcp"], a.server_ip, p2p, "crypto", "monero"),
                FlowRule("rpc", PROTO["tcp"], a.server_ip, rpc, "crypto", "monero"),
            ],
            software=["monerod", "monero-wallet-rpc"],
            checks={
                "blocks_mined": len(mined),
                "height": height,
                "top_block_hash": str(top.get("top_block_hash")),
                "client_height": int(cli_info.get("height", 0)),
                "client_top_block_hash": str(cli_info.get("top_block_hash")),
                "wallet_balance": int(bal.get("balance", 0)),
            },
        )
        if cli_info.get("top_block_hash") != top.get("top_block_hash") or mined[-1] != top.get(
            "top_block_hash"
        ):
            out.problems.append("the client node does not hold the mined chain")
        if int(bal.get("balance", 0)) <= 0:
            out.problems.append("the wallet saw no mined coins")
        return out


class Stratum(Scenario):
    """Stratum v1 mining: the lab's pool and scrypt miner, plain TCP or inside stunnel's TLS."""

    name = "stratum"
    summary = "Stratum v1 pool + scrypt CPU miner (sluice.lab.stratum_pool), plain or over stunnel TLS"
    traffic_class = "crypto"
    family = "stratum"
    programs: ClassVar[dict[str, str]] = {"stunnel4": "stunnel4"}
    variants = ("tcp", "tls")
    max_rtt_ms = 80

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        port = s.choose("port", (3333, 3333, 3032, 4444, 8008, 14433, s.rng.randrange(1025, 60000)))
        # A pool sets the difficulty so a rig finds a share every few seconds and pushes a job every
        # 30–60 s; the lab's CPU miner (~3,600 scrypt hashes/s here) at 0.005 finds ~10 shares a
        # second. Over TLS only the cadence is visible: the stratum-tls rule refuses gaps under
        # 50 ms on average (bursts, not shares) and needs 4 answered shares among a record's first
        # 32 packets (the handshake takes ~15; a share 3, with the delayed ACK; a pushed job 2).
        # There the lab keeps the real proportions: a share every ~0.2–0.6 s, a job every 4–8 s.
        tls = variant == "tls"
        difficulty = s.choose("difficulty", (0.01, 0.02, 0.03) if tls else (0.005, 0.01, 0.02))
        interval = s.choose("job_interval_s", (4.0, 6.0, 8.0) if tls else (2.0, 4.0, 6.0))
        log = s.workdir / "pool.jsonl"
        pool_argv = [s.python, "-m", "sluice.lab.stratum_pool", "serve", "--log", str(log),
                     "--difficulty", str(difficulty), "--job-interval", str(interval),
                     "--style", s.choose("pool_json", ("compact", "spaced")),
                     "--order", s.choose("pool_reply_order", ("id-first", "result-first"))]  # fmt: skip
        software = ["python3"]
        if variant == "tcp":
            s.topo.spawn("server", "pool", [*pool_argv, "--bind", a.server_ip, "--port", str(port)])
            s.topo.wait_port("server", port)
            host, cport = a.server_ip, port
            s.identify(stack="sluice-lab-miner", impl="sluice-lab-pool")
        else:
            back = s.rng.randrange(20000, 30000)
            lport = s.rng.randrange(30000, 40000)
            s.topo.spawn("server", "pool", [*pool_argv, "--bind", "127.0.0.1", "--port", str(back)])
            s.topo.wait_port("server", back)
            cert = s.ca.issue(s.hostname())
            tls_max = s.choose("tls_max", ("TLSv1.2", "TLSv1.3"))
            srv = s.file(
                "stunnel-srv.conf",
                f"foreground = yes\npid =\n[pool]\naccept = {a.server_ip}:{port}\n"
                f"connect = 127.0.0.1:{back}\n"
                f"cert = {cert.cert}\nkey = {cert.key}\nsslVersionMax = {tls_max}\n",
            )
            cli = s.file(
                "stunnel-cli.conf",
                f"foreground = yes\npid =\n[pool]\nclient = yes\naccept = 127.0.0.1:{lport}\n"
                f"connect = {a.server_ip}:{port}\nCAfile = {s.ca.cert}\nverifyChain = yes\n"
                f"checkHost = {cert.name}\nsni = {cert.name}\n",
            )
            s.topo.spawn("server", "stunnel-server", ["stunnel4", str(srv)])
            s.topo.wait_port("server", port)
            s.topo.spawn("client", "stunnel-client", ["stunnel4", str(cli)])
            s.topo.wait_port("client", lport)
            host, cport = "127.0.0.1", lport
            software.append("stunnel4")
            s.identify(stack="sluice-lab-miner via stunnel", impl="sluice-lab-pool+stunnel")
        seconds = round(max(6.0, 2 * s.duration_s) * s.rng.uniform(1.0, 1.5), 1)
        worker = s.choose("worker", ("rig", "lab", "w")) + f".{s.rng.randrange(1, 100)}"
        # a real miner submits shares for hours; over TLS only their cadence is visible, and the
        # stratum-tls rule needs 4 answered submissions: a TLS session mines until 5 are sent
        min_shares = 5 if variant == "tls" else 3
        r = s.topo.run(
            "client",
            [s.python, "-m", "sluice.lab.stratum_pool", "mine", "--host", host, "--port", str(cport),
             "--user", worker, "--seconds", str(seconds), "--min-shares", str(min_shares),
             "--style", s.choose("miner_json", ("spaced", "compact"))],
            timeout=3 * seconds + 60,
        )  # fmt: skip
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise LabError("lab.no_result", (r.stdout + r.stderr)[-300:])
        miner = json.loads(lines[-1])
        time.sleep(0.3)
        events = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
        shares = [e for e in events if e["kind"] == "share"]
        accepted = sum(1 for e in shares if e["ok"])
        out = Outcome(
            rules=[FlowRule("pool", PROTO["tcp"], a.server_ip, port, "crypto", "stratum")],
            software=software,
            checks={
                "mining_seconds": seconds,
                "hashes": int(miner["hashes"]),
                "jobs": int(miner["jobs"]),
                "shares_submitted": int(miner["submitted"]),
                "shares_accepted_miner": int(miner["accepted"]),
                "shares_accepted_pool": accepted,
                "shares_rejected_pool": len(shares) - accepted,
                "subscribed": any(e["kind"] == "subscribe" for e in events),
                "authorized": any(e["kind"] == "authorize" for e in events),
            },
            carried_bytes=int(miner["bytes_sent"]) + int(miner["bytes_received"]),
        )
        if accepted < 2 or accepted != int(miner["accepted"]):
            out.problems.append(f"pool accepted {accepted} shares, miner saw {miner['accepted']} accepted")
        if not (out.checks["subscribed"] and out.checks["authorized"]):
            out.problems.append("no subscribe/authorize in the pool log")
        return out


_LTC_REGTEST_COIN = {"COIN": "Litecoin", "NET": "regtest"}
_SYSTEM_PYTHON = "/usr/bin/python3"


def _electrumx_server() -> str | None:
    """Path of e-x's ``electrumx_server``: beside sluice's Python (its virtualenv), else on PATH."""
    near = Path(sys.executable).parent / "electrumx_server"
    return str(near) if near.is_file() else which("electrumx_server")


class _ElectrumCli:
    """Debian's Electrum in the client namespace (daemon spawned, commands run), on Litecoin regtest."""

    def __init__(self, s: Session, server: str) -> None:
        from sluice.lab import electrum_client

        self.s = s
        self.base = [
            _SYSTEM_PYTHON,
            str(Path(electrum_client.__file__)),
            "--regtest",
            "-D",
            str(s.workdir / "el"),
        ]
        self.cmd("create", "--offline")
        self.proc = s.topo.spawn(
            "client", "electrum", [*self.base, "daemon", "--oneserver", "--server", server]
        )

    def cmd(self, *args: str, check: bool = True) -> Any:
        return _run_cli(self.s, "client", [*self.base, *args], f"electrum {' '.join(args)}", check)


class Electrum(Scenario):
    """Electrum wallet <-> ElectrumX (e-x) <-> Litecoin Core, on regtest: the Electrum protocol for real."""

    name = "electrum"
    summary = "Debian's Electrum wallet against the e-x Electrum server on a Litecoin Core regtest node"
    traffic_class = "crypto"
    family = "electrum"
    programs: ClassVar[dict[str, str]] = {
        "litecoind": "litecoind",
        "litecoin-cli": "litecoind",
        "electrum": "electrum",
    }
    variants = ("tcp",)
    max_rtt_ms = 80

    def missing(self) -> list[str]:
        """Debian programs, and e-x's ``electrumx_server`` (PyPI, extra ``lab``) beside sluice's Python."""
        return super().missing() + (
            [] if _electrumx_server() else ["electrumx_server (pip install 'sluice[lab]')"]
        )

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        port = s.port("port", 50001, 0.5)
        node = _LtcNode(
            s, "server", "regtest", (a.server_ip, s.rng.randrange(20000, 30000)), None, "-txindex=1"
        )
        node.ready()
        node.cli("createwallet", "w")
        mine_to = node.cli("getnewaddress", wallet=True)
        node.cli("generatetoaddress", str(101 + s.rng.randrange(0, 20)), mine_to, wallet=True)
        user, password = node.auth[0].split("=", 1)[1], node.auth[1].split("=", 1)[1]
        db = s.workdir / "ex-db"
        db.mkdir()
        env = _LTC_REGTEST_COIN | {
            "ALLOW_ROOT": "1",  # the lab runs as root; e-x refuses that unless told
            "DAEMON_URL": f"http://{user}:{password}@127.0.0.1:{node.rpcport}/",
            "DB_DIRECTORY": str(db),
            "DB_ENGINE": "leveldb",
            "SERVICES": f"tcp://{a.server_ip}:{port}",
            "PEER_DISCOVERY": "off",
            "PEER_ANNOUNCE": "",
        }
        s.topo.spawn("server", "electrumx", [_electrumx_server() or "electrumx_server"], env=env)
        s.topo.wait_port("server", port, timeout=_READY_S)
        wallet = _ElectrumCli(s, f"{a.server_ip}:{port}:t")
        s.identify(stack="electrum", impl="e-x")
        height = int(node.cli("getblockcount"))

        def synced() -> bool:
            if not wallet.proc.alive():
                raise LabError("lab.program_died", "electrum daemon exited")
            info = wallet.cmd("getinfo", check=False)
            if not isinstance(info, dict):
                return False
            return bool(info.get("connected")) and info.get("blockchain_height") == height

        _poll("electrum connected and synced the headers", synced, _READY_S, 0.5)
        wallet.cmd("load_wallet")
        npay = s.rng.randrange(1, 4)
        total = 0.0
        for _ in range(npay):
            addr = str(wallet.cmd("createnewaddress"))
            amount = round(s.rng.uniform(0.01, 3.0), 6)
            node.cli("sendtoaddress", addr, f"{amount:.6f}", wallet=True)
            total += amount
            time.sleep(s.rng.uniform(0.1, 0.8))
        node.cli("generatetoaddress", "1", mine_to, wallet=True)

        def confirmed() -> float:
            bal = wallet.cmd("getbalance", check=False)
            return float(bal.get("confirmed", 0)) if isinstance(bal, dict) else 0.0

        got = _poll("electrum saw the payments confirmed", lambda: abs(confirmed() - total) < 1e-8, 40, 0.5)
        back_to = node.cli("getnewaddress", "", "bech32", wallet=True)
        back = round(s.rng.uniform(0.001, min(0.5, total / 2)), 6)
        tx = wallet.cmd("payto", back_to, f"{back:.6f}")
        raw = tx["hex"] if isinstance(tx, dict) else str(tx)
        txid = str(wallet.cmd("broadcast", raw))
        _poll("the wallet's transaction reached the node", lambda: txid in node.cli("getrawmempool"), 30, 0.3)
        node.cli("generatetoaddress", "1", mine_to, wallet=True)
        back_ok = abs(float(node.cli("getreceivedbyaddress", back_to, "1", wallet=True)) - back) < 1e-8

        def history() -> int:
            h = wallet.cmd("onchain_history", check=False)
            return len(h.get("transactions", [])) if isinstance(h, dict) else 0

        # the server notifies the wallet of its address's new status; the wallet fetches the tx
        _poll("the wallet's history holds every transaction", lambda: history() >= npay + 1, 30, 0.5)
        ntx = history()
        s.params["payments"] = npay
        out = Outcome(
            rules=[FlowRule("electrum", PROTO["tcp"], a.server_ip, port, "crypto", "electrum")],
            software=["electrum", "e-x", "litecoind"],
            checks={
                "payments_confirmed_wallet": npay if got else 0,
                "wallet_balance_confirmed": confirmed(),
                "wallet_history_txs": ntx,
                "payment_back_confirmed": int(back_ok),
                "blocks": int(node.cli("getblockcount")),
            },
        )
        if not back_ok:
            out.problems.append("the wallet's payment back was not confirmed on the node")
        if ntx < npay + 1:
            out.problems.append(f"wallet history has {ntx} transactions, expected {npay + 1}")
        return out


_CLIENTS = Path(__file__).resolve().parents[1] / "clients"


class Ethereum(Scenario):
    """Two @ethereumjs/devp2p nodes: discv4 discovery over UDP, then RLPx + eth/68 over TCP."""

    name = "ethereum"
    summary = "two devp2p nodes (npm @ethereumjs/devp2p): discv4, RLPx handshake, eth/68 Status + headers"
    traffic_class = "crypto"
    family = "ethereum"
    programs: ClassVar[dict[str, str]] = {"node": "nodejs"}
    variants = ("devp2p",)
    max_rtt_ms = 80

    def missing(self) -> list[str]:
        """nodejs, and the npm packages of ``clients/package.json`` (``npm ci --prefix`` that folder)."""
        have = (_CLIENTS / "node_modules" / "@ethereumjs" / "devp2p" / "package.json").is_file()
        return super().missing() + ([] if have else [f"@ethereumjs/devp2p (npm ci --prefix {_CLIENTS})"])

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        tcp = s.port("tcp_port", 30303, 0.5)
        udp = s.choose("udp_port", (tcp, tcp, s.rng.randrange(20000, 30000)))
        script = str(_CLIENTS / "eth_node.mjs")
        srv = s.topo.spawn(
            "server", "eth-server", ["node", script, "server", a.server_ip, str(tcp), str(udp)]
        )
        s.topo.wait_port("server", tcp, timeout=_READY_S)

        def server_id() -> str:
            if not srv.alive():
                raise LabError("lab.program_died", "eth_node server exited")
            for line in s.topo.log_path("eth-server").read_text().splitlines():
                if line.startswith('{"event":"id"'):
                    return str(json.loads(line)["id"])
            return ""

        node_id = _poll("the server node's id", server_id, _READY_S, 0.2)
        s.identify(stack="ethereumjs-devp2p", impl="ethereumjs-devp2p")
        ctcp, cudp = s.rng.randrange(30000, 40000), s.rng.randrange(40000, 50000)
        r = s.topo.run(
            "client",
            [
                "node",
                script,
                "client",
                a.client_ip,
                str(ctcp),
                str(cudp),
                node_id,
                a.server_ip,
                str(tcp),
                str(udp),
            ],
            check=False,
            timeout=60,
        )
        events = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
        result = next((e for e in reversed(events) if e.get("event") == "result"), None)
        if result is None:
            raise LabError("lab.no_result", (r.stdout + r.stderr)[-300:])
        hello = result.get("hello") or {}
        protocols = [str(p) for p in hello.get("protocols") or []]
        server_log = s.topo.log_path("eth-server").read_text()
        out = Outcome(
            rules=[
                FlowRule("rlpx", PROTO["tcp"], a.server_ip, tcp, "crypto", "ethereum"),
                FlowRule("discv4", PROTO["udp"], a.server_ip, udp, "crypto", "ethereum", carrier=False),
            ],
            software=["node", "@ethereumjs/devp2p"],
            checks={
                "discovered": bool(result.get("discovered")),
                "hello_client": str(hello.get("client", "")),
                "hello_protocols": protocols,
                "status_exchanged": bool(result.get("status")),
                "headers_answered": int(result.get("headers", 0)),
                "server_saw_get_headers": '"get_headers"' in server_log,
                "server_node_id": str(node_id),
            },
        )
        if not (result.get("discovered") and result.get("status") and result.get("headers")):
            out.problems.append(f"devp2p session incomplete: {result}")
        if "eth/68" not in protocols or '"get_headers"' not in server_log:
            out.problems.append("no eth/68 in the Hello, or the server never got GetBlockHeaders")
        return out
