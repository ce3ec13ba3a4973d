"""A node directory on a full file system (issue 11, defect 3): writes fail
with ENOSPC, not EIO; statfs shows what can really be written; deletes,
touch and mkdir go on working and give the space back; nothing fsync'd is
lost; and a mount on a disk that is already full comes up read-only."""

import errno
import os
import pathlib
import random
import subprocess

import pytest

import util
from util import MiB

DISK_MB = 64


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs of its own, unmounted at teardown."""
    with util.tmpfs(tmp_path / 'disk', DISK_MB) as d:
        yield pathlib.Path(d)


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
    assert util.write_fsync(os.path.join(mnt, 'keep'), keep) == 0
    # The reserve and what RocksDB holds in memory show as used.
    assert util.room(mnt) < util.room(str(small_disk))

    big = rng.randbytes(100 * MiB)
    err = util.write_fsync(os.path.join(mnt, 'big'), big)
    assert err == errno.ENOSPC, f'a write past the disk gave {err}'
    assert util.room(mnt) < 2 * MiB
    with open(m.log, errors='replace') as f:
        assert 'writes fail with ENOSPC' in f.read()

    # A full filesystem still deletes, creates and lists.
    os.unlink(os.path.join(mnt, 'big'))
    open(os.path.join(mnt, 'touched'), 'w').close()
    os.mkdir(os.path.join(mnt, 'dir'))
    assert sorted(os.listdir(mnt)) == ['dir', 'keep', 'touched']
    # ... and gives the space back (the daemon compacts what was freed).
    util.wait_until(lambda: util.room(mnt) >= 24 * MiB, 60,
                    'space freed by the delete to come back')
    again = rng.randbytes(20 * MiB)
    assert util.write_fsync(os.path.join(mnt, 'again'), again) == 0
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
    assert util.write_fsync(os.path.join(mnt, 'new'), b'writable again') == 0


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
    assert util.write_fsync(str(mnt / 'f'), b'room again') == 0


@pytest.fixture
def disk_of(tmp_path):
    """disk_of(MB): a tmpfs of MB MiB of its own; every one made is
    unmounted at teardown."""
    made = []

    def make(size_mb):
        d = tmp_path / f'disk{len(made)}'
        d.mkdir()
        subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size_mb}m',
                        'tmpfs', str(d)], check=True, timeout=30)
        made.append(d)
        return d
    try:
        yield make
    finally:
        for d in made:
            subprocess.run(['umount', '-l', str(d)], timeout=30)


def write_pair(paths, datas):
    """Writes two files side by side, 1 MiB to each in turn, then fsyncs
    both: their blocks share the store's files. Returns the errno that
    stopped it (both files are then removed), or 0."""
    fds = [os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
           for p in paths]
    err = 0
    try:
        for off in range(0, len(datas[0]), MiB):
            for fd, data in zip(fds, datas):
                view = memoryview(data)[off:off + MiB]
                while view:
                    view = view[os.write(fd, view):]
        for fd in fds:
            os.fsync(fd)
    except OSError as exc:
        err = exc.errno
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError as exc:
                err = err or exc.errno
    if err:
        for p in paths:
            os.unlink(p)
    return err


def fill_pairs(mnt, prefix, size, rng, limit=200):
    """Fills MNT to ENOSPC with pairs of files of SIZE bytes written side
    by side (write_pair); returns the [(path, bytes), ...] of the pairs
    fsync'd."""
    pairs = []
    for i in range(limit):
        paths = [os.path.join(mnt, f'{prefix}{i}{ab}') for ab in 'ab']
        datas = [rng.randbytes(size), rng.randbytes(size)]
        err = write_pair(paths, datas)
        if err:
            assert err == errno.ENOSPC, f'filling gave {err}'
            return pairs
        pairs.append(list(zip(paths, datas)))
    pytest.fail(f'{limit} pairs of {size} bytes did not fill the disk')


def test_space_comes_back(disk_of, make_mount, tmp_path):
    """Issue 20, item 5: on a disk that filled up, deleting files gives
    the space back within seconds, however much live data the disk holds
    beside the free space and however the deleted blocks lie among live
    ones; cycles of fill to ENOSPC / delete half / write again never lock
    the user out, and nothing fsync'd is lost."""
    disk = disk_of(256)
    node = util.create_cluster(disk / 'c')
    mnt = str(tmp_path / 'mnt')
    m = make_mount(node, mnt)
    rng = random.Random(20)
    live = {}
    # Live data: more than the reserve, and more than a delete frees.
    for i in range(4):
        path = os.path.join(mnt, f'keep{i}')
        live[path] = rng.randbytes(16 * MiB)
        assert util.write_fsync(path, live[path]) == 0
    prev = []
    for cycle in range(3):
        pairs = fill_pairs(mnt, f'c{cycle}-', 4 * MiB, rng)
        assert pairs, f'cycle {cycle}: locked out, not one pair fits'
        # Half of what filled the disk goes: one file of each pair, so
        # that the dead blocks lie among live ones; what the last cycle
        # left goes too.
        freed = 0
        for (dead, data), kept in pairs:
            os.unlink(dead)
            freed += len(data)
            live[kept[0]] = kept[1]
        for path in prev:
            os.unlink(path)
            freed += len(live.pop(path))
        prev = [kept[0] for _, kept in pairs]
        util.poll(lambda: util.room(mnt), lambda r: r >= freed * 3 // 4, 30,
                  lambda r: f'cycle {cycle}: 3/4 of the {freed >> 20} MiB '
                  f'deleted did not come back (room {r >> 20} MiB)', 0.1)
        path = os.path.join(mnt, f'again{cycle}')
        live[path] = rng.randbytes(freed // 4)
        assert util.write_fsync(path, live[path]) == 0, \
            f'cycle {cycle}: locked out'
        prev.append(path)
    for path, data in live.items():
        assert read(path) == data, path
    with open(m.log, errors='replace') as f:
        assert 'compaction failed' not in f.read()
    m.remount()
    for path, data in live.items():
        assert read(path) == data, path


def fill_files(mnt, prefix, size, rng, limit, fill=True):
    """Writes and fsyncs files of SIZE bytes under MNT until one fails
    with ENOSPC (it is removed) or LIMIT files were written (with FILL,
    the test fails then); returns the {path: bytes} of those fsync'd."""
    done = {}
    for i in range(limit):
        path = os.path.join(mnt, f'{prefix}{i}')
        data = rng.randbytes(size)
        err = util.write_fsync(path, data)
        if err:
            assert err == errno.ENOSPC, f'filling gave {err}'
            os.unlink(path)
            return done
        done[path] = data
    assert not fill, f'{limit} files of {size} bytes did not fill the disk'
    return done


def metadata_ops(mnt, tag, n):
    """On a full disk: creating, renaming, changing and deleting names
    works. N rounds of touch, mkdir, rename, chmod, symlink, then an
    fsync of the directory (fsyncdir) that commits them; returns the
    names made."""
    made = []
    for i in range(n):
        f = os.path.join(mnt, f'{tag}-t{i}')
        open(f, 'w').close()
        os.chmod(f, 0o600)
        d = os.path.join(mnt, f'{tag}-d{i}')
        os.mkdir(d)
        os.rename(f, os.path.join(d, 'moved'))
        os.symlink('moved', os.path.join(d, 'link'))
        made.append(d)
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return made


@pytest.mark.parametrize('keep_mb', [64, 96])
def test_metadata_on_full_disk(disk_of, make_mount, tmp_path, keep_mb):
    """Issue 20, item 5: after ENOSPC at fsync, at several fill levels
    (how much of the disk live data holds), touch, mkdir, rename, chmod,
    symlink and unlink keep working, many times over, the daemon stays
    up, and all of it is there after a remount."""
    disk = disk_of(128)
    node = util.create_cluster(disk / 'c')
    mnt = str(tmp_path / 'mnt')
    m = make_mount(node, mnt)
    rng = random.Random(keep_mb)
    live = fill_files(mnt, 'keep', 8 * MiB, rng, keep_mb // 8, fill=False)
    assert len(live) == keep_mb // 8
    filled, made = {}, []
    for rnd in range(5):
        # Full again (ENOSPC at fsync), then names change.
        filled.update(fill_files(mnt, f'fill{rnd}-', 4 * MiB, rng, 64))
        made += metadata_ops(mnt, f'r{rnd}', 20)
    # Deleting works too, and gives room back.
    for path in sorted(filled)[:2]:
        os.unlink(path)
        del filled[path]
    live.update(filled)
    util.poll(lambda: util.room(mnt), lambda r: r >= 4 * MiB, 30,
              lambda r: f'the space of 8 MiB deleted did not come back '
              f'(room {r >> 20} MiB)', 0.1)
    with open(m.log, errors='replace') as f:
        log = f.read()
    assert 'metadata commit failed' not in log
    assert 'compaction failed' not in log
    m.remount()
    for d in made:
        assert os.readlink(os.path.join(d, 'link')) == 'moved'
        assert os.stat(os.path.join(d, 'moved')).st_mode & 0o777 == 0o600
    for path, data in live.items():
        assert read(path) == data, path


def test_status_says_full(disk_of, make_mount, tmp_path):
    """Issue 20, item 5: `blockfs status` shows a node that refuses
    writes as full (as text and in --json), and no compaction error
    while compactions succeed."""
    disk = disk_of(64)
    node = util.create_cluster(disk / 'c')
    mnt = str(tmp_path / 'mnt')
    m = make_mount(node, mnt)
    assert util.write_fsync(os.path.join(mnt, 'f'), b'x' * MiB) == 0
    st = util.status(node)
    assert st['full'] is False and st['compaction_error'] is None, st
    m.stop()
    filler = fill(disk)
    st = util.status(node)
    assert st['full'] is True, st
    text = util.blockfs('status', node).stdout
    assert 'writes fail with ENOSPC' in text, text
    os.unlink(filler)
    assert util.status(node)['full'] is False
    m.start()
    assert read(os.path.join(mnt, 'f')) == b'x' * MiB
