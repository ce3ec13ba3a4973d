#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz-NAME.c) and runs each for a
# bounded time on a copy of its seed corpus (tests/fuzz/corpus/NAME/), so a
# run never writes into the checkout. contrib/run-tests.sh runs it in CI.
#
#   contrib/fuzz.sh [--seconds N] [--build-dir DIR] [--update-corpus] [TARGET...]
#   contrib/fuzz.sh --list
#
# TARGET is a name (cid) or an executable name (fuzz-cid); default: every
# tests/fuzz/fuzz-*.c. The build dir (default build-fuzz/, or $FUZZ_BUILD_DIR)
# is configured with clang, ASan + UBSan (no recovery), and
# -fsanitize=fuzzer-no-link on every library so that coverage reaches into
# them; only the targets link libFuzzer itself (tests/fuzz/meson.build).
#
# Options:
#   --seconds N      fuzzing time per target (default $FUZZ_SECONDS, else 60)
#   --build-dir DIR  the fuzz build dir (default build-fuzz)
#   --update-corpus  afterwards, merge the inputs that add coverage into the
#                    checked-in seed corpus (libFuzzer -merge=1): for
#                    developers, never in CI
#   --list           list the targets and exit
#   -h, --help       this text
# Environment: FUZZ_ARGS adds libFuzzer flags (e.g. "-max_len=65536").
#
# Each target's run lives in BUILD/fuzz-run/NAME/ (corpus/, artifacts/, log).
# Exit status: 0 no finding; 1 a target crashed, leaked, timed out or ran
# out of memory (each reproducer printed with the command that replays it);
# 2 usage error; 3 the fuzz build could not be configured or built.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() {
  echo "fuzz: $*" >&2
  exit "${2:-2}"
}
# The number of files in directory $1 (0 when it does not exist).
count() { find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l; }

seconds=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD_DIR:-build-fuzz}
update=0
list=0
targets=()
while [ $# -gt 0 ]; do
  case $1 in
  --seconds)
    [ $# -ge 2 ] || die "--seconds needs a value"
    seconds=$2
    shift 2
    ;;
  --seconds=*)
    seconds=${1#*=}
    shift
    ;;
  --build-dir)
    [ $# -ge 2 ] || die "--build-dir needs a value"
    build=$2
    shift 2
    ;;
  --build-dir=*)
    build=${1#*=}
    shift
    ;;
  --update-corpus)
    update=1
    shift
    ;;
  --list)
    list=1
    shift
    ;;
  -h | --help)
    usage
    exit 0
    ;;
  -*) die "unknown option $1 (see --help)" ;;
  *)
    targets+=("${1#fuzz-}")
    shift
    ;;
  esac
done
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "--seconds wants a positive number of seconds, not '$seconds'"

all=()
for f in tests/fuzz/fuzz-*.c; do
  [ -e "$f" ] || continue
  n=${f#tests/fuzz/fuzz-}
  all+=("${n%.c}")
done
if [ "$list" = 1 ]; then
  printf '%s\n' "${all[@]}"
  exit 0
fi
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
[ ${#targets[@]} -gt 0 ] || die "no fuzz targets in tests/fuzz" 3
for t in "${targets[@]}"; do
  [ -f "tests/fuzz/fuzz-$t.c" ] || die "no target '$t': tests/fuzz/fuzz-$t.c does not exist (--list)"
  if [ "$(count "tests/fuzz/corpus/$t")" -eq 0 ]; then
    die "target '$t' has no seed corpus: check some inputs in under tests/fuzz/corpus/$t/"
  fi
done

command -v clang >/dev/null || die "clang not found (apt-get install clang libclang-rt-dev)" 3

# Configure (or reconfigure) and build only the targets asked for.
opts=(-Dfuzz=true -Dwerror=true "-Db_sanitize=address,undefined" -Db_lundef=false
  "-Dc_args=-fsanitize=fuzzer-no-link -fno-sanitize-recover=all")
mkdir -p "$build"
if [ -f "$build/build.ninja" ]; then
  setup=(meson setup --reconfigure "$build" "${opts[@]}")
else
  setup=(meson setup "$build" "${opts[@]}")
fi
if ! CC=clang "${setup[@]}" >"$build/fuzz-setup.log" 2>&1; then
  cat "$build/fuzz-setup.log" >&2
  die "meson setup $build failed (log above)" 3
fi
exes=()
for t in "${targets[@]}"; do exes+=("tests/fuzz/fuzz-$t"); done
ninja -C "$build" "${exes[@]}" || die "building the fuzz targets failed" 3

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

found=0
for t in "${targets[@]}"; do
  exe="$top/$build/tests/fuzz/fuzz-$t"
  run="$top/$build/fuzz-run/$t"
  rm -rf "$run"
  mkdir -p "$run/corpus" "$run/artifacts"
  cp -p "tests/fuzz/corpus/$t/"* "$run/corpus/"
  printf 'fuzz-%s: %s s ... ' "$t" "$seconds"
  rc=0
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=512 -print_final_stats=1 -artifact_prefix="$run/artifacts/" \
    ${FUZZ_ARGS:-} "$run/corpus" >"$run/log" 2>&1 || rc=$?
  findings=()
  for a in "$run/artifacts/"*; do
    [ -e "$a" ] || continue
    case ${a##*/} in
    slow-unit-*) ;; # slow, not wrong: libFuzzer's report, not a finding
    *) findings+=("$a") ;;
    esac
  done
  if [ "$rc" -eq 0 ] && [ ${#findings[@]} -eq 0 ]; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/log")
    cov=$(grep -Eo 'DONE +cov: [0-9]+' "$run/log" | grep -Eo '[0-9]+$' || true)
    echo "ok (${runs:-?} runs, ${cov:-?} edges, corpus $(count "$run/corpus") inputs)"
  else
    found=1
    echo "FAILED (libFuzzer exit $rc)"
    echo "---- fuzz-$t: the report in $run/log" >&2
    # The sanitizer's or libFuzzer's report: from its first line, 30 lines.
    first=$(grep -n -m1 -E '==[0-9]+==ERROR|runtime error:|ERROR: libFuzzer|^SUMMARY' "$run/log" | cut -d: -f1 || true)
    if [ -n "$first" ]; then
      sed -n "${first},$((first + 29))p" "$run/log" >&2
      grep -m3 -E '^SUMMARY' "$run/log" >&2 || true
    else
      tail -n 30 "$run/log" >&2 || true
    fi
    echo "----" >&2
    if [ ${#findings[@]} -eq 0 ]; then
      echo "fuzz-$t: no reproducer was written; the whole log is $run/log" >&2
    fi
    for a in "${findings[@]}"; do
      echo "fuzz-$t: reproducer $a" >&2
      echo "  replay: $exe $a" >&2
    done
  fi
  if [ "$update" = 1 ]; then
    "$exe" -merge=1 "tests/fuzz/corpus/$t" "$run/corpus" >"$run/merge.log" 2>&1 ||
      die "merging into tests/fuzz/corpus/$t failed: see $run/merge.log" 3
    echo "fuzz-$t: tests/fuzz/corpus/$t now has $(count "tests/fuzz/corpus/$t") inputs"
  fi
done
exit "$found"
