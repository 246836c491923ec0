#!/usr/bin/env bash
# Install sluice on a Debian 12 machine: system packages, a virtualenv in .venv, the package.
#   scripts/install.sh          what `sluice` needs (tcpdump for live filters)
#   scripts/install.sh --test   plus everything the test suite uses (tshark, PostgreSQL,
#                               named-checkzone, unbound, nftables, squid, dnsmasq, lab programs)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

apt_packages=(python3 python3-venv python3-pip python3-dev gcc libgomp1 tcpdump iproute2)
if [ "$mode" = "--test" ]; then
  apt_packages+=(tshark postgresql bind9-utils unbound nftables iptables squid dnsmasq-base
                 dnsutils curl openssl procps libnetfilter-queue-dev iperf3 wrk
                 chromium nats-server systemd)
  if [ -f scripts/lab-packages.txt ]; then
    while read -r pkg; do
      case "$pkg" in ''|'#'*) ;; *) apt_packages+=("$pkg") ;; esac
    done < scripts/lab-packages.txt
  fi
fi

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  # daemons installed here are not started in the root namespace
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
extras="parquet,bench,mirrors,console,cluster"
[ "$mode" = "--test" ] && extras="test,parquet,bench,lab,mirrors,console,cluster"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[${extras}]"
# the lab's JavaScript programs (src/sluice/lab/clients/package.json: @ethereumjs/devp2p for the ethereum scenario)
if [ "$mode" = "--test" ] && command -v npm >/dev/null; then
  npm ci --prefix src/sluice/lab/clients --no-audit --no-fund --loglevel=error >/dev/null
fi
echo "sluice installed in .venv ($(.venv/bin/sluice --version))" >&2
# numba compiles its kernels on first use (20-60 s per command on a cold cache): do it now, once
.venv/bin/python scripts/warm_kernels.py || echo "sluice: compiling the kernels ahead failed; they compile on first use instead" >&2
