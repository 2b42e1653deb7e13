#!/usr/bin/env bash
# Builds the libFuzzer targets (build-fuzz/, clang-14, -DPOSTERN_FUZZ=ON) and
# runs each one for a bounded time with its dictionary, on a copy of its
# committed corpus in a scratch directory (the committed corpus is never
# written). Prints per target the executions, the coverage reached and the
# findings (crash, leak, timeout, out-of-memory); exits non-zero if any
# target found anything or failed to run.
#
#   tests/fuzz/run.sh                      # every target, 20 s each
#   tests/fuzz/run.sh 3600                 # every target, an hour each
#   tests/fuzz/run.sh 600 config sasl      # only these targets
#
# Findings are kept in build-fuzz/findings/<target>/ and each run's log in
# build-fuzz/fuzz-logs/<target>.log; a one-line summary per target is
# appended to build-fuzz/fuzz-summary.txt. Reproduce a finding with
# build-fuzz/fuzz/<target>_fuzz <file>. The corpus a run grows is kept in
# build-fuzz/corpus/<target>/ and the next run starts from it too (delete
# it to start from the committed seeds only).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

seconds=${1:-20}
shift || true
build=${POSTERN_FUZZ_BUILD:-build-fuzz}
case "$build" in /*) ;; *) build="$root/$build" ;; esac

echo "== fuzz build ($build, clang-14)"
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DPOSTERN_FUZZ=ON >/dev/null
cmake --build "$build" -j"$(nproc)"

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in tests/fuzz/*_fuzz.cc; do
    n=$(basename "$f" .cc)
    targets+=("${n%_fuzz}")
  done
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/postern-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$build/fuzz-logs" "$build/findings"

status=0
printf '== fuzzing %d target(s), %s s each\n' "${#targets[@]}" "$seconds"
for name in "${targets[@]}"; do
  bin="$build/fuzz/${name}_fuzz"
  if [ ! -x "$bin" ]; then
    echo "$name: no such fuzz target ($bin)"
    status=1
    continue
  fi
  work="$scratch/$name"
  mkdir -p "$work/corpus" "$work/artifacts"
  if [ -d "tests/fuzz/corpus/$name" ]; then cp -r "tests/fuzz/corpus/$name/." "$work/corpus/"; fi
  if [ -d "$build/corpus/$name" ]; then cp -r "$build/corpus/$name/." "$work/corpus/"; fi
  dict=()
  if [ -f "tests/fuzz/$name.dict" ]; then dict=(-dict="$root/tests/fuzz/$name.dict"); fi
  # The run logs into its scratch directory and the log is copied when it
  # ends, so two runs of one target (one per core) never write one file.
  log="$work/fuzz.log"
  rc=0
  started=$(date +%s)
  # In the scratch directory: the config fuzzer resolves relative paths there.
  (cd "$work" && ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "${dict[@]}" corpus >"$log" 2>&1) || rc=$?

  # The time it ran (less than asked when it stopped at a finding or was
  # interrupted): the summary's rates are computed from it.
  ran=$(($(date +%s) - started))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  added=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  cov_start=$(sed -n 's/.*INITED cov: \([0-9]*\).*/\1/p' "$log" | head -1)
  cov_end=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' "$log" | tail -1)
  findings=$(find "$work/artifacts" -type f | wc -l)
  mkdir -p "$build/corpus/$name"
  cp -r "$work/corpus/." "$build/corpus/$name/"
  cp "$log" "$build/fuzz-logs/$name.log"
  log="$build/fuzz-logs/$name.log"
  if [ "$findings" -gt 0 ]; then
    mkdir -p "$build/findings/$name"
    cp "$work/artifacts/"* "$build/findings/$name/"
  fi
  line=$(printf '%-20s execs=%-10s cov=%s->%s new_units=%-5s findings=%s rc=%s' \
    "$name" "${execs:-?}" "${cov_start:-?}" "${cov_end:-?}" "${added:-?}" "$findings" "$rc")
  echo "$line"
  echo "$(date -u +%Y-%m-%dT%H:%MZ) ${ran}s $line" >>"$build/fuzz-summary.txt"
  if [ "$findings" -gt 0 ] || [ "$rc" -ne 0 ]; then
    status=1
    for f in "$build/findings/$name/"*; do echo "  finding: $f"; done
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*fuzz check failed|.*runtime error)' "$log" | head -5 |
      sed 's/^/  /' || true
    echo "  log: $log"
  fi
done
exit $status
