#!/usr/bin/env bash
# Prove the test suite does not flake: clone a commit, keep every core busy with stress-ng, and run
# the whole test command (scripts/test.sh) RUNS times in a row; stop at the first failure.
#   scripts/stress-suite.sh [COMMIT] [RUNS]      (defaults: HEAD, 5)
# Writes a line per run (commit, run, exit code, seconds, pytest's summary) to
# $STRESS_DIR/results.txt and each run's output beside it. Needs stress-ng (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
commit="$(git rev-parse "${1:-HEAD}")"
runs="${2:-5}"
dir="${STRESS_DIR:-$(mktemp -d /tmp/sluice-stress.XXXXXX)}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
command -v stress-ng >/dev/null || $SUDO apt-get install -y -qq stress-ng >/dev/null

rm -rf "$dir/clone"
mkdir -p "$dir"
git clone -q "$(pwd)" "$dir/clone"
git -C "$dir/clone" checkout -q "$commit"
# the tests read ../shared beside the project: give the clone the same neighbour
if [ -d ../shared ] && [ ! -e "$dir/shared" ]; then ln -s "$(cd ../shared && pwd)" "$dir/shared"; fi

stress-ng --cpu "$(nproc)" --timeout 0 --quiet &
stress_pid=$!
trap 'kill "$stress_pid" 2>/dev/null || true' EXIT
echo "commit $commit, $runs runs, stress-ng --cpu $(nproc) (pid $stress_pid), output in $dir" >&2

for run in $(seq 1 "$runs"); do
  start=$(date +%s)
  set +e
  (cd "$dir/clone" && bash scripts/test.sh -q -p no:cacheprovider) >"$dir/run-$run.log" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - start ))
  summary="$(grep -E '(passed|failed|error)' "$dir/run-$run.log" | tail -1)"
  echo "$(date -u +%FT%TZ) $commit run $run rc=$rc ${took}s $summary" | tee -a "$dir/results.txt"
  if [ "$rc" -ne 0 ]; then
    echo "run $run failed: see $dir/run-$run.log" >&2
    exit "$rc"
  fi
done
echo "all $runs runs passed under stress-ng" >&2
