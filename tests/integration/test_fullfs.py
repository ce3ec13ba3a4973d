"""A node directory on a full file system (issue 11, defect 3): writes fail
with ENOSPC, not EIO; statfs shows what can really be written; deletes,
touch and mkdir go on working and give the space back; nothing fsync'd is
lost; and a mount on a disk that is already full comes up read-only."""

import errno
import os
import random
import subprocess

import pytest

import util
from util import MiB

DISK_MB = 64


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs of its own, unmounted at teardown."""
    d = tmp_path / 'disk'
    d.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={DISK_MB}m',
                    'tmpfs', str(d)], check=True, timeout=30)
    try:
        yield d
    finally:
        subprocess.run(['umount', '-l', str(d)], timeout=30)


def room(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def write_fsync(path, data):
    """Writes and fsyncs @data; returns the errno that stopped it, or 0."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        return exc.errno
    err = 0
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:MiB]):]
        os.fsync(fd)
    except OSError as exc:
        err = exc.errno
    finally:
        try:
            os.close(fd)
        except OSError as exc:
            err = err or exc.errno
    return err


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def fill(disk):
    """Fills @disk to its last byte; returns the filler's path."""
    filler = disk / 'filler'
    with open(filler, 'wb') as f:
        try:
            while True:
                f.write(bytes(MiB))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_full_disk(make_mount, small_disk, tmp_path):
    node = util.create_cluster(small_disk / 'c')
    mnt = str(tmp_path / 'mnt')
    m = make_mount(node, mnt)
    rng = random.Random(3)
    keep = rng.randbytes(5 * MiB)
    assert write_fsync(os.path.join(mnt, 'keep'), keep) == 0
    # The reserve and what RocksDB holds in memory show as used.
    assert room(mnt) < room(str(small_disk))

    big = rng.randbytes(100 * MiB)
    err = write_fsync(os.path.join(mnt, 'big'), big)
    assert err == errno.ENOSPC, f'a write past the disk gave {err}'
    assert room(mnt) < 2 * MiB
    with open(m.log, errors='replace') as f:
        assert 'writes fail with ENOSPC' in f.read()

    # A full filesystem still deletes, creates and lists.
    os.unlink(os.path.join(mnt, 'big'))
    open(os.path.join(mnt, 'touched'), 'w').close()
    os.mkdir(os.path.join(mnt, 'dir'))
    assert sorted(os.listdir(mnt)) == ['dir', 'keep', 'touched']
    # ... and gives the space back (the daemon compacts what was freed).
    util.wait_until(lambda: room(mnt) >= 24 * MiB, 60,
                    'space freed by the delete to come back')
    again = rng.randbytes(20 * MiB)
    assert write_fsync(os.path.join(mnt, 'again'), again) == 0
    assert read(os.path.join(mnt, 'keep')) == keep
    m.remount()
    assert read(os.path.join(mnt, 'keep')) == keep
    assert read(os.path.join(mnt, 'again')) == again

    # A disk filled to the last byte by someone else: the mount comes up
    # read-only and says why, and everything reads back.
    m.stop()
    filler = fill(small_disk)
    m.start()
    assert read(os.path.join(mnt, 'keep')) == keep
    assert read(os.path.join(mnt, 'again')) == again
    with pytest.raises(OSError) as exc:
        open(os.path.join(mnt, 'new'), 'wb').close()
    assert exc.value.errno == errno.EROFS
    with open(m.log, errors='replace') as f:
        assert 'mounting read-only' in f.read()
    m.stop()
    os.unlink(filler)
    m.start()
    assert write_fsync(os.path.join(mnt, 'new'), b'writable again') == 0


def test_full_disk_before_first_mount(make_mount, small_disk, tmp_path):
    """A node never mounted, on a full disk: the mount fails with an error
    that says so, both writable and read-only; once there is room it
    mounts."""
    node = util.create_cluster(small_disk / 'c')
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    filler = fill(small_disk)
    for extra in ((), ('-o', 'ro')):
        err = util.expect_mount_error(node, mnt, *extra)
        # One clear error, from a daemon that did not crash.
        lines = err.strip().splitlines()
        assert len(lines) == 1, err[-2000:]
        assert 'is full and holds no filesystem' in lines[0], lines
        assert not util.is_mounted(str(mnt))
    os.unlink(filler)
    make_mount(node, str(mnt))
    assert write_fsync(str(mnt / 'f'), b'room again') == 0
