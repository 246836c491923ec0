"""``sluice lab``: run real VPN/proxy/tunnel software in namespaces and write labeled captures."""

from __future__ import annotations

__all__ = ["lab"]

import json
import os
import subprocess
import time
from pathlib import Path

import click

from sluice.cli._exit import Findings, InputFailure, Interrupted, UsageFailure
from sluice.errors import ConfigError
from sluice.lab.registry import all_packages, all_scenarios, parse_selection
from sluice.lab.runner import SessionReport, run_lab
from sluice.lab.topology import LabError, clean_stale


@click.group(name="lab")
def lab() -> None:
    """Real VPN, proxy, tunnel and ordinary traffic, captured and labeled."""


@lab.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per scenario.")
def list_cmd(as_json: bool) -> None:
    """Show the scenarios and whether their programs are installed."""
    for sc in all_scenarios().values():
        missing = sc.missing()
        row = {
            "name": sc.name,
            "class": sc.traffic_class,
            "family": sc.family,
            "variants": list(sc.variants),
            "quick": sc.quick,
            "installed": not missing,
            "missing": missing,
            "packages": sc.packages(),
            "summary": sc.summary,
        }
        if as_json:
            click.echo(json.dumps(row))
        else:
            state = "installed" if not missing else "missing: " + ",".join(missing)
            mark = "*" if sc.quick else " "
            click.echo(
                f"{mark} {sc.name:<14} {sc.traffic_class + '/' + sc.family:<26} {state:<22} {sc.summary}"
            )
    if not as_json:
        click.echo("(* = quick subset; variants: sluice lab list --json)")


@lab.command("install")
@click.option("--dry-run", is_flag=True, help="Print the apt-get command only.")
def install_cmd(dry_run: bool) -> None:
    """Install every scenario's programs from Debian packages (apt-get, as root)."""
    argv = [
        "apt-get",
        "-o",
        "DPkg::Lock::Timeout=600",
        "install",
        "-y",
        "--no-install-recommends",
        *all_packages(),
    ]
    if dry_run:
        click.echo(" ".join(argv))
        return
    if os.geteuid() != 0:
        raise UsageFailure("needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    rc = subprocess.run(argv, env=env, check=False).returncode
    if rc != 0:
        raise InputFailure(f"apt-get failed (rc {rc})")


@lab.command("clean")
def clean_cmd() -> None:
    """Remove namespaces left behind by lab runs whose process died."""
    removed = clean_stale()
    click.echo(f"removed {len(removed)} stale namespaces" + (f": {' '.join(removed)}" if removed else ""))


def _echo_report(rep: SessionReport, as_json: bool) -> None:
    if as_json:
        d = {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in ((f, getattr(rep, f)) for f in rep.__dataclass_fields__)
        }
        click.echo(json.dumps(d))
        return
    line = f"{rep.status:<7} {rep.session_id:<44} {rep.seconds:6.1f}s"
    if rep.status == "ok":
        line += f" {rep.packets:7d} pkts {rep.capture_bytes / 1e6:7.2f} MB"
    else:
        line += f"  {rep.message[:300]}"
    click.echo(line)


@lab.command("run")
@click.argument("scenarios", nargs=-1)
@click.option(
    "--sessions",
    "-n",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Sessions per scenario (variants rotate across sessions).",
)
@click.option("--seed", "-s", type=int, default=0, show_default=True, help="Run seed.")
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("lab-out"),
    show_default=True,
    help="Output directory.",
)
@click.option(
    "--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True, help="Sessions run in parallel."
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.5),
    default=3.0,
    show_default=True,
    help="Target seconds of payload mix per session.",
)
@click.option("--quick", is_flag=True, help="Without SCENARIOS: only the quick subset.")
@click.option(
    "--set",
    "pins",
    multiple=True,
    metavar="KEY=VALUE",
    help="Fix a session parameter instead of drawing it (e.g. inner=https); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per session.")
def run_cmd(
    scenarios: tuple[str, ...],
    sessions: int,
    seed: int,
    out: Path,
    jobs: int,
    duration: float,
    quick: bool,
    pins: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run SCENARIO[:VARIANT]… (default: all) and write labeled captures to --out."""
    try:
        plan = parse_selection(scenarios, quick=quick)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    fixed = {}
    for pin in pins:
        key, eq, value = pin.partition("=")
        if not eq or not key.strip():
            raise click.UsageError(f"--set {pin!r}: expected KEY=VALUE")
        fixed[key.strip()] = value.strip()
    if os.geteuid() != 0:
        raise UsageFailure("needs root (network namespaces)")
    t0 = time.monotonic()
    try:
        reports = run_lab(
            plan,
            sessions=sessions,
            seed=seed,
            out=out,
            jobs=jobs,
            duration_s=duration,
            progress=lambda r: _echo_report(r, as_json),
            pins=fixed,
        )
    except LabError as exc:
        raise UsageFailure(str(exc)) from None
    except KeyboardInterrupt:
        raise Interrupted() from None
    ok = [r for r in reports if r.status == "ok"]
    failed = [r for r in reports if r.status == "failed"]
    skipped = [r for r in reports if r.status == "skipped"]
    size = sum(r.capture_bytes for r in ok)
    summary = (
        f"{len(ok)} ok, {len(failed)} failed, {len(skipped)} skipped in "
        f"{time.monotonic() - t0:.1f}s; {size / 1e6:.2f} MB of captures in {out}"
    )
    click.echo(summary, err=as_json)
    if failed:
        raise Findings()


@lab.command("dataset")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Parquet file to write (default: DIRECTORY/flows.parquet).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def dataset_cmd(directory: str, out_path: str | None, as_json: bool) -> None:
    """Turn a directory of labeled lab captures into one labeled flow table (Parquet)."""
    import json as _json

    from sluice.errors import CaptureError, ConfigError
    from sluice.lab.dataset import build_dataset

    out = out_path or str(Path(directory) / "flows.parquet")
    try:
        summary = build_dataset(directory, out)
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None
    except CaptureError as exc:
        raise InputFailure(f"{exc} [{exc.reason}]") from None
    doc = {
        "out": out,
        "captures": summary.captures,
        "flows": summary.flows,
        "labeled": dict(sorted(summary.labeled.items())),
        "unlabeled": summary.unlabeled,
        "skipped": summary.skipped,
    }
    if as_json:
        click.echo(_json.dumps(doc, indent=2))
        return
    click.echo(
        f"{out}: {summary.flows} flows from {summary.captures} captures "
        f"({sum(summary.labeled.values())} labeled, {summary.unlabeled} unlabeled)"
    )
    for name, n in sorted(summary.labeled.items()):
        click.echo(f"  {name:32} {n}")
    for path in summary.skipped:
        click.echo(f"  skipped (no label file): {path}", err=True)
