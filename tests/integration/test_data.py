"""Data integrity at volume: large random files, random overwrites against a
reference, persistence, kill -9 after fsync, dedup and space reclaim."""

import os
import random
import subprocess
import sys
import time

import pytest

import util
from util import MiB

BIG_MB = util.env_int('BLOCKFS_TEST_BIG_MB', 1024)


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def test_large_random_files(mount, big_files):
    """cp -a of >= 1 GiB of random files, verified by sha256 with cold
    caches and after a remount."""
    src = os.path.dirname(big_files[0])
    want = {os.path.basename(f): util.sha256_file(f) for f in big_files}
    assert sum(os.path.getsize(f) for f in big_files) >= BIG_MB * MiB
    dst = os.path.join(mount.mnt, 'big')
    util.run(['cp', '-a', src, dst], timeout=1800)
    for step in ('cold cache', 'remount'):
        if step == 'remount':
            mount.remount()
        else:
            util.drop_caches(mount.mnt)
        got = {n: util.sha256_file(os.path.join(dst, n)) for n in want}
        assert got == want, f'sha256 mismatch after {step}'
    util.assert_same_tree(src, dst)


def test_random_overwrites(mount):
    """Hundreds of pwrite's of random sizes at random offsets of a large
    file, checked against an in-memory reference after fsync, with cold
    caches and after a remount; overwritten data is reclaimed."""
    size = util.env_int('BLOCKFS_TEST_OVERWRITE_MB', 64) * MiB
    nwrites = util.env_int('BLOCKFS_TEST_OVERWRITES', 500)
    rng = random.Random(2024)
    ref = bytearray(rng.randbytes(size))
    path = os.path.join(mount.mnt, 'big')
    with open(path, 'wb') as f:
        f.write(ref)
    fd = os.open(path, os.O_RDWR)
    try:
        for i in range(nwrites):
            kind = rng.random()
            if kind < 0.3:
                n = rng.randint(1, 64)
            elif kind < 0.7:
                n = rng.randint(1, 64 * 1024)
            elif kind < 0.95:
                n = rng.randint(64 * 1024, 1 * MiB)
            else:
                n = rng.randint(1 * MiB, 4 * MiB)
            # Mostly inside the file, sometimes extending it.
            off = rng.randrange(len(ref) + (MiB if rng.random() < 0.03 else 0))
            data = rng.randbytes(n)
            assert os.pwrite(fd, data, off) == n
            if off > len(ref):
                ref.extend(bytes(off - len(ref)))
            ref[off:off + n] = data
            if i % 50 == 49:
                # Read back a random range that may straddle a buffered write.
                roff = rng.randrange(len(ref))
                rn = rng.randint(1, 2 * MiB)
                assert os.pread(fd, rn, roff) == bytes(ref[roff:roff + rn]), \
                    f'read-back mismatch after write {i}'
            if i == nwrites // 2:
                os.fsync(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    ref = bytes(ref)
    assert os.path.getsize(path) == len(ref)
    assert read(path) == ref, 'mismatch after fsync'
    util.drop_caches(mount.mnt)
    assert read(path) == ref, 'mismatch with cold caches'
    mount.remount()
    assert read(path) == ref, 'mismatch after remount'
    st = util.status(mount.node_dir)
    assert st['stored_bytes'] <= 1.5 * len(ref), \
        f'overwritten data not reclaimed: {st} for a {len(ref)}-byte file'


def test_persistence(make_mount, node_dir, mnt, small_tree):
    m = make_mount(node_dir, mnt)
    dst = os.path.join(mnt, 'tree')
    util.run(['cp', '-a', small_tree, dst], timeout=600)
    m.stop()
    st1 = util.status(node_dir)
    assert st1['mounted'] is False
    m.start()
    util.assert_same_tree(small_tree, dst)
    m.remount()
    util.assert_same_tree(small_tree, dst)
    m.stop()
    st2 = util.status(node_dir)
    # Only reads happened (atime may have moved): the data is unchanged.
    assert st2['logical_bytes'] == st1['logical_bytes'], (st1, st2)
    assert abs(st2['stored_bytes'] - st1['stored_bytes']) <= MiB, (st1, st2)


def walk_and_read(root):
    """Reads every file under ROOT; returns the paths that gave EIO."""
    bad = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            try:
                with open(path, 'rb') as f:
                    while f.read(4 * MiB):
                        pass
            except OSError as exc:
                bad.append(f'{path}: {exc}')
    return bad


def test_kill9_after_fsync(make_mount, node_dir, mnt):
    m = make_mount(node_dir, mnt)
    a = os.urandom(20 * MiB + 5)
    os.mkdir(os.path.join(mnt, 'd'))
    fd = os.open(os.path.join(mnt, 'd', 'a'), os.O_WRONLY | os.O_CREAT, 0o640)
    os.write(fd, a)
    os.fsync(fd)
    os.close(fd)
    dfd = os.open(os.path.join(mnt, 'd'), os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    # Appends in small pieces, fdatasync'ed.
    fd = os.open(os.path.join(mnt, 'log'), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    lines = b''.join(b'line %06d\n' % i for i in range(20000))
    for i in range(0, len(lines), 1000):
        os.write(fd, lines[i:i + 1000])
    os.fdatasync(fd)
    os.close(fd)
    # Not fsynced: may be lost (read as zeros, as after a power cut on a
    # local filesystem), must never read as other bytes or as EIO.
    unsynced = os.urandom(30 * MiB)
    with open(os.path.join(mnt, 'unsynced'), 'wb') as f:
        f.write(unsynced)
    m.kill()
    assert not util.is_mounted(mnt)
    m.start()
    assert read(os.path.join(mnt, 'd', 'a')) == a
    assert read(os.path.join(mnt, 'log')) == lines
    assert walk_and_read(mnt) == []
    got = read(os.path.join(mnt, 'unsynced'))
    assert len(got) <= len(unsynced)
    zero = bytes(4096)
    for off in range(0, len(got), 4096):
        page = got[off:off + 4096]
        src = unsynced[off:off + len(page)]
        if page in (src, zero[:len(page)]):
            continue
        # Lost chunks read as zeros, and chunk boundaries are content
        # defined, not page aligned: a page may hold the end of one chunk
        # and the start of the next (chunks are >= 64 KiB, so at most one
        # boundary falls in a page). Every byte must still be its own or 0.
        lost = [g != u for g, u in zip(page, src)]
        assert all(g == 0 for g, l in zip(page, lost) if l), \
            f'unsynced file reads wrong bytes at {off} after kill -9'
        switches = sum(1 for i in range(1, len(page))
                       if (page[i] == 0 and src[i] != 0) !=
                       (page[i - 1] == 0 and src[i - 1] != 0) and
                       src[i] != 0 and src[i - 1] != 0)
        assert switches <= 1, \
            f'unsynced file mixes data and zeros within a chunk at {off}'
    # The filesystem goes on working and unmounts cleanly (at teardown).
    with open(os.path.join(mnt, 'after'), 'wb') as f:
        f.write(b'after the crash')
    m.remount()
    assert read(os.path.join(mnt, 'd', 'a')) == a
    assert read(os.path.join(mnt, 'after')) == b'after the crash'


WRITER = r'''
import os, sys
root, done = sys.argv[1], sys.argv[2]
i = 0
with open(done, 'a') as log:
    while True:
        name = os.path.join(root, 'f%05d' % i)
        data = os.urandom(((i * 7919) % 300000) + 1)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        if i % 3 == 0 and i:
            os.unlink(os.path.join(root, 'f%05d' % (i - 1)))
            log.write('unlinked f%05d\n' % (i - 1))
        log.write('%s %s\n' % (os.path.basename(name), data.hex()[:64]))
        log.flush()
        i += 1
'''


def test_kill9_during_writes(make_mount, node_dir, mnt, tmp_path):
    """kill -9 while a writer creates, fsyncs and unlinks files: after a
    remount every file reported fsynced is intact, nothing reads as EIO."""
    m = make_mount(node_dir, mnt)
    done = tmp_path / 'done.log'
    writer = subprocess.Popen([sys.executable, '-c', WRITER, mnt, str(done)],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        assert writer.poll() is None, 'writer died before the crash'
        m.kill()
    finally:
        writer.kill()
        writer.wait(timeout=60)
    m.start()
    expect = {}
    for line in done.read_text().splitlines():
        if line.startswith('unlinked '):
            expect.pop(line.split()[1], None)
        elif line.strip():
            name, prefix = line.split()
            expect[name] = prefix
    assert len(expect) > 5, 'the writer fsynced almost nothing in 3 s'
    for name, prefix in expect.items():
        data = read(os.path.join(mnt, name))
        assert data.hex()[:64] == prefix, f'{name} lost or corrupt'
    assert walk_and_read(mnt) == []


@pytest.mark.slow
def test_dedup_and_reclaim(plain_build, make_mount, node_dir, mnt, big_file):
    """The same large file copied in ten times is stored about once; deleting
    the copies gives the space back. All figures are taken first, then
    checked, so that a failure shows the whole picture. On the build
    without sanitizers when BLOCKFS_RSS_BIN names one (10 GiB written:
    146 s under ASan)."""
    copies = util.env_int('BLOCKFS_TEST_DEDUP_COPIES', 10)
    size = os.path.getsize(big_file)
    fig = {}
    m = make_mount(node_dir, mnt)
    fig['empty'] = util.status(node_dir)
    util.run(['cp', big_file, os.path.join(mnt, 'copy0')], timeout=1800)
    util.syncfs(mnt)
    fig['one copy'] = util.status(node_dir)
    for i in range(1, copies):
        util.run(['cp', big_file, os.path.join(mnt, f'copy{i}')], timeout=1800)
    util.syncfs(mnt)
    fig[f'{copies} copies'] = util.status(node_dir)
    util.drop_caches(mnt)
    want = util.sha256_file(big_file)
    assert util.sha256_file(os.path.join(mnt, f'copy{copies - 1}')) == want
    m.stop()
    fig['unmounted'] = util.status(node_dir)
    m.start()
    for i in range(copies):
        os.unlink(os.path.join(mnt, f'copy{i}'))
    util.syncfs(mnt)
    fig['deleted'] = util.status(node_dir)
    m.stop()
    fig['deleted, unmounted'] = util.status(node_dir)

    table = '\n'.join(
        f'{k:>20}: stored {v["stored_bytes"]:>13,} logical '
        f'{v["logical_bytes"]:>14,} disk {v["disk_bytes"]:>14,} '
        f'blocks {v["blocks"]:>7} ratio {v["dedup_ratio"]} '
        f'dag {v["dag_bytes"]:,}'
        for k, v in fig.items())
    table = f'file size {size:,}\n{table}'
    base = fig['empty']['stored_bytes']
    one = fig['one copy']['stored_bytes'] - base
    many = fig[f'{copies} copies']
    assert 0.99 * size <= one <= 1.05 * size, \
        f'one copy of random data is not stored as its size after syncfs\n{table}'
    assert many['stored_bytes'] - base <= 1.05 * size, \
        f'{copies} identical copies grew the store by more than 5%\n{table}'
    assert many['logical_bytes'] >= copies * size, table
    assert many['dedup_ratio'] >= 0.9 * copies, table
    assert fig['unmounted']['disk_bytes'] >= 0.9 * size, table
    # What stays is the snapshots' metadata: every commit's directories
    # and file nodes (dag_bytes), kept until a GC drops old snapshots.
    gone = fig['deleted']
    assert gone['stored_bytes'] - gone['dag_bytes'] <= \
        base + 0.01 * size + MiB, \
        f'deleted data still counted as stored\n{table}'
    assert gone['dag_bytes'] <= 0.005 * copies * size, \
        f'the commits of {copies} copies took more than 0.5% of their ' \
        f'bytes\n{table}'
    assert gone['logical_bytes'] <= \
        fig['empty']['logical_bytes'] + 0.01 * size + MiB, table
    assert fig['deleted, unmounted']['disk_bytes'] <= \
        fig['unmounted']['disk_bytes'] - 0.5 * size, \
        f'disk space not reclaimed after delete and unmount\n{table}'


def test_shifted_content_dedups(mount):
    """Content-defined chunking: a copy with bytes inserted at the start
    shares almost all its chunks with the original."""
    size = 64 * MiB
    data = random.Random(7).randbytes(size)
    with open(os.path.join(mount.mnt, 'orig'), 'wb') as f:
        f.write(data)
    util.syncfs(mount.mnt)
    s1 = util.status(mount.node_dir)
    with open(os.path.join(mount.mnt, 'shifted'), 'wb') as f:
        f.write(b'inserted bytes' * 7)
        f.write(data)
    util.syncfs(mount.mnt)
    s2 = util.status(mount.node_dir)
    grown = s2['stored_bytes'] - s1['stored_bytes']
    assert grown <= 0.1 * size, f'a shifted copy added {grown} bytes'
    assert read(os.path.join(mount.mnt, 'shifted'))[98:] == data


def test_concurrent_writers(mount):
    """Several threads write, overwrite and read back files at once (the
    daemon is multi-threaded); everything matches after a remount."""
    import threading
    nthreads, size = 6, 12 * MiB
    want = {}
    errors = []

    def worker(t):
        try:
            rng = random.Random(t)
            for k in range(3):
                path = os.path.join(mount.mnt, f't{t}', f'f{k}')
                os.makedirs(os.path.dirname(path), exist_ok=True)
                data = bytearray(rng.randbytes(size))
                with open(path, 'wb') as f:
                    pos = 0
                    while pos < size:
                        n = rng.randint(1, 300_000)
                        f.write(data[pos:pos + n])
                        pos += n
                with open(path, 'r+b') as f:
                    for _ in range(20):
                        off = rng.randrange(size)
                        patch = rng.randbytes(rng.randint(1, 100_000))
                        f.seek(off)
                        f.write(patch)
                        data[off:off + len(patch)] = patch
                data = bytes(data)
                if read(path) != data:
                    errors.append(f'{path} differs right after writing')
                want[path] = data
        except Exception as exc:  # reported below
            errors.append(f'thread {t}: {exc!r}')

    threads = [threading.Thread(target=worker, args=(t,))
               for t in range(nthreads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
    assert not any(th.is_alive() for th in threads), 'writers hung'
    assert errors == []
    mount.remount()
    for path, data in want.items():
        assert read(path) == data, f'{path} differs after remount'


def test_write_while_renamed(mount):
    """A file renamed (and its directory renamed) while open for writing
    keeps everything written before and after, under its new name."""
    os.mkdir(os.path.join(mount.mnt, 'a'))
    f = open(os.path.join(mount.mnt, 'a', 'f'), 'wb')
    try:
        first = os.urandom(3 * MiB)
        f.write(first)
        os.rename(os.path.join(mount.mnt, 'a', 'f'),
                  os.path.join(mount.mnt, 'a', 'g'))
        os.rename(os.path.join(mount.mnt, 'a'), os.path.join(mount.mnt, 'b'))
        second = os.urandom(3 * MiB)
        f.write(second)
        f.flush()
        os.fsync(f.fileno())
    finally:
        f.close()
    mount.remount()
    assert os.listdir(mount.mnt) == ['b']
    assert read(os.path.join(mount.mnt, 'b', 'g')) == first + second
