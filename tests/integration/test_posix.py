"""POSIX semantics on a real mount: links, xattrs, renames, truncate, sparse
files, metadata, permissions, locks, mmap, fsync, statfs. Most tests check
again after a remount, so that what the kernel cached is not all we see."""

import ctypes
import ctypes.util
import errno
import mmap
import os
import stat
import subprocess

import pytest

import util
from util import MiB, GiB


def p(m, *names):
    return os.path.join(m.mnt, *names)


def write(path, data, mode='wb'):
    with open(path, mode) as f:
        f.write(data)


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def test_basic_file_and_dir(mount):
    os.makedirs(p(mount, 'a', 'b', 'c'))
    write(p(mount, 'a', 'b', 'c', 'f'), b'hello')
    assert read(p(mount, 'a', 'b', 'c', 'f')) == b'hello'
    assert sorted(os.listdir(p(mount, 'a', 'b'))) == ['c']
    with pytest.raises(OSError) as exc:
        os.rmdir(p(mount, 'a', 'b', 'c'))
    assert exc.value.errno == errno.ENOTEMPTY
    with pytest.raises(FileExistsError):
        os.mkdir(p(mount, 'a'))
    with pytest.raises(FileNotFoundError):
        os.stat(p(mount, 'nope'))
    # Many entries in one directory.
    for i in range(2000):
        write(p(mount, 'a', f'n{i:05d}'), b'%d' % i)
    mount.remount()
    names = os.listdir(p(mount, 'a'))
    assert len(names) == 2001
    assert read(p(mount, 'a', 'n01234')) == b'1234'
    for i in range(0, 2000, 2):
        os.unlink(p(mount, 'a', f'n{i:05d}'))
    mount.remount()
    assert len(os.listdir(p(mount, 'a'))) == 1001
    os.unlink(p(mount, 'a', 'b', 'c', 'f'))
    os.removedirs(p(mount, 'a', 'b', 'c'))
    assert os.path.isdir(p(mount, 'a'))


def test_hard_links(mount):
    a, b, c = p(mount, 'a'), p(mount, 'sub', 'b'), p(mount, 'c')
    os.mkdir(p(mount, 'sub'))
    write(a, b'shared content')
    os.link(a, b)
    os.link(a, c)
    sa, sb = os.stat(a), os.stat(b)
    assert sa.st_ino == sb.st_ino
    assert sa.st_nlink == sb.st_nlink == 3
    write(b, b' appended', 'ab')
    assert read(a) == read(c) == b'shared content appended'
    os.unlink(c)
    assert os.stat(a).st_nlink == 2
    mount.remount()
    sa, sb = os.stat(a), os.stat(b)
    assert sa.st_ino == sb.st_ino and sa.st_nlink == sb.st_nlink == 2
    assert read(b) == b'shared content appended'
    # Writing through one name after remount still shows through the other.
    with open(a, 'r+b') as f:
        f.write(b'SHARED')
    assert read(b) == b'SHARED content appended'
    os.unlink(a)
    assert os.stat(b).st_nlink == 1
    assert read(b) == b'SHARED content appended'
    # Directories cannot be hard-linked.
    with pytest.raises(OSError) as exc:
        os.link(p(mount, 'sub'), p(mount, 'sub2'))
    assert exc.value.errno == errno.EPERM


def test_open_unlinked_file(mount):
    f = open(p(mount, 'tmp'), 'w+b')
    try:
        f.write(b'still here')
        f.flush()
        os.unlink(p(mount, 'tmp'))
        assert not os.path.exists(p(mount, 'tmp'))
        f.seek(0)
        assert f.read() == b'still here'
        assert os.fstat(f.fileno()).st_nlink == 0
    finally:
        f.close()


def test_symlinks(mount):
    write(p(mount, 'target'), b'through the link')
    os.mkdir(p(mount, 'dir'))
    write(p(mount, 'dir', 'inner'), b'inner')
    os.symlink('target', p(mount, 'rel'))
    os.symlink(p(mount, 'target'), p(mount, 'abs'))
    os.symlink('dir', p(mount, 'dirlink'))
    os.symlink('no/such/file', p(mount, 'dangling'))
    long_target = 'x' * 1000 + '/' + 'y' * 2000
    os.symlink(long_target, p(mount, 'long'))
    for _ in range(2):
        assert os.readlink(p(mount, 'rel')) == 'target'
        assert os.readlink(p(mount, 'abs')) == p(mount, 'target')
        assert os.readlink(p(mount, 'dangling')) == 'no/such/file'
        assert os.readlink(p(mount, 'long')) == long_target
        assert read(p(mount, 'rel')) == b'through the link'
        assert read(p(mount, 'dirlink', 'inner')) == b'inner'
        st = os.lstat(p(mount, 'rel'))
        assert stat.S_ISLNK(st.st_mode)
        assert st.st_size == len('target')
        assert os.path.lexists(p(mount, 'dangling'))
        assert not os.path.exists(p(mount, 'dangling'))
        mount.remount()
    os.unlink(p(mount, 'rel'))
    assert os.path.exists(p(mount, 'target'))


def test_xattrs(mount):
    f = p(mount, 'f')
    write(f, b'data')
    os.mkdir(p(mount, 'd'))
    util.run(['setfattr', '-n', 'user.color', '-v', 'blue', f])
    util.run(['setfattr', '-n', 'user.empty', f])
    util.run(['setfattr', '-n', 'user.dir', '-v', 'on a directory',
              p(mount, 'd')])
    big = os.urandom(3000)
    os.setxattr(f, 'user.big', big)
    for _ in range(2):
        out = util.run(['getfattr', '-d', '--absolute-names', f]).stdout
        assert 'user.color="blue"' in out
        assert os.getxattr(f, 'user.color') == b'blue'
        assert os.getxattr(f, 'user.empty') == b''
        assert os.getxattr(f, 'user.big') == big
        assert os.getxattr(p(mount, 'd'), 'user.dir') == b'on a directory'
        assert {'user.color', 'user.empty', 'user.big'} <= \
            set(os.listxattr(f))
        mount.remount()
    with pytest.raises(OSError) as exc:
        os.getxattr(f, 'user.missing')
    assert exc.value.errno == errno.ENODATA
    with pytest.raises(OSError) as exc:
        os.setxattr(f, 'user.color', b'red', os.XATTR_CREATE)
    assert exc.value.errno == errno.EEXIST
    with pytest.raises(OSError) as exc:
        os.setxattr(f, 'user.new', b'x', os.XATTR_REPLACE)
    assert exc.value.errno == errno.ENODATA
    os.setxattr(f, 'user.color', b'red', os.XATTR_REPLACE)
    util.run(['setfattr', '-x', 'user.empty', f])
    mount.remount()
    assert os.getxattr(f, 'user.color') == b'red'
    assert 'user.empty' not in os.listxattr(f)
    # Content is untouched by xattr changes.
    assert read(f) == b'data'


# renameat2(2) flags
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100
_libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)


def renameat2(old, new, flags):
    rc = _libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD,
                         os.fsencode(new), ctypes.c_uint(flags))
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), old)


def test_rename(mount):
    write(p(mount, 'a'), b'A')
    write(p(mount, 'b'), b'B')
    # Over an existing target.
    os.rename(p(mount, 'a'), p(mount, 'b'))
    assert not os.path.exists(p(mount, 'a'))
    assert read(p(mount, 'b')) == b'A'
    # Across directories, and a directory with contents.
    os.makedirs(p(mount, 'd1', 'sub'))
    write(p(mount, 'd1', 'sub', 'f'), b'deep')
    os.mkdir(p(mount, 'd2'))
    os.rename(p(mount, 'b'), p(mount, 'd2', 'b'))
    os.rename(p(mount, 'd1'), p(mount, 'd2', 'moved'))
    assert read(p(mount, 'd2', 'moved', 'sub', 'f')) == b'deep'
    # A directory over an empty directory; not over a non-empty one.
    os.mkdir(p(mount, 'empty'))
    os.rename(p(mount, 'd2', 'moved'), p(mount, 'empty'))
    assert read(p(mount, 'empty', 'sub', 'f')) == b'deep'
    os.mkdir(p(mount, 'd3'))
    with pytest.raises(OSError) as exc:
        os.rename(p(mount, 'd3'), p(mount, 'empty'))
    assert exc.value.errno in (errno.ENOTEMPTY, errno.EEXIST)
    # A directory into its own subtree.
    with pytest.raises(OSError) as exc:
        os.rename(p(mount, 'empty'), p(mount, 'empty', 'sub', 'x'))
    assert exc.value.errno == errno.EINVAL
    # RENAME_NOREPLACE.
    write(p(mount, 'x'), b'X')
    write(p(mount, 'y'), b'Y')
    with pytest.raises(OSError) as exc:
        renameat2(p(mount, 'x'), p(mount, 'y'), RENAME_NOREPLACE)
    assert exc.value.errno == errno.EEXIST
    assert read(p(mount, 'y')) == b'Y'
    renameat2(p(mount, 'x'), p(mount, 'z'), RENAME_NOREPLACE)
    assert read(p(mount, 'z')) == b'X'
    # RENAME_EXCHANGE: a file and a directory swap places.
    renameat2(p(mount, 'z'), p(mount, 'd3'), RENAME_EXCHANGE)
    assert os.path.isdir(p(mount, 'z'))
    assert read(p(mount, 'd3')) == b'X'
    renameat2(p(mount, 'y'), p(mount, 'd3'), RENAME_EXCHANGE)
    assert read(p(mount, 'y')) == b'X' and read(p(mount, 'd3')) == b'Y'
    with pytest.raises(OSError) as exc:
        renameat2(p(mount, 'y'), p(mount, 'missing'), RENAME_EXCHANGE)
    assert exc.value.errno == errno.ENOENT
    mount.remount()
    assert sorted(os.listdir(mount.mnt)) == ['d2', 'd3', 'empty', 'y', 'z']
    assert read(p(mount, 'y')) == b'X' and read(p(mount, 'd3')) == b'Y'
    assert read(p(mount, 'd2', 'b')) == b'A'
    assert read(p(mount, 'empty', 'sub', 'f')) == b'deep'
    # Link counts of directories follow renames (or are 1: "unknown").
    assert os.stat(p(mount, 'd2')).st_nlink in (1, 2)
    assert os.stat(mount.mnt).st_nlink in (1, 2 + 3)  # d2, empty, z


def test_rename_over_open_file(mount):
    write(p(mount, 'old'), b'old content')
    f = open(p(mount, 'old'), 'rb')
    try:
        write(p(mount, 'new'), b'new content')
        os.rename(p(mount, 'new'), p(mount, 'old'))
        assert f.read() == b'old content'
    finally:
        f.close()
    assert read(p(mount, 'old')) == b'new content'


def test_truncate(mount):
    f = p(mount, 'f')
    data = os.urandom(3 * MiB + 17)
    write(f, data)
    os.truncate(f, 1000)
    assert read(f) == data[:1000]
    os.truncate(f, 5 * MiB)
    assert os.stat(f).st_size == 5 * MiB
    expect = data[:1000] + bytes(5 * MiB - 1000)
    assert read(f) == expect
    # Truncate in the middle of a chunk, through an open descriptor with
    # unflushed writes.
    with open(f, 'r+b') as fh:
        fh.seek(2 * MiB)
        fh.write(b'z' * 100)
        fh.flush()
        os.ftruncate(fh.fileno(), 2 * MiB + 50)
    expect = expect[:2 * MiB] + b'z' * 50
    assert read(f) == expect
    mount.remount()
    assert read(f) == expect
    os.truncate(f, 0)
    assert read(f) == b''
    mount.remount()
    assert os.stat(f).st_size == 0
    # O_TRUNC on open.
    write(f, b'abc')
    write(f, b'd')
    assert read(f) == b'd'


def test_sparse_file(mount):
    f = p(mount, 'sparse')
    far = 10 * GiB
    with open(f, 'wb') as fh:
        fh.write(b'start')
        fh.seek(far)
        fh.write(b'end')
    for _ in range(2):
        st = os.stat(f)
        assert st.st_size == far + 3
        assert st.st_blocks * 512 < 16 * MiB, \
            f'st_blocks {st.st_blocks} for a file of two small writes'
        with open(f, 'rb') as fh:
            assert fh.read(5) == b'start'
            for off in (5, 4096, 1 * GiB, 5 * GiB + 12345, far - 100):
                fh.seek(off)
                assert fh.read(100) == bytes(100), f'hole at {off} not zeros'
            fh.seek(far)
            assert fh.read() == b'end'
        util.syncfs(mount.mnt)
        st = util.status(mount.node_dir)
        assert st['stored_bytes'] < 4 * MiB, \
            f'holes were stored: {st}'
        mount.remount()
    # A hole made by truncating up, then written in the middle.
    g = p(mount, 'g')
    write(g, b'')
    os.truncate(g, 100 * MiB)
    with open(g, 'r+b') as fh:
        fh.seek(50 * MiB)
        fh.write(b'middle')
    with open(g, 'rb') as fh:
        fh.seek(50 * MiB - 10)
        assert fh.read(26) == bytes(10) + b'middle' + bytes(10)


def test_metadata(mount):
    f = p(mount, 'f')
    write(f, b'x')
    os.chmod(f, 0o4751)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o4751
    os.chmod(f, 0o640)
    os.chown(f, 65534, 65534)
    os.utime(f, ns=(1_234_567_890_123_456_789, 1_111_111_111_987_654_321))
    os.mkdir(p(mount, 'd'), 0o700)
    os.chown(p(mount, 'd'), 1234, 5678)
    os.utime(p(mount, 'd'), ns=(2 * 10**18, 3 * 10**18))
    os.symlink('f', p(mount, 'l'))
    os.chown(p(mount, 'l'), 42, 43, follow_symlinks=False)
    for _ in range(2):
        st = os.stat(f)
        assert stat.S_IMODE(st.st_mode) == 0o640
        assert (st.st_uid, st.st_gid) == (65534, 65534)
        assert st.st_atime_ns == 1_234_567_890_123_456_789
        assert st.st_mtime_ns == 1_111_111_111_987_654_321
        sd = os.stat(p(mount, 'd'))
        assert stat.S_IMODE(sd.st_mode) == 0o700
        assert (sd.st_uid, sd.st_gid) == (1234, 5678)
        assert sd.st_mtime_ns == 3 * 10**18
        sl = os.lstat(p(mount, 'l'))
        assert (sl.st_uid, sl.st_gid) == (42, 43)
        mount.remount()
    # A write moves mtime and ctime forward; chmod moves ctime.
    before = os.stat(f)
    write(f, b'y', 'ab')
    after = os.stat(f)
    assert after.st_mtime_ns > before.st_mtime_ns
    assert after.st_ctime_ns >= before.st_ctime_ns
    # A new file is owned by its creator and gets the umask.
    old = os.umask(0o027)
    try:
        write(p(mount, 'new'), b'')
    finally:
        os.umask(old)
    st = os.stat(p(mount, 'new'))
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert stat.S_IMODE(st.st_mode) == 0o640


def as_nobody(*cmd):
    return subprocess.run(['setpriv', '--reuid=65534', '--regid=65534',
                           '--clear-groups', '--', *cmd],
                          capture_output=True, text=True, timeout=60)


def test_permissions_enforced(public_dir, make_mount, node_dir):
    # public_dir comes first so that it is torn down after the mount.
    mnt = os.path.join(public_dir, 'mnt')
    os.mkdir(mnt)
    m = make_mount(node_dir, mnt, opts='allow_other')
    os.chmod(mnt, 0o755)
    write(os.path.join(mnt, 'secret'), b'root only')
    os.chmod(os.path.join(mnt, 'secret'), 0o600)
    write(os.path.join(mnt, 'public'), b'everyone reads')
    os.chmod(os.path.join(mnt, 'public'), 0o644)
    os.mkdir(os.path.join(mnt, 'closed'), 0o700)
    os.mkdir(os.path.join(mnt, 'mine'), 0o755)
    os.chown(os.path.join(mnt, 'mine'), 65534, 65534)
    for _ in range(2):
        # Positive controls: what nobody may do works.
        res = as_nobody('cat', os.path.join(mnt, 'public'))
        assert res.returncode == 0, res.stderr
        assert res.stdout == 'everyone reads'
        res = as_nobody('sh', '-c', f'echo hi > {mnt}/mine/f && cat {mnt}/mine/f')
        assert res.returncode == 0 and res.stdout == 'hi\n', res.stderr
        assert os.stat(os.path.join(mnt, 'mine', 'f')).st_uid == 65534
        # And what it may not do fails with EACCES.
        for cmd in (['cat', f'{mnt}/secret'],
                    ['sh', '-c', f'echo x >> {mnt}/public'],
                    ['touch', f'{mnt}/newfile'],
                    ['ls', f'{mnt}/closed'],
                    ['mkdir', f'{mnt}/newdir'],
                    ['rm', '-f', f'{mnt}/public']):
            res = as_nobody(*cmd)
            assert res.returncode != 0, f'{cmd} succeeded as nobody'
            assert 'Permission denied' in res.stderr, (cmd, res.stderr)
        res = as_nobody('chmod', '777', f'{mnt}/public')
        assert res.returncode != 0 and 'not permitted' in res.stderr
        os.unlink(os.path.join(mnt, 'mine', 'f'))
        m.remount()
    assert read(os.path.join(mnt, 'public')) == b'everyone reads'


def test_mmap(mount):
    f = p(mount, 'mapped')
    size = 8 * MiB
    data = bytearray(os.urandom(size))
    write(f, bytes(data))
    with open(f, 'r+b') as fh:
        mm = mmap.mmap(fh.fileno(), size)
        for off in (0, 4095, 3 * MiB + 7, size - 10):
            mm[off:off + 10] = b'0123456789'
            data[off:off + 10] = b'0123456789'
        mm.flush()
        mm.close()
    assert read(f) == bytes(data)
    mount.remount()
    assert read(f) == bytes(data)
    with open(f, 'rb') as fh:
        mm = mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ)
        assert mm[3 * MiB:3 * MiB + 17] == bytes(data[3 * MiB:3 * MiB + 17])
        mm.close()


def test_fsync_family(mount):
    """fsync, fdatasync and a directory's fsync make what they cover
    durable: after kill -9 of the daemon right after them, the file, its
    bytes and its directory entry are there (a no-op fsync leaves them in
    the daemon's write buffer, which the kill loses)."""
    d = p(mount, 'd')
    os.mkdir(d)
    fd = os.open(os.path.join(d, 'f'), os.O_WRONLY | os.O_CREAT, 0o644)
    want = os.urandom(100000) + b'y'
    try:
        os.write(fd, want[:100000])
        os.fsync(fd)
        os.write(fd, want[100000:])
        os.fdatasync(fd)
    finally:
        os.close(fd)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    mount.kill()
    mount.start()
    assert os.listdir(d) == ['f']
    with open(os.path.join(d, 'f'), 'rb') as f:
        assert f.read() == want, 'fsync\'d bytes lost after kill -9'


def test_statfs(mount):
    st = os.statvfs(mount.mnt)
    disk = os.statvfs(mount.node_dir)
    total = st.f_blocks * st.f_frsize
    disk_total = disk.f_blocks * disk.f_frsize
    assert st.f_bavail > 0 and st.f_bfree >= st.f_bavail
    assert 0.5 * disk_total <= total <= 1.1 * disk_total, \
        f'statfs says {total} bytes on a {disk_total}-byte disk'
    assert st.f_namemax >= 255
    assert st.f_frsize > 0 and st.f_bsize > 0
    # What blockfs says can be written leaves RocksDB its reserve (1/32 of
    # the disk, at least 8 MiB; README): a passthrough would report the
    # disk's free space.
    room = st.f_bavail * st.f_frsize
    disk_room = disk.f_bavail * disk.f_frsize
    reserve = min(max(disk_total // 32, 8 * MiB), 1024 * MiB)
    assert room <= disk_room - reserve * 0.9, \
        f'statfs says {room} bytes free, the disk {disk_room}: no reserve'


def test_cp_a_keeps_modes(mount, tmp_path):
    """cp -a copies a file's ACL (system.posix_acl_access) after creating it
    0600; the filesystem must apply that ACL to the mode (it does: the ACL
    equivalent to a mode is not stored, only the mode changes; see
    test_acl.py). Storing it inertly would lose the mode."""
    src = tmp_path / 'src'
    src.mkdir()
    os.chmod(src, 0o755)
    f = src / 'f'
    f.write_bytes(b'x')
    os.chmod(f, 0o644)
    g = src / 'g'
    g.write_bytes(b'y')
    os.chmod(g, 0o751)
    util.run(['cp', '-a', str(src), p(mount, 'dst')])
    assert stat.S_IMODE(os.stat(p(mount, 'dst')).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(p(mount, 'dst', 'f')).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(p(mount, 'dst', 'g')).st_mode) == 0o751
