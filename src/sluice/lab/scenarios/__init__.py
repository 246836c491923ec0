"""One module per scenario family; :data:`SCENARIO_CLASSES` lists them in ``lab list`` order."""

from __future__ import annotations

__all__ = ["SCENARIO_CLASSES"]

from sluice.lab.scenario import Scenario
from sluice.lab.scenarios.anyconnect import AnyConnect
from sluice.lab.scenarios.browsers import Browsers
from sluice.lab.scenarios.clients import Clients, LibClients
from sluice.lab.scenarios.crypto import Electrum, Ethereum, Litecoin, Monero, Stratum
from sluice.lab.scenarios.dns import Dns
from sluice.lab.scenarios.impls import HttpProxyPproxy, ShadowsocksAlt, SocksPproxy, TlsRelay, TrojanAlt
from sluice.lab.scenarios.ipsec import Ipsec
from sluice.lab.scenarios.longtail import BigTransfer, WebSocket
from sluice.lab.scenarios.mail import Imap, SmtpSubmission
from sluice.lab.scenarios.obfs4 import Obfs4
from sluice.lab.scenarios.openvpn import OpenVpn
from sluice.lab.scenarios.overlay import Nebula, Tinc
from sluice.lab.scenarios.providers import VpnProviders
from sluice.lab.scenarios.proxies import HttpProxy, Socks
from sluice.lab.scenarios.quic import Http3
from sluice.lab.scenarios.rtc import WebRtcMedia
from sluice.lab.scenarios.shadowsocks import Shadowsocks, ShadowsocksPlugin
from sluice.lab.scenarios.ssh import SshInteractive, SshSocks, Sshuttle
from sluice.lab.scenarios.streaming import Streaming
from sluice.lab.scenarios.tor import TorBridge, TorObfs4
from sluice.lab.scenarios.tunnels import HttpTunnel, Iodine, Kcptun, Ptunnel, Stunnel, Vxlan
from sluice.lab.scenarios.v2ray import Trojan, V2ray
from sluice.lab.scenarios.web import Http, Https
from sluice.lab.scenarios.wireguard import WireGuard

SCENARIO_CLASSES: tuple[type[Scenario], ...] = (
    OpenVpn,
    WireGuard,
    Shadowsocks,
    SshSocks,
    Https,
    Clients,
    LibClients,
    Browsers,
    Dns,
    ShadowsocksPlugin,
    Sshuttle,
    Http,
    Stunnel,
    HttpTunnel,
    Kcptun,
    Ptunnel,
    Iodine,
    Vxlan,
    Socks,
    HttpProxy,
    V2ray,
    Trojan,
    ShadowsocksAlt,
    TrojanAlt,
    TlsRelay,
    SocksPproxy,
    HttpProxyPproxy,
    Obfs4,
    Ipsec,
    AnyConnect,
    Tinc,
    Nebula,
    TorBridge,
    TorObfs4,
    Http3,
    SshInteractive,
    WebSocket,
    BigTransfer,
    Streaming,
    SmtpSubmission,
    Imap,
    WebRtcMedia,
    VpnProviders,
    Litecoin,
    Monero,
    Stratum,
    Electrum,
    Ethereum,
)
