"""``sluice services list`` and ``show``: through click's runner and as ``python -m sluice``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from sluice.cli.main import cli
from sluice.services import default_catalogue


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["services", *args])
    return res.exit_code, res.stdout, res.stderr


def test_list_text_and_json() -> None:
    code, out, _ = _run("list")
    assert code == 0
    assert "nordvpn" in out and "vpn/commercial:nordvpn" in out and "circumvention/psiphon" in out
    assert "cloudflare" in out and "never block it by address" in out
    code, out, _ = _run("list", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert [s["id"] for s in doc["services"]] == [s.id for s in default_catalogue().services]
    assert {e["id"] for e in doc["shared"]} >= {"cloudflare", "aws", "m247"}
    assert json.loads(_run("list", "--json")[1]) == doc


def test_show_a_service_with_ranges_sources_asns_and_shared_flags() -> None:
    code, out, _ = _run("show", "cloudflarewarp")
    assert code == 0
    assert "engage.cloudflareclient.com" in out and "wireguard" in out
    assert "162.159.193.0/24  [in shared infrastructure: Cloudflare 162.158.0.0/15" in out
    assert "developers.cloudflare.com" in out
    code, out, _ = _run("show", "NordVPN")
    assert code == 0 and "AS136787" in out and "X4BNet" in out and "nordcdn.com" in out
    code, out, _ = _run("show", "derp7.tailscale.com", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["id"] == "tailscale" and "derp*.tailscale.com" in doc["names"]
    warp = json.loads(_run("show", "cloudflarewarp", "--json")[1])
    assert all(r["shared"]["id"] == "cloudflare" and r["source"] for r in warp["ranges"])


def test_show_shared_infrastructure() -> None:
    code, out, _ = _run("show", "m247")
    assert code == 0 and "AS9009" in out and "never names a service" in out
    doc = json.loads(_run("show", "cloudflare", "--format", "json")[1])
    assert doc["shared"] is True and any(r["cidr"] == "104.16.0.0/13" for r in doc["ranges"])


def test_unknown_name_is_a_usage_error() -> None:
    code, out, err = _run("show", "no-such-vpn")
    assert code == 2 and out == ""
    assert "no service or shared infrastructure entry named 'no-such-vpn'" in err
    code, out, _ = _run("show", "no-such-vpn", "--json")
    assert code == 2 and json.loads(out)["error"] == "services.unknown"


def test_a_bad_catalogue_file_is_a_usage_error_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[catalogue]\nversion = 1\n[[service]]\nid = "x"\nbrand = "X"\nclass = "vpn"\n'
        'family = "commercial:x"\n'
        'homepage = "https://x.example"\nranges = [{ cidr = "10.0.0.1/8", source = "s" }]\n'
    )
    res = CliRunner().invoke(cli, ["services", "--catalogue", str(bad), "list"])
    assert res.exit_code == 2
    assert "catalogue.service[x].ranges[0].cidr" in res.stderr and "Traceback" not in res.output
    good = CliRunner().invoke(cli, ["services", "--catalogue", str(bad).replace("bad", "absent"), "list"])
    assert good.exit_code == 2 and "catalogue.path" in good.stderr


def test_python_dash_m_sluice() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sluice", "services", "show", "psiphon", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["family"] == "psiphon"
    proc = subprocess.run(
        [sys.executable, "-m", "sluice", "services", "show", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "nope" in proc.stderr and "Traceback" not in proc.stderr
