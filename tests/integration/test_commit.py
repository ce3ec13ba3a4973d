"""Commits (issue 23): 'blockfs commit', the snapshot's root CID against
the reference IPFS importer, unchanged subtrees keeping their CIDs, and
the writer lease between two mounts of one filesystem."""

import hashlib
import json
import os
import random

import pytest

import util
from interop import interop_tools  # noqa: F401 (fixture)
from util import blockfs

FIXED = 'chunker=fixed,chunk_size=256K'
CHUNK = 256 << 10


def commit(mnt):
    """'blockfs commit --json MNT': the head it published, as a dict."""
    res = blockfs('commit', '--json', str(mnt))
    return json.loads(res.stdout)


def set_times(path, rng):
    """A varied mtime with nanoseconds (some zero), as os.utime sets it."""
    sec = rng.randrange(0, 2_000_000_000)
    ns = rng.choice([0, rng.randrange(1, 1_000_000_000)])
    t = sec * 1_000_000_000 + ns
    os.utime(path, ns=(t, t), follow_symlinks=False)


def make_tree(root, rng, shard_files):
    """Several hundred files and directories: sizes from empty to beyond
    174 chunks, modes and mtimes varied, a symlink, a FIFO (which UnixFS
    cannot hold: the importer skips it, and so does the snapshot's UnixFS
    tree), and one directory of SHARD_FILES entries, large enough to
    shard into a HAMT."""
    dirs = [root]
    for i in range(40):
        d = os.path.join(rng.choice(dirs), f'dir{i:02d}')
        os.mkdir(d)
        dirs.append(d)
    sizes = [0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17,
             174 * CHUNK, 174 * CHUNK + 1]
    files = []
    for i in range(300):
        size = sizes[i] if i < len(sizes) else rng.choice(
            [0, 5, 4096, 70_000, CHUNK + 5, 2 * CHUNK])
        p = os.path.join(rng.choice(dirs), f'file{i:03d}.bin')
        with open(p, 'wb') as f:
            f.write(rng.randbytes(size))
        os.chmod(p, rng.choice([0o644, 0o600, 0o755, 0o640, 0o444, 0o4755]))
        files.append(p)
    os.symlink('file000.bin', os.path.join(root, 'link'))
    os.mkfifo(os.path.join(root, 'fifo'))
    big = os.path.join(root, 'shard')
    os.mkdir(big)
    for i in range(shard_files):
        with open(os.path.join(big, f'entry-{i:06d}'), 'wb') as f:
            f.write(i.to_bytes(4, 'little'))
    for d in dirs[1:]:
        os.chmod(d, rng.choice([0o755, 0o700, 0o750]))
    for p in files + [os.path.join(root, 'link')]:
        set_times(p, rng)
    # Directories last (their entries changed their mtimes), deepest
    # first, the root too.
    for d in sorted(dirs + [big], key=len, reverse=True):
        set_times(d, rng)


def test_commit_root_is_the_importers(make_mount, tmp_path, interop_tools):
    """Interop (a): with the fixed 256 KiB chunker, the root CID of a
    snapshot equals the one ipfs-unixfs-importer computes for the same
    entries (CIDv1, raw leaves, balanced, 174 links, HAMT)."""
    rng = random.Random(2323)
    src = tmp_path / 'src'
    src.mkdir()
    make_tree(str(src), rng, shard_files=6000)
    node = util.create_cluster(tmp_path / 'c')
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    make_mount(node, mnt, opts=FIXED + ',commit_interval=0')
    util.run(['rsync', '-a', f'{src}/', f'{mnt}/'])
    head = commit(mnt)
    want = interop_tools.importer_root_cid(str(src))
    assert head['root'] == want, (head, want)
    assert head['seq'] >= 1


def test_unchanged_subtrees_keep_their_cids(make_mount, tmp_path):
    """A commit after one file changed deep in a tree encodes the file and
    the directories above it, not the tree: the blocks it writes do not
    grow with the number of files."""
    node = util.create_cluster(tmp_path / 'c')
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    make_mount(node, mnt, opts='commit_interval=0')
    for top in range(20):
        d = mnt / f'd{top}' / 'sub'
        d.mkdir(parents=True)
        for i in range(100):
            (d / f'f{i}').write_bytes(b'x' * i)
    first = commit(mnt)
    assert first['inodes'] >= 2000, first
    (mnt / 'd7' / 'sub' / 'f5').write_bytes(b'changed')
    second = commit(mnt)
    assert second['seq'] == first['seq'] + 1
    assert second['root'] != first['root']
    # the file, sub, d7 and the root: a few blocks each
    assert second['inodes'] <= 4, second
    assert second['blocks'] <= 12, second
    # nothing changed: no new head
    third = commit(mnt)
    assert third['seq'] == second['seq'] and third['blocks'] == 0, third


def test_commit_cli_errors(make_mount, tmp_path):
    res = blockfs('commit', check=False)
    assert res.returncode == 2 and 'MOUNTPOINT' in res.stderr
    res = blockfs('commit', str(tmp_path), check=False)
    assert res.returncode == 1 and 'not a blockfs mount' in res.stderr, \
        res.stderr
    node = util.create_cluster(tmp_path / 'c')
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    # a writer mounts first, so that the filesystem has a head
    m = make_mount(node, mnt)
    commit(mnt)
    m.stop()
    make_mount(node, mnt, opts='ro')
    res = blockfs('commit', str(mnt), check=False)
    assert res.returncode == 1 and 'read-only' in res.stderr, res.stderr


def test_second_writer_refused_while_the_lease_holds(cluster, make_mount,
                                                     tmp_path):
    """Two read-write mounts of one filesystem on two nodes: the second is
    refused, naming the lease and -o takeover, while the first holds it."""
    c = cluster(nodes=3, redundancy='replicas:2', opts='lease=600')
    with open(os.path.join(c.mnt, 'a'), 'wb') as f:
        f.write(b'a')
    commit(c.mnt)
    # node3 stops serving, so that it can mount (and serve) itself
    c.servers[3].kill()
    mnt2 = tmp_path / 'mnt-second'
    mnt2.mkdir()
    err = util.expect_mount_error(c.node_dir(3), mnt2)
    assert 'lease' in err and 'takeover' in err, err


def rsync_differences(src, dst):
    """What 'rsync -aHAXc --dry-run --itemize-changes' would change in DST
    to make it SRC: empty when the trees are the same (data, modes,
    owners, times, hard links, ACLs, xattrs)."""
    res = util.run(['rsync', '-aHAXc', '--dry-run', '--itemize-changes',
                    f'{src}/', f'{dst}/'])
    return [line for line in res.stdout.splitlines() if line.strip()]


def make_posix_tree(root, rng):
    """A tree of what UnixFS cannot hold: owners, a FIFO, a device node,
    hard links, xattrs, a sparse file, odd modes."""
    make_tree(root, rng, shard_files=50)
    d = os.path.join(root, 'posix')
    os.mkdir(d)
    with open(os.path.join(d, 'sparse'), 'wb') as f:
        f.seek(5 << 20)
        f.write(b'end')
        f.truncate(9 << 20)
    with open(os.path.join(d, 'linked'), 'wb') as f:
        f.write(b'one inode, two names')
    os.link(os.path.join(d, 'linked'), os.path.join(root, 'hardlink'))
    os.mkfifo(os.path.join(d, 'fifo2'))
    os.mknod(os.path.join(d, 'null'), 0o600 | 0o020000, os.makedev(1, 3))
    os.chown(os.path.join(d, 'linked'), 1234, 5678)
    os.setxattr(os.path.join(d, 'linked'), 'user.colour', b'blue')
    os.setxattr(d, 'user.dir', b'x' * 300)
    os.chmod(os.path.join(d, 'sparse'), 0o2751)


def test_recover_on_a_new_machine(cluster, tmp_path):
    """The mounting node's database is lost (its keys and the cluster file
    kept): the mount finds the latest head on the nodes, rebuilds the
    metadata from the DAG, and serves the same tree, byte for byte, with
    every attribute rsync -aHAX compares."""
    rng = random.Random(7)
    src = tmp_path / 'src'
    src.mkdir()
    make_posix_tree(str(src), rng)
    c = cluster(nodes=3, redundancy='replicas:2',
                opts='commit_interval=0')
    util.run(['rsync', '-aHAX', f'{src}/', f'{c.mnt}/'])
    head = commit(c.mnt)
    c.mount.stop()
    db = os.path.join(c.node_dir(1), 'db')
    util.run(['rm', '-rf', db])
    c.start_mount(opts='commit_interval=0')
    assert rsync_differences(src, c.mnt) == []
    # and it goes on from the head it recovered
    with open(os.path.join(c.mnt, 'after'), 'wb') as f:
        f.write(b'new')
    assert commit(c.mnt)['seq'] == head['seq'] + 1


def test_stale_metadata_needs_recover(cluster, tmp_path):
    """A node whose metadata is older than the cluster's head is refused,
    naming -o recover; with it, the mount serves the cluster's tree."""
    c = cluster(nodes=3, redundancy='replicas:2',
                opts='commit_interval=0')
    with open(os.path.join(c.mnt, 'a'), 'wb') as f:
        f.write(b'first')
    commit(c.mnt)
    c.mount.stop()
    saved = tmp_path / 'db-saved'
    util.run(['cp', '-a', os.path.join(c.node_dir(1), 'db'), str(saved)])
    c.start_mount(opts='commit_interval=0')
    with open(os.path.join(c.mnt, 'b'), 'wb') as f:
        f.write(b'second')
    commit(c.mnt)
    c.mount.stop()
    db = os.path.join(c.node_dir(1), 'db')
    util.run(['rm', '-rf', db])
    util.run(['cp', '-a', str(saved), db])
    err = util.expect_mount_error(c.node_dir(1), c.mnt,
                                  '-o', 'commit_interval=0')
    assert '-o recover' in err, err
    c.start_mount(opts='commit_interval=0,recover')
    assert sorted(os.listdir(c.mnt)) == ['a', 'b']
    with open(os.path.join(c.mnt, 'b'), 'rb') as f:
        assert f.read() == b'second'


def test_export_reads_in_the_ipfs_tools(cluster, interop_tools, tmp_path):
    """Interop (b) and (c): a CAR exported from a FastCDC-chunked tree of
    5,000 files, opened with @ipld/car and ipfs-unixfs-exporter, gives
    every file byte-identical at its path and every directory its names;
    with --attrs, every DAG-CBOR block blockfs wrote (the head, the
    attribute blocks and their parts) decodes with @ipld/dag-cbor and
    re-encodes to the same bytes."""
    rng = random.Random(11)
    src = tmp_path / 'src'
    src.mkdir()
    dirs = [str(src)]
    for i in range(30):
        d = os.path.join(rng.choice(dirs), f'd{i}')
        os.mkdir(d)
        dirs.append(d)
    for i in range(5000):
        size = rng.choice([0, 10, 3000, 70_000, 300_000, 1_500_000]) \
            if i % 50 == 0 else rng.randrange(0, 5000)
        p = os.path.join(rng.choice(dirs), f'f{i}')
        with open(p, 'wb') as f:
            f.write(rng.randbytes(size))
        os.chmod(p, rng.choice([0o644, 0o600, 0o755]))
    os.symlink('d0', os.path.join(src, 'link'))
    c = cluster(nodes=3, redundancy='replicas:2', opts='commit_interval=0')
    util.run(['rsync', '-a', f'{src}/', f'{c.mnt}/'], timeout=1800)
    head = commit(c.mnt)
    car = tmp_path / 'snap.car'
    blockfs('export', c.node_dir(1), '--car', str(car))
    out = interop_tools.car_check(str(car), str(src))
    assert out['files'] == 5000, out
    full = tmp_path / 'full.car'
    blockfs('export', c.node_dir(1), '--car', str(full), '--attrs',
            '--snapshot', str(head['seq']))
    res = interop_tools.dagcbor_roundtrip(str(full), min_blocks=31 + 1)
    assert res['checked'] >= 32, res


def test_takeover_after_the_lease_expires(cluster, tmp_path):
    """The writer dies (kill -9): while its lease holds, another node's
    read-write mount is refused; once it has expired, -o takeover makes
    that node the writer, on the dead writer's last head; the old writer,
    back, is refused in turn."""
    import time
    c = cluster(nodes=3, redundancy='replicas:2',
                opts='lease=12,commit_interval=0')
    with open(os.path.join(c.mnt, 'a'), 'wb') as f:
        f.write(b'by node1')
    first = commit(c.mnt)
    c.mount.kill()
    expiry = time.time() + 12.5
    c.servers[3].kill()  # node3 mounts (and serves) itself
    mnt3 = tmp_path / 'mnt3'
    mnt3.mkdir()
    err = util.expect_mount_error(c.node_dir(3), mnt3, '-o',
                                  'commit_interval=0,takeover')
    assert 'lease' in err, err
    util.wait_until(lambda: time.time() > expiry, 30,
                    'the dead writer\'s lease to expire')
    err = util.expect_mount_error(c.node_dir(3), mnt3, '-o',
                                  'commit_interval=0')
    assert '-o takeover' in err, err
    m3 = util.Mount(c.node_dir(3), str(mnt3), tmp_path / 'mount3.log',
                    opts='commit_interval=0,lease=30,takeover')
    m3.start()
    try:
        with open(os.path.join(mnt3, 'a'), 'rb') as f:
            assert f.read() == b'by node1'
        with open(os.path.join(mnt3, 'b'), 'wb') as f:
            f.write(b'by node3')
        head = commit(mnt3)
        assert head['seq'] == first['seq'] + 1, (first, head)
        # node1 comes back: refused, the lease is node3's now
        err = util.expect_mount_error(c.node_dir(1), c.mnt, '-o',
                                      'commit_interval=0')
        assert 'lease' in err, err
    finally:
        m3.stop()
    util.check_log(tmp_path / 'mount3.log')


def test_snapshot_mount_beside_the_live_one(cluster, make_mount, tmp_path):
    """-o snapshot=SEQ and =CID mount a head read-only beside the live
    mount: the tree as it was at that commit, byte for byte and with every
    attribute rsync -aHAX compares, while the live filesystem changes and
    commits on; writes to the snapshot fail with EROFS; a second mount of
    a snapshot reuses its rebuilt metadata."""
    rng = random.Random(23)
    src = tmp_path / 'src'
    src.mkdir()
    make_posix_tree(str(src), rng)
    c = cluster(nodes=3, redundancy='replicas:2', opts='commit_interval=0')
    util.run(['rsync', '-aHAX', f'{src}/', f'{c.mnt}/'])
    first = commit(c.mnt)
    # the live filesystem moves on
    util.run(['rm', '-rf', os.path.join(c.mnt, 'posix')])
    with open(os.path.join(c.mnt, 'hardlink'), 'r+b') as f:
        f.write(b'changed after the snapshot')
    with open(os.path.join(c.mnt, 'new'), 'wb') as f:
        f.write(b'only in the second commit')
    second = commit(c.mnt)
    assert second['seq'] > first['seq']

    snap = tmp_path / 'snap'
    m = make_mount(c.node_dir(1), snap, opts=f'snapshot={first["seq"]}')
    assert rsync_differences(src, snap) == []
    with pytest.raises(OSError) as e:
        open(os.path.join(snap, 'new'), 'wb')
    assert e.value.errno == 30, e.value  # EROFS
    # the live mount is untouched and goes on committing
    assert not os.path.exists(os.path.join(c.mnt, 'posix'))
    with open(os.path.join(c.mnt, 'later'), 'wb') as f:
        f.write(b'x')
    assert commit(c.mnt)['seq'] == second['seq'] + 1
    m.stop()
    rebuilt = os.path.join(c.node_dir(1), 'snapshots', str(first['seq']))
    assert os.path.isdir(rebuilt)

    # by the head's CID, and a second mount of the first snapshot reuses
    # its directory (no rebuild said in the log)
    heads = json.loads(blockfs('snapshot', 'list', '--json',
                               c.node_dir(1)).stdout)
    by_seq = {s['seq']: s for s in heads['snapshots']}
    snap2 = tmp_path / 'snap2'
    m2 = make_mount(c.node_dir(1), snap2,
                    opts=f'snapshot={by_seq[second["seq"]]["head"]}')
    assert sorted(os.listdir(snap2)) == \
        sorted(set(os.listdir(src)) - {'posix'} | {'new'})
    with open(os.path.join(snap2, 'new'), 'rb') as f:
        assert f.read() == b'only in the second commit'
    m2.stop()
    m.start()
    assert rsync_differences(src, snap) == []
    m.stop()
    with open(m.log) as f:
        log = f.read()
    assert log.count('rebuilding its metadata') == 1, log
    # a directory that names another head of that seq is never served
    with open(os.path.join(rebuilt, 'head')) as f:
        assert f.read().strip() == by_seq[first['seq']]['head']
    with open(os.path.join(rebuilt, 'head'), 'w') as f:
        f.write(by_seq[second['seq']]['head'] + '\n')
    err = util.expect_mount_error(c.node_dir(1), snap, '-o',
                                  f'snapshot={first["seq"]}')
    assert 'another head' in err, err


def test_snapshot_mount_errors(cluster, tmp_path):
    """-o snapshot with a seq no node has, a CID that is not a head, or
    with recover: refused with the reason."""
    c = cluster(nodes=3, redundancy='replicas:2', opts='commit_interval=0')
    with open(os.path.join(c.mnt, 'a'), 'wb') as f:
        f.write(b'a')
    head = commit(c.mnt)
    mnt = tmp_path / 'snap'
    mnt.mkdir()
    err = util.expect_mount_error(c.node_dir(1), mnt, '-o',
                                  f'snapshot={head["seq"] + 5}')
    assert f'no node has a valid head {head["seq"] + 5}' in err, err
    err = util.expect_mount_error(c.node_dir(1), mnt, '-o',
                                  f'snapshot={head["root"]}')
    assert 'head' in err, err
    err = util.expect_mount_error(c.node_dir(1), mnt, '-o',
                                  'snapshot=1,recover', code=2)
    assert 'read-only' in err, err
    err = util.expect_mount_error(c.node_dir(1), mnt, '-o', 'snapshot=0',
                                  code=2)
    assert 'seq' in err, err


def strip_filesystem(path):
    """A cluster file as before signed heads: without [filesystem]."""
    with open(path) as f:
        text = f.read()
    head, sep, rest = text.partition('\n[filesystem]\n')
    assert sep, f'{path} has no [filesystem] section'
    nxt = rest.find('\n[')
    with open(path, 'w') as f:
        f.write(head + '\n' + (rest[nxt + 1:] if nxt >= 0 else ''))


def test_cluster_upgrade_gives_an_old_cluster_heads(cluster, tmp_path):
    """A cluster made before signed heads (no [filesystem], no key) mounts
    without commits and says what to run; 'blockfs cluster upgrade DIR'
    adds the section to every copy and writes the key; after a restart
    the mount commits its whole tree, which a new machine recovers.
    A second upgrade, or one while a node runs, changes nothing."""
    c = cluster(nodes=3, redundancy='replicas:2', mount=False)
    for s in c.servers.values():
        s.stop()
    confs = [os.path.join(c.base, 'cluster.conf')] + \
        [os.path.join(c.node_dir(i), 'cluster.conf') for i in (1, 2, 3)]
    for path in confs:
        strip_filesystem(path)
    os.unlink(os.path.join(c.base, 'filesystem.key'))
    for s in c.servers.values():
        s.start()
    c.start_mount(opts='commit_interval=0')
    os.makedirs(os.path.join(c.mnt, 'd'))
    with open(os.path.join(c.mnt, 'd', 'old'), 'wb') as f:
        f.write(b'written before the upgrade')
    res = blockfs('commit', str(c.mnt), check=False)
    assert res.returncode != 0, res
    with open(c.mount.log) as f:
        assert "blockfs cluster upgrade DIR" in f.read()

    res = blockfs('cluster', 'upgrade', c.base, check=False)
    assert res.returncode == 1 and 'upgrade' in res.stderr, res
    assert not os.path.exists(os.path.join(c.base, 'filesystem.key'))
    c.mount.stop()
    for s in c.servers.values():
        s.stop()
    res = blockfs('cluster', 'upgrade', c.base)
    assert '3 node copies updated' in res.stdout, res.stdout
    key = os.path.join(c.base, 'filesystem.key')
    assert os.stat(key).st_mode & 0o777 == 0o600
    texts = set()
    for path in confs:
        with open(path) as f:
            texts.add(f.read())
    assert len(texts) == 1 and 'hash = blake2b-256' in texts.pop()
    res = blockfs('cluster', 'upgrade', c.base, check=False)
    assert res.returncode == 1 and 'nothing to do' in res.stderr, res

    for s in c.servers.values():
        s.start()
    c.start_mount(opts='commit_interval=0')
    head = commit(c.mnt)
    assert head['seq'] == 1 and head['inodes'] >= 3, head
    c.mount.stop()
    util.run(['rm', '-rf', os.path.join(c.node_dir(1), 'db')])
    c.start_mount(opts='commit_interval=0')
    with open(os.path.join(c.mnt, 'd', 'old'), 'rb') as f:
        assert f.read() == b'written before the upgrade'


def car_blocks(path):
    """(codec, multihash code, digest, data) of every block of a CAR v1."""
    def varint(b, i):
        n = shift = 0
        while True:
            n |= (b[i] & 0x7f) << shift
            shift += 7
            i += 1
            if not b[i - 1] & 0x80:
                return n, i
    with open(path, 'rb') as f:
        b = f.read()
    hlen, i = varint(b, 0)
    i += hlen
    out = []
    while i < len(b):
        slen, i = varint(b, i)
        end = i + slen
        version, j = varint(b, i)
        assert version == 1, 'a CIDv1'
        codec, j = varint(b, j)
        code, j = varint(b, j)
        dlen, j = varint(b, j)
        out.append((codec, code, b[j:j + dlen], b[j + dlen:end]))
        i = end
    return out


@pytest.mark.parametrize('name,code,hasher', [
    ('sha2-256', 0x12, lambda d: hashlib.sha256(d).digest()),
    ('blake2b-256', 0xb220,
     lambda d: hashlib.blake2b(d, digest_size=32).digest())])
def test_cluster_hash_names_every_cid(make_mount, tmp_path, name, code,
                                      hasher):
    """A filesystem made with 'cluster create --hash NAME' names every
    block with it: file data (chunks, a file cut by a punched hole) as
    well as the commit's nodes; each raw block hashes to its CID."""
    node = util.create_cluster(tmp_path / 'cluster', 1, ['--hash', name])
    m = make_mount(node, tmp_path / 'mnt', opts='commit_interval=0')
    data = random.Random(3).randbytes(3 << 20)
    path = os.path.join(m.mnt, 'f')
    with open(path, 'wb') as f:
        f.write(data)
    util.run(['fallocate', '--punch-hole', '--keep-size', '--offset',
              str(100_000), '--length', str(50_000), path])
    commit(m.mnt)
    car = tmp_path / 'snap.car'
    blockfs('export', node, '--car', str(car))
    blocks = car_blocks(car)
    raw = [b for b in blocks if b[0] == 0x55]
    assert len(raw) >= 10, len(raw)
    assert {b[1] for b in blocks} == {code}, {b[1] for b in blocks}
    for _, _, digest, block in raw:
        assert hasher(block) == digest


def test_reads_alone_make_no_commit(cluster):
    """Reading files changes their atimes, which are not committed: after
    the kernel forgets the inodes (drop_caches), the next commit has
    nothing to encode and publishes no head. (Before, an inode whose
    only change was its atime was marked changed when it left the inode
    table, so a recovered mount that was only read published a new head
    at unmount, and the old database fell behind the cluster.)"""
    c = cluster(nodes=3, redundancy='replicas:2', opts='commit_interval=0')
    for i in range(40):
        with open(os.path.join(c.mnt, f'f{i}'), 'wb') as f:
            f.write(b'x' * (i * 100))
    head = commit(c.mnt)
    util.drop_caches(c.mnt)
    for i in range(40):
        with open(os.path.join(c.mnt, f'f{i}'), 'rb') as f:
            f.read()
    util.drop_caches(c.mnt)
    again = commit(c.mnt)
    assert again['seq'] == head['seq'] and again['inodes'] == 0, \
        (head, again)
