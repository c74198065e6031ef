#!/usr/bin/env bash
# Runs the fuzz targets, each for a bounded time, and fails on the first crash, assertion or
# hang. Needs the nightly toolchain, cargo-fuzz (`cargo install cargo-fuzz --locked`) and a C++
# compiler (libFuzzer is built from source).
#
#   fuzz/run.sh                     every target, FUZZ_SECONDS (default 12) each
#   FUZZ_SECONDS=600 fuzz/run.sh cron expr   two targets, ten minutes each
#   fuzz/run.sh --list              the targets
#
# Each target's corpus (fuzz/corpus/TARGET, not committed) starts from fuzz/seeds/TARGET and
# from the repository's own examples and test fixtures, and keeps what a run finds, so a longer
# local run builds on the last. A failing input is saved under fuzz/artifacts/TARGET/; replay it
# with `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-…`.
set -euo pipefail
cd "$(dirname "$0")"
repo=..

targets=(manifest workflow config expr cron envfile channel redact price
  discover_crontab discover_launchd discover_systemd discover_railway discover_github)

if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "${targets[@]}"
  exit 0
fi
if [ $# -gt 0 ]; then
  for t in "$@"; do
    [[ " ${targets[*]} " == *" $t "* ]] || { echo "unknown fuzz target $t; fuzz/run.sh --list names them" >&2; exit 2; }
  done
  targets=("$@")
fi
seconds="${FUZZ_SECONDS:-12}"

# The repository's files each target starts from, besides fuzz/seeds/TARGET.
seed_files() {
  local fx=$repo/crates/core/tests/fixtures/discover
  case "$1" in
    manifest) ls $repo/examples/projects/*/agent-os.yaml ;;
    workflow) ls $repo/examples/workflows/*.yaml ;;
    config) ls $repo/examples/config.yaml ;;
    envfile) ls $repo/examples/projects/*/.env.example ;;
    discover_crontab) ls $fx/crontab.txt $fx/crontab-zones $fx/etc/crontab $fx/cron.d/* $repo/examples/projects/*/crontab.txt ;;
    discover_launchd) ls $fx/launchd/*.plist $repo/examples/projects/*/scripts/automation/*.plist ;;
    discover_systemd) ls $fx/systemd/*.timer ;;
    discover_railway) ls $fx/railway/*/railway.* ;;
    discover_github) ls $fx/.github/workflows/* ;;
  esac
}

for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  if [ -d "seeds/$t" ]; then cp seeds/"$t"/* "corpus/$t/"; fi
  for f in $(seed_files "$t"); do
    cp "$f" "corpus/$t/repo-$(echo "${f#"$repo"/}" | tr '/' '_')"
  done
done

# Debug assertions (and with them overflow checks) on: an overflow is a finding too.
cargo +nightly fuzz build --debug-assertions
mkdir -p logs
for t in "${targets[@]}"; do
  echo "== fuzz $t (${seconds}s)"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: 2 GiB is a blow-up.
  if ! cargo +nightly fuzz run --debug-assertions "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"logs/$t.log" 2>&1; then
    tail -n 60 "logs/$t.log" >&2
    echo "fuzz target $t failed; the input is in fuzz/artifacts/$t/, the whole log in fuzz/logs/$t.log" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "logs/$t.log" | tr '\n' ' '
  echo
done
echo "fuzzing passed: ${#targets[@]} targets, ${seconds}s each"
