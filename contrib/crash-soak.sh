#!/bin/sh
# Runs the crash-consistency harness (tests/integration/test_crash.py) for
# hours: every round draws new seeds, runs the chosen tests with them, and
# appends each failing seed, with the line that replays it, to a file.
# As root, with /dev/fuse; see --help.
set -u

usage() {
	cat <<EOF
Usage: contrib/crash-soak.sh [--hours H] [--rounds N] [OPTIONS]

Runs tests/integration/test_crash.py again and again with new random seeds
(BLOCKFS_CRASH_SEED) until H hours have passed or N rounds are done
(whichever comes first; at least one of the two must be given). Each
failing round's seed and replay line go to the failures file, its pytest
output to the log directory.

Options:
  --hours H          stop starting rounds after H hours (may be fractional)
  --rounds N         stop after N rounds
  --tests EXPR       pytest -k expression (default: test_crash, the kill
                     families; test_no_kill for the family without kills;
                     'test_crash or test_no_kill' for all)
  --kill-points K    kill points (or checks) per test and seed
                     (BLOCKFS_CRASH_ROUNDS, default 200)
  --failures FILE    where failing seeds go (default crash-soak-failures.txt)
  --logs DIR         pytest output of failing rounds (default crash-soak-logs)
  --bin PATH         blockfs binary (default: \$BLOCKFS_BIN, else
                     build-asan/fs/blockfs)
  --stop-on-failure  stop at the first failing round
  -h, --help         this text

Exit status: 0 every round passed, 1 some round failed (see the failures
file), 2 usage error or missing binary, 3 a round could not run (pytest
error, interrupted).
EOF
}

here=$(cd "$(dirname "$0")/.." && pwd)
hours='' rounds='' tests=test_crash kill_points=200
failures=crash-soak-failures.txt logs=crash-soak-logs
bin=${BLOCKFS_BIN:-$here/build-asan/fs/blockfs} stop=0

while [ $# -gt 0 ]; do
	case $1 in
	--hours) hours=${2:?--hours needs a value}; shift 2 ;;
	--rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
	--tests) tests=${2:?--tests needs a value}; shift 2 ;;
	--kill-points) kill_points=${2:?--kill-points needs a value}; shift 2 ;;
	--failures) failures=${2:?--failures needs a value}; shift 2 ;;
	--logs) logs=${2:?--logs needs a value}; shift 2 ;;
	--bin) bin=${2:?--bin needs a value}; shift 2 ;;
	--stop-on-failure) stop=1; shift ;;
	-h|--help) usage; exit 0 ;;
	*) echo "crash-soak: unknown argument: $1" >&2; usage >&2; exit 2 ;;
	esac
done

if [ -z "$hours" ] && [ -z "$rounds" ]; then
	echo "crash-soak: give --hours or --rounds (or both)" >&2
	exit 2
fi
case $rounds in ''|*[!0-9]*) [ -z "$rounds" ] || { echo "crash-soak: --rounds must be a number" >&2; exit 2; } ;; esac
case $kill_points in ''|*[!0-9]*) echo "crash-soak: --kill-points must be a number" >&2; exit 2 ;; esac
deadline=
if [ -n "$hours" ]; then
	secs=$(awk -v h="$hours" 'BEGIN { if (h !~ /^[0-9]*\.?[0-9]+$/) exit 1; printf "%d", h * 3600 }') ||
		{ echo "crash-soak: --hours must be a number" >&2; exit 2; }
	deadline=$(( $(date +%s) + secs ))
fi
if [ ! -x "$bin" ]; then
	echo "crash-soak: $bin is not an executable (build it, or give --bin)" >&2
	exit 2
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
mkdir -p "$logs" || exit 2
: >> "$failures" || exit 2

round=0 failed=0 status=0
while :; do
	[ -n "$rounds" ] && [ "$round" -ge "$rounds" ] && break
	[ -n "$deadline" ] && [ "$(date +%s)" -ge "$deadline" ] && break
	round=$((round + 1))
	seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
	log=$logs/round-$round-seed-$seed.log
	start=$(date +%s)
	(cd "$here" && BLOCKFS_BIN=$bin BLOCKFS_CRASH_SEED=$seed \
		BLOCKFS_CRASH_ROUNDS=$kill_points nice -n 10 \
		/usr/bin/python3 -m pytest tests/integration/test_crash.py \
		-k "$tests" -p no:cacheprovider) > "$log" 2>&1
	rc=$?
	took=$(( $(date +%s) - start ))
	case $rc in
	0)
		echo "crash-soak: round $round seed $seed passed (${took}s)"
		rm -f "$log" ;;
	1)
		failed=$((failed + 1))
		status=1
		echo "crash-soak: round $round seed $seed FAILED (${took}s), log $log"
		{
			echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) round $round seed $seed, log $log"
			grep '^replay: ' "$log" | sort -u
		} >> "$failures"
		[ "$stop" = 1 ] && break ;;
	*)
		echo "crash-soak: round $round seed $seed: pytest exited $rc (${took}s), log $log" >&2
		status=3
		break ;;
	esac
done
echo "crash-soak: $round rounds, $failed failed; failing seeds in $failures"
exit $status
