"""``sluice registry snapshot keygen|publish|verify``: signed register snapshots for gateways.

A thin shell over :mod:`sluice.registry.snapshot`. Exit codes: 0 OK, 2 usage error (a bad key),
3 I/O error or a snapshot that does not verify.
"""

from __future__ import annotations

__all__ = ["snapshot_group"]

import json

import click

from sluice.cli._context import DEFAULT_REGISTER, register_option
from sluice.cli._exit import InputFailure, UsageFailure

EXIT_USAGE, EXIT_IO = 2, 3


def _header_json(h: object) -> str:
    return json.dumps({n: getattr(h, n) for n in h.__slots__}, indent=2)  # type: ignore[attr-defined]


@click.group(name="snapshot")
def snapshot_group() -> None:
    """Signed, versioned register snapshots for gateways that must not reach the database."""


@snapshot_group.command("keygen")
@click.option("--private", "private_path", required=True, type=click.Path(dir_okay=False))
@click.option("--public", "public_path", required=True, type=click.Path(dir_okay=False))
def keygen_cmd(private_path: str, public_path: str) -> None:
    """Write a new Ed25519 key pair (PEM; the private key readable by its owner only)."""
    from sluice.registry.snapshot import generate_key

    try:
        key_id = generate_key(private_path, public_path)
    except OSError as exc:
        raise InputFailure(str(exc)) from None
    click.echo(f"key {key_id}: private {private_path}, public {public_path}")


@snapshot_group.command("publish")
@register_option(param=None, default=DEFAULT_REGISTER)
@click.option(
    "--key", "key_path", required=True, type=click.Path(dir_okay=False), help="Ed25519 private key (PEM)."
)
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Snapshot file to write."
)
@click.option("--json", "as_json", is_flag=True, help="Print the header as JSON.")
@click.pass_context
def publish_cmd(ctx: click.Context, key_path: str, out_path: str, as_json: bool) -> None:
    """Write a signed snapshot of the register (--register) to OUT (atomically replaced)."""
    from sluice.cli._context import registry_db as _db
    from sluice.registry import open_store
    from sluice.registry.model import RegisterNotFound, RegistryError
    from sluice.registry.snapshot import SnapshotError, load_private_key, publish_snapshot

    try:
        key = load_private_key(key_path)
    except SnapshotError as exc:
        raise UsageFailure(str(exc)) from None
    except OSError as exc:
        raise UsageFailure(f"cannot read {key_path}: {exc.strerror}") from None
    try:
        store = open_store(_db(ctx))
        try:
            header = publish_snapshot(store, out_path, key)
        finally:
            store.close()
    except (RegistryError, OSError) as exc:
        raise (UsageFailure if isinstance(exc, RegisterNotFound) else InputFailure)(str(exc)) from None
    if as_json:
        click.echo(_header_json(header))
    else:
        click.echo(
            f"snapshot version {header.version}: {header.entries} entries, {header.proposals} proposals, "
            f"{header.payload_bytes} bytes compressed, key {header.key_id} -> {out_path}"
        )


@snapshot_group.command("verify")
@click.argument("source")
@click.option(
    "--public", "public_path", required=True, type=click.Path(dir_okay=False), help="Ed25519 public key."
)
@click.option("--json", "as_json", is_flag=True, help="Print the header as JSON.")
def verify_cmd(source: str, public_path: str, as_json: bool) -> None:
    """Verify the snapshot SOURCE (file or http(s) URL) as a gateway does; print its header."""
    from sluice.registry.snapshot import SnapshotError, load_public_key, read_snapshot

    try:
        pub = load_public_key(public_path)
    except (SnapshotError, OSError) as exc:
        raise UsageFailure(str(exc)) from None
    try:
        snap = read_snapshot(source, pub)
    except SnapshotError as exc:
        raise InputFailure(str(exc)) from None
    if as_json:
        click.echo(_header_json(snap.header))
    else:
        h = snap.header
        click.echo(f"ok: version {h.version} of {h.created}, {h.entries} entries, {h.proposals} proposals")
