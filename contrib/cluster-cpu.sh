#!/usr/bin/env bash
# contrib/cluster-cpu.sh: what a cluster write and a cold read cost in CPU.
#
# Starts a local cluster (nodes 2..N as `blockfs serve`, node1 mounted with
# cache_size=1), copies a file in (cp + fsync), waits until every block is
# uploaded and evicted, drops the kernel caches and reads the file back.
# For each phase it prints the wall-clock MB/s and the CPU seconds summed
# over the mount and every serve process (utime + stime from /proc/PID/stat).
# CPU seconds are steady on a shared machine where MB/s are not; the
# figures quoted in the issue notes come from this script.
#
# Needs root and /dev/fuse. Everything is on 127.0.0.1 and is stopped at the
# end, also on failure.
set -euo pipefail

usage() {
	cat <<EOF
usage: contrib/cluster-cpu.sh [--bin BLOCKFS] [--nodes N] [--redundancy POLICY]
                              [--size-mb M] [--dir DIR] [--base-port PORT]
                              [--detail]
  --bin         blockfs binary (default ./build/fs/blockfs)
  --nodes       nodes in the cluster (default 4)
  --redundancy  replicas:N or ec:K+M (default replicas:3)
  --size-mb     size of the random file (default 1024)
  --dir         scratch directory on a disk (default /var/tmp)
  --base-port   first TCP port on 127.0.0.1 (default 17400)
  --detail      also print each process's CPU seconds per phase
exit status: 0 measured, 1 a step failed, 2 usage.
EOF
}

BIN=./build/fs/blockfs NODES=4 RED=replicas:3 SIZE_MB=1024 DIR=/var/tmp PORT=17400
DETAIL=0
while [ $# -gt 0 ]; do
	case "$1" in
	--bin) BIN=$2; shift 2 ;;
	--nodes) NODES=$2; shift 2 ;;
	--redundancy) RED=$2; shift 2 ;;
	--size-mb) SIZE_MB=$2; shift 2 ;;
	--dir) DIR=$2; shift 2 ;;
	--base-port) PORT=$2; shift 2 ;;
	--detail) DETAIL=1; shift ;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "cluster-cpu: needs root" >&2; exit 2; }
[ -x "$BIN" ] || { echo "cluster-cpu: $BIN is not executable" >&2; exit 2; }
BIN=$(readlink -f "$BIN")

W=$(mktemp -d "$DIR/cluster-cpu.XXXXXX")
SRC=$(mktemp /dev/shm/cluster-cpu.XXXXXX)
MNT=$W/mnt
SERVERS=()
cleanup() {
	mountpoint -q "$MNT" && { fusermount3 -u "$MNT" || umount -l "$MNT"; }
	for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${SERVERS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$p" 2>/dev/null || true
	done
	rm -rf "$W" "$SRC"
}
trap cleanup EXIT

proc_ticks() { # each process's utime+stime in ticks, one per line
	local p f
	for p in "$MOUNT_PID" "${SERVERS[@]}"; do
		read -ra f <"/proc/$p/stat" || { echo 0; continue; }
		echo $((f[13] + f[14]))
	done
}

sum() { awk '{ t += $1 } END { print t + 0 }' <<<"$1"; }

detail() { # ticks-before ticks-after (newline-separated lists)
	[ "$DETAIL" = 1 ] || return 0
	paste <(echo "$1") <(echo "$2") | awk -v hz="$(getconf CLK_TCK)" '
		{ printf "      %-7s %6.2f CPU-s\n", NR == 1 ? "mount" : "node" NR,
			 ($2 - $1) / hz }'
}

report() { # phase t0 t1 ticks0 ticks1
	awk -v what="$1" -v mb="$SIZE_MB" -v a="$2" -v b="$3" -v c="$4" -v d="$5" \
	    -v hz="$(getconf CLK_TCK)" 'BEGIN {
		printf "%-5s %7.1f MB/s  %6.2f CPU-s  (%d MiB, %s)\n", what,
		       mb * 1048576 / 1e6 / (b - a), (d - c) / hz, mb, ENVIRON["RED"] }'
}
export RED

head -c "$((SIZE_MB << 20))" /dev/urandom >"$SRC"
mkdir -p "$MNT"
"$BIN" cluster create "$W/c" --nodes "$NODES" --redundancy "$RED" \
	--base-port "$PORT" >/dev/null
for i in $(seq 2 "$NODES"); do
	setsid "$BIN" serve "$W/c/node$i" >"$W/serve$i.log" 2>&1 </dev/null &
	SERVERS+=($!)
done
for i in $(seq 2 "$NODES"); do
	for _ in $(seq 100); do [ -e "$W/c/node$i/blockfs.pid" ] && break; sleep 0.1; done
done
"$BIN" mount "$W/c/node1" "$MNT" -o cache_size=1
MOUNT_PID=$(awk '{print $1}' "$W/c/node1/blockfs.pid")

p0=$(proc_ticks); t0=$(date +%s.%N)
cp "$SRC" "$MNT/f"
sync "$MNT/f"
t1=$(date +%s.%N); p1=$(proc_ticks)
report write "$t0" "$t1" "$(sum "$p0")" "$(sum "$p1")"
detail "$p0" "$p1"

# Every block uploaded and evicted: reads come from the nodes.
for _ in $(seq 120); do
	"$BIN" status "$W/c/node1" --json >"$W/st.json" 2>/dev/null || true
	/usr/bin/python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
sys.exit(0 if s["pending_uploads"] == 0 and s["local_bytes"] < 4 << 20 else 1)' \
		"$W/st.json" 2>/dev/null && break
	sleep 1
done
sync
echo 3 >/proc/sys/vm/drop_caches
p0=$(proc_ticks); t0=$(date +%s.%N)
dd if="$MNT/f" of=/dev/null bs=1M status=none
t1=$(date +%s.%N); p1=$(proc_ticks)
report read "$t0" "$t1" "$(sum "$p0")" "$(sum "$p1")"
detail "$p0" "$p1"
cmp -s "$SRC" "$MNT/f" || { echo "cluster-cpu: the file reads back wrong" >&2; exit 1; }
