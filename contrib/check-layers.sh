#!/usr/bin/env bash
# Checks that no C file includes a header of a layer above its own, so that
# the layout the README describes stays true:
#   blocks/base  <- blocks (cid, cdc) <- blocks/db <- blocks/store
#                <- blocks/dag <- ec <- net/wire <- net/server, net/client
#                <- net/cluster <- fs (the core) <- fs/commit <- fs/cmd
# A file may include its own part and any part below it; net/server and
# net/client do not include each other; tests/ may include anything.
# Also checks that no meson library below fs/ names libfuse.
# Prints every offence and exits 1, or exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-} in
-h | --help)
	sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
	echo "Usage: contrib/check-layers.sh"
	exit 0
	;;
'') ;;
*)
	echo "check-layers: no arguments expected (see --help)" >&2
	exit 2
	;;
esac

# The part a path belongs to: its folder, or "blocks" for blocks/*.[ch].
part_of() {
	case $1 in
	blocks/base/*) echo blocks/base ;;
	blocks/db/*) echo blocks/db ;;
	blocks/store/*) echo blocks/store ;;
	blocks/dag/*) echo blocks/dag ;;
	blocks/*) echo blocks ;;
	ec/*) echo ec ;;
	net/wire/*) echo net/wire ;;
	net/server/*) echo net/server ;;
	net/client/*) echo net/client ;;
	net/cluster/*) echo net/cluster ;;
	net/*) echo net ;;
	fs/cmd/*) echo fs/cmd ;;
	fs/commit/*) echo fs/commit ;;
	fs/*) echo fs ;;
	*) echo other ;;
	esac
}

# What each part may include besides itself.
allowed() {
	case $1 in
	blocks/base) echo "" ;;
	blocks) echo "blocks/base" ;;
	blocks/db) echo "blocks/base blocks" ;;
	blocks/store) echo "blocks/base blocks blocks/db" ;;
	blocks/dag) echo "blocks/base blocks blocks/db blocks/store" ;;
	ec) echo "blocks/base blocks blocks/dag" ;;
	net/wire) echo "blocks/base blocks blocks/dag ec" ;;
	net/server | net/client)
		echo "blocks/base blocks blocks/db blocks/store blocks/dag ec net/wire" ;;
	net/cluster)
		echo "blocks/base blocks blocks/db blocks/store blocks/dag ec net/wire net/server net/client" ;;
	net) echo "blocks/base blocks blocks/dag ec net/wire net/server net/client net/cluster" ;;
	fs) echo "blocks/base blocks blocks/db blocks/store blocks/dag ec net/wire net/server net/client net/cluster" ;;
	fs/commit) echo "blocks/base blocks blocks/db blocks/store blocks/dag ec net/wire net/server net/client net/cluster fs" ;;
	fs/cmd) echo "blocks/base blocks blocks/db blocks/store blocks/dag ec net/wire net/server net/client net/cluster fs fs/commit" ;;
	*) echo ANY ;;
	esac
}

bad=0
while IFS= read -r file; do
	from=$(part_of "$file")
	ok=$(allowed "$from")
	[ "$ok" = ANY ] && continue
	while IFS=: read -r line inc; do
		to=$(part_of "$inc")
		[ "$to" = other ] && continue
		[ "$to" = "$from" ] && continue
		case " $ok " in *" $to "*) continue ;; esac
		echo "$file:$line: includes $inc ($to is not below $from)"
		bad=1
	done < <(awk '/^[ \t]*#[ \t]*include[ \t]*"/ {
		split($0, q, "\""); print FNR ":" q[2] }' "$file")
done < <(git ls-files '*.c' '*.h' 2>/dev/null || find blocks ec net fs -name '*.[ch]')

# The libraries below fs/ build without libfuse: storage nodes and the
# engine's repair run where no FUSE is.
for m in blocks/meson.build ec/meson.build net/meson.build; do
	if grep -nE 'fuse_dep|fuse3' "$m"; then
		echo "$m: a library below fs/ depends on libfuse"
		bad=1
	fi
done
exit $bad
