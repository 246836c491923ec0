#!/usr/bin/env bash
# Install sluice, then run its main job on the bundled example (all of it written by the project:
# examples/demo.pcapng by `python -m sluice.synth.demo`, examples/demo-blocklist.txt by hand):
#   1. a register: import a block list, check names against it;
#   2. an analysis: a verdict per flow (class, family, confidence, evidence, register matches);
#   3. decisions: what the shipped policy decides for every flow (a dry run, nothing enforced),
#      written to a decision log and queried back.
# Everything it writes goes to a temporary directory, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
sluice() { .venv/bin/sluice "$@"; }
work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
reg="$work/register.db"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. The register: import examples/demo-blocklist.txt, then check three names against it"
sluice registry import --register "$reg" --source demo --format domains examples/demo-blocklist.txt
sluice registry check --register "$reg" www.rutracker.org psiphon.ca www.wikipedia.org

say "2. Analysis: a verdict per flow of examples/demo.pcapng, with its evidence and register matches"
sluice analyze examples/demo.pcapng --register "$reg"

say "3. Decisions: the shipped policy (sluice policy show-default) tried on the capture, as a gateway would"
sluice policy show-default > "$work/policy.toml"
sluice policy test "$work/policy.toml" examples/demo.pcapng --register "$reg" --log "$work/decisions"

say "   ... and the blocks, read back from the decision log (replayed decisions carry the capture's time)"
sluice decisions --log "$work/decisions" --action block
