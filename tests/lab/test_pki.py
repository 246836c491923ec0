"""The lab's certificate chains: what a server sends is a chain a client trusting only the lab
root accepts, and its size is the one the chain kind promises."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509

from sluice.lab.pki import CHAINS, LabCA


def _certs(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def _handshake(ca: LabCA, cert: Path, key: Path, name: str) -> None:
    """A real TLS handshake (Python's ssl both ends) to a client that trusts only the root."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(ca.cert))
    listener = socket.create_server(("127.0.0.1", 0))
    errors: list[BaseException] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as e:  # the client's assertion says what went wrong
            errors.append(e)

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=30) as raw,
            client_ctx.wrap_socket(raw, server_hostname=name) as tls,
        ):
            tls.send(b"x")
    finally:
        worker.join(30)
        listener.close()
    assert not errors, errors


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048"])
def test_every_chain_verifies_against_the_root_alone(tmp_path: Path, key_type: str) -> None:
    ca = LabCA(tmp_path / "ca", key_type=key_type)
    sizes = {}
    for chain in CHAINS:
        issued = ca.issue(f"www.{chain}.example", chain=chain, alt_names=("cdn.a.example", "img.b.example"))
        certs = _certs(issued.cert)
        assert len(certs) == {"leaf": 1, "public": 2, "public-cross": 3}[chain]
        leaf = certs[0]
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName)[0] == f"www.{chain}.example"
        sizes[chain] = sum(len(c.tbs_certificate_bytes) + len(c.signature) for c in certs)
        _handshake(ca, issued.cert, issued.key, f"www.{chain}.example")
        if shutil.which("openssl"):
            out = subprocess.run(
                [
                    "openssl",
                    "verify",
                    "-CAfile",
                    str(ca.cert),
                    "-untrusted",
                    str(issued.cert),
                    str(issued.cert),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, out.stdout + out.stderr
    # what the chain kinds promise: a public-like chain is the 2-3 KB burst public sites send
    assert sizes["leaf"] < 900
    assert 1500 < sizes["public"] < sizes["public-cross"] < 3600


def test_a_leaf_chain_names_one_host_and_an_unknown_chain_is_refused(tmp_path: Path) -> None:
    ca = LabCA(tmp_path / "ca")
    leaf = _certs(ca.issue("one.example", alt_names=("other.example",)).cert)[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["one.example"]
    with pytest.raises(ValueError, match="unknown chain"):
        ca.issue("x.example", chain="ev")
