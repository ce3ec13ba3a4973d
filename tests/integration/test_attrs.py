"""Attributes as local filesystems keep them: atime under relatime, noatime
and strictatime; setuid and setgid cleared when others write or truncate a
file; the inode counts of df -i. Each behaviour is run on blockfs and, in
the same test, on a tmpfs reference, and the two must agree."""

import contextlib
import os
import stat
import subprocess
import time

import pytest

import util

NOBODY = 65534
OLD = '2020-01-01 00:00:00'


@pytest.fixture
def make_pair(public_dir, make_mount, node_dir):
    """Factory: (blockfs mountpoint, tmpfs reference) under public_dir, both
    mounted with the same extra options; unmounts the tmpfs at teardown
    (public_dir's teardown detaches anything left)."""
    stack = contextlib.ExitStack()

    def factory(opts=''):
        mnt = os.path.join(public_dir, 'mnt')
        ref = os.path.join(public_dir, 'ref')
        os.makedirs(ref)
        util.run(['mount', '-t', 'tmpfs', '-o',
                  'size=64m' + (',' + opts if opts else ''), 'tmpfs', ref])
        stack.callback(subprocess.run, ['umount', '-l', ref], timeout=60)
        os.chmod(ref, 0o755)
        m = make_mount(node_dir, mnt,
                       opts='allow_other' + (',' + opts if opts else ''))
        os.chmod(mnt, 0o755)
        return m, ref

    with stack:
        yield factory


def atime(path):
    return os.stat(path).st_atime_ns


def set_old_atime(path):
    util.run(['touch', '-a', '-d', OLD, path])
    assert time.strftime('%Y', time.gmtime(atime(path) / 1e9)) == '2020'


def read_file(path):
    util.run(['cat', path])


def atime_steps(d):
    """The steps of the relatime story on directory @d: for each, whether
    the read moved atime."""
    f = os.path.join(d, 'f')
    with open(f, 'w') as fh:
        fh.write('hello\n')
    moved = {}
    # Read from the page cache (the file was just written).
    set_old_atime(f)
    before = atime(f)
    read_file(f)
    moved['after touch -a'] = atime(f) != before
    # Read again: atime is newer than mtime and ctime, and recent.
    before = atime(f)
    read_file(f)
    moved['read again'] = atime(f) != before
    # Written since: mtime is newer than atime.
    with open(f, 'a') as fh:
        fh.write('more\n')
    before = atime(f)
    read_file(f)
    moved['after a write'] = atime(f) != before
    # A directory listed.
    sub = os.path.join(d, 'sub')
    os.mkdir(sub)
    set_old_atime(sub)
    before = atime(sub)
    os.listdir(sub)
    moved['directory listed'] = atime(sub) != before
    # Opened for writing only: no read.
    set_old_atime(f)
    before = atime(f)
    with open(f, 'a') as fh:
        fh.write('x')
    moved['written, not read'] = atime(f) != before
    return moved


@pytest.mark.parametrize('opts', ['', 'relatime', 'noatime', 'strictatime',
                                  'nodiratime'])
def test_atime_like_tmpfs(make_pair, opts):
    m, ref = make_pair(opts)
    want = atime_steps(ref)
    got = atime_steps(m.mnt)
    assert got == want, f'blockfs {got}, tmpfs {want}'
    if opts in ('', 'relatime'):
        assert want['after touch -a'] and not want['read again']


@pytest.mark.parametrize('opts', ['strictatime', 'relatime'])
def test_atime_recent_read_moves_only_with_strictatime(make_pair, opts):
    """An atime newer than mtime and ctime and less than a day old (set
    an hour ahead, so that no clock granularity can blur it): a read
    moves it under strictatime only."""
    m, ref = make_pair(opts)
    moved = {}
    for d in (ref, m.mnt):
        f = os.path.join(d, 'f')
        with open(f, 'w') as fh:
            fh.write('x')
        ahead = time.time_ns() + 3600 * 10**9
        os.utime(f, ns=(ahead, os.stat(f).st_mtime_ns))
        read_file(f)
        moved[d == ref] = atime(f) != ahead
    assert moved[False] == moved[True] == (opts == 'strictatime')


def test_atime_survives_remount_uncached(make_pair):
    """A read after a remount (not from the page cache) moves atime, and
    the batched change is on disk after the next unmount."""
    m, ref = make_pair()
    f = os.path.join(m.mnt, 'f')
    with open(f, 'w') as fh:
        fh.write('data\n' * 1000)
    set_old_atime(f)
    m.remount()
    assert time.gmtime(atime(f) / 1e9).tm_year == 2020
    with open(f, 'rb') as fh:
        assert fh.read() == b'data\n' * 1000
    moved = atime(f)
    assert time.gmtime(moved / 1e9).tm_year >= 2026
    m.remount()
    assert atime(f) == moved


def as_user(uid, gid, *cmd):
    return subprocess.run(['setpriv', f'--reuid={uid}', f'--regid={gid}',
                           '--clear-groups', '--', *cmd],
                          capture_output=True, text=True, timeout=60)


# (name, mode, who acts: (uid, gid), how)
KILL_CASES = [
    ('setgid, writer not in the group', 0o2666, (NOBODY, NOBODY), 'append'),
    ('setgid, writer in the group', 0o2666, (NOBODY, 0), 'append'),
    ('setuid, any writer', 0o4666, (NOBODY, 0), 'append'),
    ('setgid group-exec, writer in the group', 0o2676, (NOBODY, 0),
     'append'),
    ('setgid, truncate by a non-member', 0o2666, (NOBODY, NOBODY),
     'truncate'),
    ('setgid, O_TRUNC by a non-member', 0o2666, (NOBODY, NOBODY), 'otrunc'),
    ('setuid+setgid, root writes', 0o6666, (0, 0), 'append'),
]


def act(d, mode, who, how):
    f = os.path.join(d, 'f')
    with open(f, 'w') as fh:
        fh.write('hello\n')
    os.chmod(f, mode)
    cmd = {'append': ['sh', '-c', f'echo more >> {f}'],
           'truncate': ['truncate', '-s', '2', f],
           'otrunc': ['sh', '-c', f'echo new > {f}']}[how]
    res = as_user(*who, *cmd)
    assert res.returncode == 0, res.stderr
    mode_after = stat.S_IMODE(os.stat(f).st_mode)
    os.unlink(f)
    return oct(mode_after)


def test_write_clears_setuid_setgid_like_tmpfs(make_pair):
    m, ref = make_pair()
    want = {c[0]: act(ref, *c[1:]) for c in KILL_CASES}
    got = {c[0]: act(m.mnt, *c[1:]) for c in KILL_CASES}
    assert got == want
    # The reference does what the kernel's rules say.
    assert want['setgid, writer not in the group'] == oct(0o666)
    assert want['setgid, writer in the group'] == oct(0o2666)


def files_used(path):
    st = os.statvfs(path)
    return st.f_files - st.f_ffree


def settle(d, want):
    """Waits for D's used inodes to be WANT: an unlinked file's inode goes
    once the kernel forgets it, which it tells the daemon (FORGET) a
    moment after the unlink returned."""
    util.wait_until(lambda: files_used(d) == want, 30,
                    f'{want} inodes used on {d} (now {files_used(d)})')


def test_df_inodes_count_files(make_pair):
    m, ref = make_pair()
    for d in (ref, m.mnt):
        base = files_used(d)
        os.mkdir(os.path.join(d, 'many'))
        for i in range(1000):
            open(os.path.join(d, 'many', f'f{i}'), 'w').close()
        assert files_used(d) == base + 1001, d
        for i in range(500):
            os.unlink(os.path.join(d, 'many', f'f{i}'))
        settle(d, base + 501)
    # As on ext4 (tmpfs counts links against its limit): a hard link is
    # no new inode, and an unlinked open file counts until closed.
    d = m.mnt
    base = files_used(d)
    os.link(os.path.join(d, 'many', 'f999'), os.path.join(d, 'link'))
    fd = os.open(os.path.join(d, 'many', 'f998'), os.O_RDONLY)
    os.unlink(os.path.join(d, 'many', 'f998'))
    settle(d, base)
    os.close(fd)
    settle(d, base - 1)
    used = files_used(d)
    m.remount()
    st = os.statvfs(d)
    assert st.f_files - st.f_ffree == used
    # Free files are bounded by the room left: they mean something.
    assert 0 < st.f_ffree <= st.f_bavail * st.f_frsize // 64
    out = util.run(['df', '-i', d]).stdout.splitlines()[-1].split()
    assert int(out[2]) == used
