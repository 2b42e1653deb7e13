#!/usr/bin/env bash
# The test command: installs what is needed, builds a Release and an
# ASan+UBSan build (warnings are errors in both), checks formatting, runs
# every unit and integration test against both builds (the fuzz corpora are
# replayed as ctest tests too), then runs each libFuzzer target briefly
# (tests/fuzz/run.sh, clang). Exits non-zero when anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash deploy/install-deps.sh

jobs=$(nproc)
status=0

echo "== format check (clang-format)"
files=$(git ls-files '*.cc' '*.h' | grep -v '^third_party/' || true)
if [ -n "$files" ]; then
  clang-format --dry-run --Werror $files || status=1
fi

echo "== ASan+UBSan build"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPOSTERN_SANITIZE=ON \
  -DPOSTERN_WERROR=ON -DPOSTERN_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs"

echo "== Release build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPOSTERN_WERROR=ON >/dev/null
cmake --build build -j"$jobs"

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:halt_on_error=1}
# LeakSanitizer always: a leak fails the unit tests (LSan's exit code) and the
# integration tests (tests/integration/harness.py reads postern's log).
export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=1"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

echo "== tests against the ASan+UBSan build"
(cd build-asan && ctest --output-on-failure -j"$jobs" --timeout 600) || status=1

# Includes bench/soak --short (ctest label "soak", Release only, run alone:
# about a minute of well-behaved and hostile load; bench/CMakeLists.txt).
echo "== tests against the Release build"
(cd build && ctest --output-on-failure -j"$jobs" --timeout 600) || status=1

echo "== fuzzing (tests/fuzz/run.sh, ${POSTERN_FUZZ_SECONDS:-10} s per target)"
tests/fuzz/run.sh "${POSTERN_FUZZ_SECONDS:-10}" || status=1

exit $status
