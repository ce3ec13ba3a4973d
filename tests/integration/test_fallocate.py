"""fallocate (issue 21, item 2): punch hole and zero range give the same
bytes and sizes as ext4 (tmpfs has no ZERO_RANGE), give space back and
leave holes SEEK_HOLE finds; mode 0 and KEEP_SIZE set room aside so that
writes into the range do not fail with ENOSPC while others do; collapse
and insert range are refused as the FUSE kernel module refuses them; and
a punch cut short by kill -9 leaves the file as it was or as punched."""

import ctypes
import errno
import os
import pathlib
import random
import subprocess

import pytest

import util
from util import MiB

KEEP_SIZE, PUNCH_HOLE, COLLAPSE, ZERO_RANGE, INSERT = 0x01, 0x02, 0x08, \
    0x10, 0x20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                            ctypes.c_int64]


def falloc(fd, mode, off, length):
    """fallocate(2): 0 or the errno."""
    if _libc.fallocate(fd, mode, off, length) == 0:
        return 0
    return ctypes.get_errno()


@pytest.fixture
def ext4_ref(tmp_path):
    """An ext4 on a loop device, the reference; unmounted at teardown."""
    img = tmp_path / 'ext4.img'
    d = tmp_path / 'ext4'
    d.mkdir()
    with open(img, 'wb') as f:
        f.truncate(256 * MiB)
    subprocess.run(['mkfs.ext4', '-q', '-F', str(img)], check=True,
                   timeout=60)
    subprocess.run(['mount', '-o', 'loop', str(img), str(d)], check=True,
                   timeout=60)
    try:
        yield str(d)
    finally:
        subprocess.run(['umount', '-l', str(d)], timeout=60)




def whole(fd):
    size = os.fstat(fd).st_size
    return os.pread(fd, size + 1, 0)


def ops(seed, size):
    """A sequence of (mode, off, len) and writes ('w', off, bytes) on a
    file of @size: punches and zero ranges unaligned, across block
    edges, inside one block, past the end, with writes between them."""
    rng = random.Random(seed)
    out = []
    for i in range(40):
        kind = rng.randrange(10)
        off = rng.randrange(size)
        n = rng.choice([1, 77, 4096, 5000, 65536, 300000, MiB + 3])
        if kind < 4:
            out.append((PUNCH_HOLE | KEEP_SIZE, off, n))
        elif kind < 6:
            out.append((ZERO_RANGE | KEEP_SIZE, off, n))
        elif kind == 6:
            out.append((ZERO_RANGE, size - 1000 + rng.randrange(3000), n))
        elif kind == 7:
            out.append((rng.choice([0, KEEP_SIZE]), off, n))
        else:
            data = bytes(b or 1 for b in rng.randbytes(n))
            out.append(('w', off, data))
    return out


@pytest.mark.parametrize('when', ['flushed', 'open'])
def test_punch_and_zero_match_ext4(mount, ext4_ref, when):
    """The same punches, zero ranges, allocations and writes on blockfs
    and ext4, on a file fsync'd first or still being written (its bytes
    in the kernel's cache and the write buffer): after each step the
    size and every byte are ext4's, reading through the descriptor that
    wrote (the kernel drops its cached pages of the range)."""
    size = 6 * MiB
    base = random.Random(5).randbytes(size)
    fds = {}
    for d in (ext4_ref, mount.mnt):
        fd = os.open(os.path.join(d, 'f'), os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(fd, base, 0)
        if when == 'flushed':
            os.fsync(fd)
        fds[d] = fd
    try:
        for step, (mode, off, arg) in enumerate(ops(11, size)):
            got = {}
            for d, fd in fds.items():
                if mode == 'w':
                    os.pwrite(fd, arg, off)
                    got[d] = 0
                else:
                    got[d] = falloc(fd, mode, off, arg)
            assert got[mount.mnt] == got[ext4_ref], (step, mode, off, arg)
            a, b = whole(fds[ext4_ref]), whole(fds[mount.mnt])
            assert len(a) == len(b), (step, mode, off, arg)
            assert a == b, f'step {step} ({mode}, {off}, {arg}): bytes ' \
                f'differ first at {next(i for i in range(len(a)) if a[i] != b[i])}'
            if mode == PUNCH_HOLE | KEEP_SIZE and off + arg < len(b):
                # the hole is where the punch was, to the byte
                fd = fds[mount.mnt]
                assert os.lseek(fd, off, os.SEEK_HOLE) == off
                assert os.lseek(fd, off, os.SEEK_DATA) >= off + arg
        for fd in fds.values():
            os.fsync(fd)
        os.close(fds.pop(mount.mnt))
        mount.remount()
        fd = os.open(os.path.join(mount.mnt, 'f'), os.O_RDONLY)
        try:
            assert whole(fd) == whole(fds[ext4_ref])
        finally:
            os.close(fd)
    finally:
        for fd in fds.values():
            os.close(fd)


def test_punch_gives_space_back(mount, tmpfs_ref):
    """st_blocks and the store's used bytes go down after a punch (as on
    tmpfs), and the punched range reads as zeros, also after a
    remount."""
    data = random.Random(8).randbytes(32 * MiB)
    before, after = {}, {}
    for d in (tmpfs_ref, mount.mnt):
        p = os.path.join(d, 'p')
        with open(p, 'wb') as f:
            f.write(data)
            os.fsync(f.fileno())
        before[d] = os.stat(p).st_blocks
        subprocess.run(['fallocate', '-p', '-o', str(4 * MiB), '-l',
                        str(24 * MiB), p], check=True, timeout=60)
        after[d] = os.stat(p).st_blocks
        assert os.path.getsize(p) == len(data)
    for d in before:
        assert after[d] * 512 <= before[d] * 512 - 23 * MiB, d
    mount.remount()
    with open(os.path.join(mount.mnt, 'p'), 'rb') as f:
        got = f.read()
    want = data[:4 * MiB] + bytes(24 * MiB) + data[28 * MiB:]
    assert got == want


def test_collapse_insert_refused(mount, tmpfs_ref):
    """COLLAPSE_RANGE and INSERT_RANGE: EOPNOTSUPP, as tmpfs (ext4 and
    XFS do them; the FUSE kernel module refuses them before any daemon
    sees them). fallocate(1) says so and leaves the file alone; so do
    unknown modes."""
    got = {}
    for d in (tmpfs_ref, mount.mnt):
        p = os.path.join(d, 'c')
        with open(p, 'wb') as f:
            f.write(b'z' * (4 * MiB))
        for flag in ('-c', '-i'):
            res = subprocess.run(['fallocate', flag, '-o', '0', '-l',
                                  str(MiB), p], capture_output=True,
                                 text=True, timeout=60)
            assert res.returncode != 0
            assert 'not supported' in res.stderr, res.stderr
        fd = os.open(p, os.O_RDWR)
        try:
            # unknown, unshare, punch without KEEP_SIZE: as tmpfs
            got[d] = [falloc(fd, mode, 0, 4096)
                      for mode in (COLLAPSE, INSERT, 0x40, 0x400,
                                   PUNCH_HOLE)]
        finally:
            os.close(fd)
        with open(p, 'rb') as f:
            assert f.read() == b'z' * (4 * MiB)
    assert got[mount.mnt] == got[tmpfs_ref]
    assert got[mount.mnt][:2] == [errno.EOPNOTSUPP] * 2


def test_posix_fallocate_and_keep_size(mount, tmpfs_ref):
    """posix_fallocate and KEEP_SIZE: the size moves (or not) as on tmpfs,
    st_blocks counts the allocation, the range reads as zeros, and a
    punch gives the blocks back."""
    res = {}
    for d in (tmpfs_ref, mount.mnt):
        p = os.path.join(d, 'a')
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.posix_fallocate(fd, 0, 10 * MiB)
            s1 = os.fstat(fd)
            assert falloc(fd, KEEP_SIZE, 10 * MiB, 6 * MiB) == 0
            s2 = os.fstat(fd)
            assert os.pread(fd, 10 * MiB, 0) == bytes(10 * MiB)
            assert falloc(fd, PUNCH_HOLE | KEEP_SIZE, 0, 16 * MiB) == 0
            s3 = os.fstat(fd)
            res[d] = (s1.st_size, s2.st_size, s3.st_size,
                      s1.st_blocks * 512 >= 10 * MiB,
                      s2.st_blocks * 512 >= 16 * MiB,
                      s3.st_blocks * 512 < MiB)
        finally:
            os.close(fd)
    assert res[mount.mnt] == res[tmpfs_ref]
    assert res[mount.mnt] == (10 * MiB, 10 * MiB, 10 * MiB, True, True, True)


# ---- reserved room ----------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    with util.tmpfs(tmp_path / 'disk', 192) as d:
        yield pathlib.Path(d)


def test_fallocate_reserves_room(make_mount, small_disk, tmp_path):
    """On a small node disk: fallocate most of the room; statfs shows it
    gone; other writes get ENOSPC while writes into the allocated range
    succeed; a fallocate past the room gets ENOSPC at once; a punch gives
    the reservation back."""
    node = util.create_cluster(small_disk / 'c')
    mnt = str(tmp_path / 'mnt')
    make_mount(node, mnt)
    free = util.room(mnt)
    assert free > 64 * MiB, free
    big = free * 3 // 4 // MiB * MiB
    a = os.path.join(mnt, 'a')
    fd = os.open(a, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert falloc(fd, 0, 0, big) == 0
        st = os.fstat(fd)
        assert st.st_size == big and st.st_blocks * 512 >= big
        left = util.room(mnt)
        assert left <= free - big + 4 * MiB, (free, big, left)
        # more than is left: refused, and nothing changes
        assert falloc(fd, KEEP_SIZE, big, left + 8 * MiB) == errno.ENOSPC
        assert falloc(fd, 0, big, left + 8 * MiB) == errno.ENOSPC
        assert os.fstat(fd).st_size == big
        assert util.room(mnt) >= left - 4 * MiB
        # other writes find no room
        rng = random.Random(9)
        err = util.write_fsync(os.path.join(mnt, 'other'),
                          rng.randbytes(left + 8 * MiB))
        assert err == errno.ENOSPC, err
        os.unlink(os.path.join(mnt, 'other'))
        # ... while the allocated range takes its bytes
        data = rng.randbytes(big)
        assert util.write_fsync(a, data, flags=os.O_CREAT) == 0
        assert os.pread(fd, 4096, big - 4096) == data[-4096:]
        # a reservation written over is used up, not kept twice
        assert os.fstat(fd).st_blocks * 512 < big + 8 * MiB
    finally:
        os.close(fd)
    # and a punch of a reserved, unwritten range gives the room back
    b = os.path.join(mnt, 'b')
    fd = os.open(b, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        before = util.room(mnt)
        assert falloc(fd, KEEP_SIZE, 0, 16 * MiB) == 0
        assert util.room(mnt) <= before - 15 * MiB
        assert falloc(fd, PUNCH_HOLE | KEEP_SIZE, 0, 16 * MiB) == 0
        assert util.room(mnt) >= before - 4 * MiB
        assert os.fstat(fd).st_blocks == 0
    finally:
        os.close(fd)


# ---- crashes ------------------------------------------------------------------

@pytest.mark.parametrize('sync', [False, True])
def test_punch_survives_kill9(make_mount, node_dir, mnt, sync):
    """Punch holes and zero a range across many blocks of an fsync'd
    file, then kill -9: the file reads as before the punches or as
    after, whole, never a mix or garbage; after an fsync, as after."""
    m = make_mount(node_dir, mnt)
    rng = random.Random(13)
    before = rng.randbytes(16 * MiB)
    p = os.path.join(mnt, 'f')
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, before, 0)
        os.fsync(fd)
        after = bytearray(before)
        for off, n, mode in ((3 * MiB + 123, 6 * MiB + 77,
                              PUNCH_HOLE | KEEP_SIZE),
                             (12 * MiB + 5, 1000, ZERO_RANGE | KEEP_SIZE)):
            assert falloc(fd, mode, off, n) == 0
            after[off:off + n] = bytes(n)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    m.kill()
    m.start()
    with open(p, 'rb') as f:
        got = f.read()
    assert len(got) == len(before)
    if sync:
        assert got == after
    else:
        # each punch is one commit: before, after the first, or after both
        first = bytearray(before)
        first[3 * MiB + 123:9 * MiB + 200] = bytes(6 * MiB + 77)
        assert got in (before, bytes(first), bytes(after))
