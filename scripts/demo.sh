#!/usr/bin/env bash
# Install sluice and run the main job on the bundled example capture.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/sluice flows examples/demo.pcapng
