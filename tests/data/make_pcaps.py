"""Make the golden-test captures in tests/data/pcaps with sluice's own synthesizer and writer.

    python tests/data/make_pcaps.py

The captures are committed; re-running this gives captures with the same flows and sizes but
different handshake bytes (OpenSSL and aioquic draw their own randomness), so regenerate the
golden files afterwards (pytest tests/golden --update-golden) and review the diff.
"""

from __future__ import annotations

from pathlib import Path

from sluice.io.pcap_writer import open_writer
from sluice.synth.scenario import generate

HERE = Path(__file__).resolve().parent / "pcaps"


def main() -> None:
    HERE.mkdir(exist_ok=True)
    kinds = {
        "https": 0.3,
        "quic": 0.2,
        "dns": 0.25,
        "dns_tcp": 0.05,
        "http": 0.1,
        "ssh": 0.05,
        "socks5": 0.05,
    }
    mix = generate(40, seed=11, mix=kinds, min_packets=400, ipv6_fraction=0.3, vlan_fraction=0.2)
    with open_writer(HERE / "mix40.pcap.gz", "pcap", gzip=True, nanosecond=True) as w:
        for ts, frame in mix:
            w.write(ts, frame)
    # flows minutes apart: idle expiry between them
    quiet = generate(12, seed=12, mix=kinds, min_packets=150, flows_per_s=0.02)
    with open_writer(HERE / "sparse12.pcapng", "pcapng") as w:
        iface = w.add_interface(1)
        for ts, frame in quiet:
            w.write(iface, ts, frame)


if __name__ == "__main__":
    main()
