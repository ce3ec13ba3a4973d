#!/usr/bin/env bash
# Builds and installs blockfs, creates a local cluster and mounts it, then says
# how to use it and how to stop it. Run as root on Debian 12:
#
#   contrib/demo.sh [MOUNTPOINT]        # default /mnt/blockfs
#
# Knobs (environment):
#   BLOCKFS_DEMO_DIR    where the cluster lives (default /var/tmp/blockfs-demo)
#   BLOCKFS_DEMO_NODES  nodes in the cluster (default 4, replicas:3)
#
# Running it again reuses the cluster and, if it is mounted, the mount.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
mnt=${1:-/mnt/blockfs}
demo=${BLOCKFS_DEMO_DIR:-/var/tmp/blockfs-demo}
nodes=${BLOCKFS_DEMO_NODES:-4}

die() {
  echo "demo: $*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || die "run as root: it installs packages and mounts"

echo "demo: installing dependencies"
"$top/contrib/install-deps.sh"

echo "demo: building and installing (build/)"
cd "$top"
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
meson install -C build --quiet
blockfs=$(command -v blockfs) || die "blockfs is not on PATH after meson install"

if [ ! -f "$demo/cluster.conf" ]; then
  echo "demo: creating a $nodes-node cluster in $demo"
  mkdir -p "$(dirname "$demo")"
  "$blockfs" cluster create "$demo" --nodes "$nodes"
fi
node="$demo/node1"

# Nodes 2..N only store and serve blocks; node1 is the writer that mounts.
for ((i = 2; i <= nodes; i++)); do
  "$blockfs" serve --help >/dev/null 2>&1 ||
    die "this blockfs cannot run storage nodes yet: use BLOCKFS_DEMO_NODES=1"
  pidfile="$demo/node$i/blockfs.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    continue
  fi
  nohup "$blockfs" serve "$demo/node$i" >>"$demo/node$i/blockfs.log" 2>&1 </dev/null &
done

if grep -qs " $mnt fuse.blockfs " /proc/mounts; then
  echo "demo: $mnt is already mounted"
else
  mkdir -p "$mnt"
  mount -t blockfs "$node" "$mnt"
fi

cat <<EOF

blockfs is mounted at $mnt (node $node of a $nodes-node cluster on
127.0.0.1; nodes 2..$nodes run 'blockfs serve'). Every block written is
stored on its placement (see 'redundancy' in $demo/cluster.conf); fsync
returns once it is there.

Use it like any directory:
  cp -a /usr/include $mnt/
  ls -l $mnt; df -h $mnt
  blockfs status $node          # blocks, dedup ratio, uploads, every node
  blockfs status $node --json

Daemon log: $node/blockfs.log

Stop it (the mount uploads what is left first):
  umount $mnt
  for p in $demo/node*/blockfs.pid; do kill \$(cat \$p); done
Mount it again (the data is kept):
  mount -t blockfs $node $mnt
Or from /etc/fstab:
  $node  $mnt  blockfs  defaults,_netdev,nofail  0  0
Remove everything: stop it as above, then
  rm -rf $demo
EOF
