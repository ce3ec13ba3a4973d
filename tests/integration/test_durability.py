"""Regression tests for ways blockfs lost or corrupted data (issue 11): the
open flags a local filesystem honours, checked past the page cache and
across a remount, and fsync'd bytes that must survive kill -9 whatever is
written after them."""

import base64
import errno
import os
import random

import pytest

import util
from util import MiB


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    fd = os.open(path, flags, 0o644)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def check_everywhere(m, path, want):
    """@path reads @want through the page cache, after dropping it, and
    after a remount."""
    assert read(path) == want
    util.drop_caches(m.mnt)
    assert read(path) == want
    m.remount()
    assert read(path) == want
    assert os.stat(path).st_size == len(want)


def open_flag_cases(m):
    d = m.mnt
    # Shell redirection over a longer file: O_WRONLY|O_CREAT|O_TRUNC.
    f = os.path.join(d, 'f')
    write(f, b'ORIGINAL-CONTENT-1234567890\n')
    write(f, b'new\n')
    big = os.path.join(d, 'big')
    write(big, random.Random(7).randbytes(1000000))
    small = random.Random(8).randbytes(1000)
    write(big, small)
    # O_RDONLY|O_TRUNC truncates on Linux, too.
    rt = os.path.join(d, 'rdonly-trunc')
    write(rt, b'x' * 100000)
    os.close(os.open(rt, os.O_RDONLY | os.O_TRUNC))
    # O_APPEND after the file was truncated and rewritten.
    ap = os.path.join(d, 'append')
    write(ap, b'a' * 300000)
    write(ap, b'head\n')
    write(ap, b'tail\n', os.O_WRONLY | os.O_APPEND)
    # O_CREAT on an existing file keeps its bytes; O_EXCL refuses it.
    keep = os.path.join(d, 'keep')
    write(keep, b'kept bytes\n')
    os.close(os.open(keep, os.O_WRONLY | os.O_CREAT, 0o600))
    with pytest.raises(FileExistsError):
        os.open(keep, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    # Truncated while another handle has it open, then written through it.
    sh = os.path.join(d, 'shared')
    write(sh, b's' * 500000)
    fd = os.open(sh, os.O_RDWR)
    write(sh, b'')
    os.pwrite(fd, b'late', 10)
    os.close(fd)
    want = {
        f: b'new\n',
        big: small,
        rt: b'',
        ap: b'head\ntail\n',
        keep: b'kept bytes\n',
        sh: bytes(10) + b'late',
    }
    for path, data in want.items():
        assert read(path) == data, path
    util.drop_caches(d)
    for path, data in want.items():
        assert read(path) == data, f'{path} after drop_caches'
    m.remount()
    for path, data in want.items():
        assert read(path) == data, f'{path} after remount'
        assert os.stat(path).st_size == len(data), path


def test_open_flags(mount):
    open_flag_cases(mount)


def test_open_flags_cluster(cluster):
    c = cluster(nodes=2, redundancy='replicas:2')
    open_flag_cases(c.mount)


def test_open_trunc_read_only_mount(make_mount, node_dir, mnt):
    m = make_mount(node_dir, mnt)
    write(os.path.join(mnt, 'f'), b'data')
    m.stop()
    m.opts = 'ro'
    m.start()
    with pytest.raises(OSError) as exc:
        os.open(os.path.join(mnt, 'f'), os.O_WRONLY | os.O_TRUNC)
    assert exc.value.errno == errno.EROFS
    assert read(os.path.join(mnt, 'f')) == b'data'


@pytest.mark.parametrize('fsync_at', [1000000, 3145728, 8400953])
def test_fsynced_tail_survives_append_and_kill9(make_mount, node_dir, mnt,
                                               fsync_at):
    """fsync, then appends that re-chunk the file's last block, then kill -9:
    every fsync'd byte must read back (the merged block that replaced the
    fsync'd tail was not durable yet, and the fsync'd one was gone)."""
    m = make_mount(node_dir, mnt)
    rng = random.Random(1)
    head = rng.randbytes(fsync_at)
    more = rng.randbytes(64 * MiB)
    path = os.path.join(mnt, 'f')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        write_all(fd, head)
        os.fsync(fd)
        write_all(fd, more)
    finally:
        # close: the final flush chunks the appended bytes, re-chunking
        # the fsync'd tail, into the local store (no sync)
        os.close(fd)
    m.kill()
    m.start()
    got = read(path)
    assert len(got) >= fsync_at
    if got[:fsync_at] != head:
        bad = next(i for i in range(fsync_at) if got[i] != head[i])
        pytest.fail(f'fsync\'d byte {bad} of {fsync_at} lost after kill -9')
    # beyond the fsync point: the bytes written, or zeros where lost
    tail = got[fsync_at:]
    for off in range(0, len(tail), 65536):
        page, src = tail[off:off + 65536], more[off:off + 65536]
        assert all(g in (s, 0) for g, s in zip(page, src)), \
            f'unsynced bytes at {fsync_at + off} are neither data nor zeros'


def test_fsynced_overwrite_survives_kill9(make_mount, node_dir, mnt):
    """Overwrites in the middle of an fsync'd file, not fsync'd, then kill -9:
    each byte reads its fsync'd value or the newer one, never zeros."""
    m = make_mount(node_dir, mnt)
    rng = random.Random(2)
    base = bytearray(rng.randbytes(16 * MiB))
    path = os.path.join(mnt, 'f')
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        write_all(fd, base)
        os.fsync(fd)
        newer = bytearray(base)
        for _ in range(40):
            off = rng.randrange(len(base) - 200000)
            data = rng.randbytes(rng.randrange(1, 200000))
            os.pwrite(fd, data, off)
            newer[off:off + len(data)] = data
    finally:
        os.close(fd)
    m.kill()
    m.start()
    got = read(path)
    assert len(got) == len(base)
    for i in range(0, len(base), 4096):
        g, a, b = got[i:i + 4096], base[i:i + 4096], newer[i:i + 4096]
        if g == a or g == b:
            continue
        assert all(x in (y, z) for x, y, z in zip(g, a, b)), \
            f'byte range at {i} is neither the fsync\'d nor the newer data'


# ---- issue 20: what ext4 keeps across a crash --------------------------------

def text(seed, nbytes):
    """@nbytes of base64 text (lines of 76), as an editor's file."""
    raw = random.Random(seed).randbytes(nbytes * 3 // 4)
    return base64.encodebytes(raw)[:nbytes]


@pytest.mark.parametrize('how', ['sed', 'mv'])
def test_replace_by_rename_survives_kill9(make_mount, node_dir, mnt, how):
    """A file replaced by rename (sed -i, an editor's save, cp + mv), then
    kill -9: the name holds the old content or the new one, whole, never
    zeros (ext4's auto_da_alloc; e0ce0c1 read all 4 MB as zeros)."""
    m = make_mount(node_dir, mnt)
    conf = os.path.join(mnt, 'conf.txt')
    old = text(20, 4 * MiB)
    write(conf, old)
    fd = os.open(conf, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    if how == 'sed':
        new = old.replace(b'A', b'a')
        util.run(['sed', '-i', 's/A/a/g', conf])
    else:
        new = text(21, 4 * MiB + 12345)
        tmp = os.path.join(mnt, '.conf.txt.tmp')
        write(tmp, new)
        util.run(['mv', tmp, conf])
    m.kill()
    m.start()
    got = read(conf)
    whole = got in (old, new)
    assert whole, (
        f'{len(got)} bytes, {got.count(0)} of them zeros: neither the old '
        f'content ({len(old)} bytes) nor the new ({len(new)})')


def test_truncate_and_rewrite_survives_kill9(make_mount, node_dir, mnt):
    """A file truncated to zero and written again (O_TRUNC), closed, then
    kill -9: the new content is there (ext4 flushes such a file at close;
    e0ce0c1 read zeros)."""
    m = make_mount(node_dir, mnt)
    path = os.path.join(mnt, 'state')
    write(path, text(22, 3 * MiB))
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    new = text(23, 3 * MiB + 777)
    write(path, new)  # O_WRONLY|O_CREAT|O_TRUNC, then close
    write(os.path.join(mnt, 'later'), b'a later operation\n')
    m.kill()
    m.start()
    got = read(path)
    same = got == new
    assert same, f'{len(got)} bytes, {got.count(0)} zeros'


def test_setattr_order_survives_kill9(make_mount, node_dir, mnt):
    """chmod, utimes and chown acknowledged before a create stay with it
    after kill -9: a crash may lose the last operations, never one in the
    middle (e0ce0c1 kept the create and undid the chmod 600)."""
    m = make_mount(node_dir, mnt)
    s, t = os.path.join(mnt, 's'), os.path.join(mnt, 't')
    write(s, b'secret\n')
    write(t, b'x\n')
    for p in (s, t, mnt):
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    os.chmod(s, 0o600)
    util.run(['touch', '-m', '-d', '2001-01-01 00:00:00 UTC', t])
    os.chown(t, 65534, -1)
    write(os.path.join(mnt, 'flag'), b'done\n')
    m.kill()
    m.start()
    assert read(os.path.join(mnt, 'flag')) == b'done\n'
    assert oct(os.stat(s).st_mode & 0o7777) == oct(0o600)
    st = os.stat(t)
    assert st.st_mtime == 978307200, 'the utimes was undone'
    assert st.st_uid == 65534, 'the chown was undone'
