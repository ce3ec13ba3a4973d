"""Ordinary tools on a real mount: cp -a, rsync, tar, git, sqlite3."""

import hashlib
import os
import shutil
import sqlite3

import pytest

import util


def test_cp_a_tree(mount, big_tree):
    """cp -a of a tree of >= 5,000 files (/usr/include), verified by sha256
    and metadata, then again after a remount."""
    want = util.env_int('BLOCKFS_TEST_TREE_FILES', 5000)
    assert util.count_files(big_tree) >= want
    dst = os.path.join(mount.mnt, 'tree')
    util.run(['cp', '-a', big_tree, dst], timeout=1200)
    util.assert_same_tree(big_tree, dst)
    mount.remount()
    util.assert_same_tree(big_tree, dst)
    util.run(['rm', '-rf', dst], timeout=600)
    assert os.listdir(mount.mnt) == []


def rsync_diff(src, dst):
    """What a checksumming rsync would still change: empty when identical."""
    res = util.run(['rsync', '-aH', '-c', '--delete', '--dry-run', '-i',
                    src.rstrip('/') + '/', dst.rstrip('/') + '/'], timeout=600)
    return res.stdout.strip()


def test_rsync(mount, small_tree, tmp_path):
    dst = os.path.join(mount.mnt, 'r')
    util.run(['rsync', '-aH', small_tree + '/', dst + '/'], timeout=600)
    assert rsync_diff(small_tree, dst) == ''
    out = str(tmp_path / 'out')
    util.run(['rsync', '-aH', dst + '/', out + '/'], timeout=600)
    assert rsync_diff(small_tree, out) == ''
    util.assert_same_tree(small_tree, out)
    # An incremental update: changed, added and deleted files (rsync writes
    # temporary files and renames them over the old ones).
    changed = str(tmp_path / 'changed')
    shutil.copytree(small_tree, changed, symlinks=True)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(changed)
                   for f in fs if not os.path.islink(os.path.join(d, f)))
    for f in files[::40]:
        with open(f, 'ab') as fh:
            fh.write(b'appended by the test\n')
    for f in files[5::97]:
        os.unlink(f)
    with open(os.path.join(changed, 'brand-new'), 'wb') as fh:
        fh.write(os.urandom(100000))
    util.run(['rsync', '-aH', '--delete', changed + '/', dst + '/'],
             timeout=600)
    assert rsync_diff(changed, dst) == ''
    mount.remount()
    assert rsync_diff(changed, dst) == ''


def test_tar(mount, small_tree, tmp_path):
    tarball = str(tmp_path / 'src.tar')
    # POSIX (pax) format keeps nanosecond times, so trees compare exactly.
    util.run(['tar', '--format=posix', '-cf', tarball, '-C', small_tree, '.'],
             timeout=600)
    x = os.path.join(mount.mnt, 'x')
    os.mkdir(x)
    util.run(['tar', '-xpf', tarball, '-C', x], timeout=600)
    util.assert_same_tree(small_tree, x)
    # tar's own comparison: contents, modes, owners, times, link targets.
    util.run(['tar', '-df', tarball, '-C', x], timeout=600)
    # Re-create inside the mount and outside, both must extract identically.
    inside = os.path.join(mount.mnt, 're.tar.gz')
    util.run(['tar', '--format=posix', '-czf', inside, '-C', x, '.'],
             timeout=600)
    mount.remount()
    util.run(['tar', '-df', tarball, '-C', x], timeout=600)
    y = str(tmp_path / 'y')
    os.mkdir(y)
    util.run(['tar', '-xzpf', inside, '-C', y], timeout=600)
    util.assert_same_tree(small_tree, y)


def git(repo, *args, **kw):
    env = dict(os.environ, GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@example.org',
               GIT_COMMITTER_NAME='t', GIT_COMMITTER_EMAIL='t@example.org',
               GIT_CONFIG_NOSYSTEM='1', HOME=os.path.dirname(repo))
    return util.run(['git', '-C', repo, *args], env=env, timeout=600, **kw)


def test_git(mount, small_tree, tmp_path):
    repo = os.path.join(mount.mnt, 'repo')
    util.run(['git', 'init', '-q', '-b', 'main', repo])
    util.run(['cp', '-a', small_tree + '/.', repo], timeout=600)
    git(repo, 'add', '-A')
    git(repo, 'commit', '-q', '-m', 'first')
    with open(os.path.join(repo, 'README'), 'w') as f:
        f.write('second commit\n')
    git(repo, 'add', 'README')
    git(repo, 'commit', '-q', '-m', 'second')
    git(repo, 'mv', 'README', 'README.txt')
    git(repo, 'commit', '-q', '-m', 'third')
    head = git(repo, 'rev-parse', 'HEAD').stdout.strip()
    git(repo, 'gc', '-q')  # packs: rename, mmap, fsync
    for _ in range(2):
        log = git(repo, 'log', '--oneline').stdout.splitlines()
        assert [line.split(' ', 1)[1] for line in log] == \
            ['third', 'second', 'first']
        git(repo, 'fsck', '--full', '--strict')
        assert git(repo, 'status', '--porcelain').stdout == ''
        assert git(repo, 'rev-parse', 'HEAD').stdout.strip() == head
        mount.remount()
    clone = str(tmp_path / 'clone')
    util.run(['git', 'clone', '-q', repo, clone], timeout=600)
    assert git(clone, 'rev-parse', 'HEAD').stdout.strip() == head


def rows_digest(con):
    h = hashlib.sha256()
    for row in con.execute('SELECT id, v, b FROM t ORDER BY id'):
        h.update(repr(row).encode())
    return h.hexdigest()


@pytest.mark.parametrize('journal', ['delete', 'wal'])
def test_sqlite(mount, journal):
    db = os.path.join(mount.mnt, f'{journal}.db')
    con = sqlite3.connect(db, isolation_level=None)
    try:
        mode = con.execute(f'PRAGMA journal_mode={journal}').fetchone()[0]
        assert mode == journal
        con.execute('PRAGMA synchronous=FULL')
        con.execute('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)')
        # Many small transactions, each committed (and so fsynced) alone.
        for i in range(500):
            con.execute('BEGIN')
            con.execute('INSERT INTO t(v, b) VALUES (?, ?)',
                        (f'row {i}', os.urandom(i % 3000)))
            con.execute('COMMIT')
        for i in range(1, 501, 3):
            con.execute('BEGIN')
            con.execute('UPDATE t SET v = ?, b = ? WHERE id = ?',
                        (f'updated {i}', os.urandom(5000), i))
            con.execute('COMMIT')
        # One large transaction, a rollback, deletes and a VACUUM.
        con.execute('BEGIN')
        con.executemany('INSERT INTO t(v, b) VALUES (?, ?)',
                        ((f'bulk {i}', os.urandom(1000)) for i in range(5000)))
        con.execute('COMMIT')
        con.execute('BEGIN')
        con.execute('DELETE FROM t')
        con.execute('ROLLBACK')
        con.execute('DELETE FROM t WHERE id % 7 = 0')
        con.execute('CREATE INDEX tv ON t(v)')
        con.execute('VACUUM')
        assert con.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
        count = con.execute('SELECT count(*) FROM t').fetchone()[0]
        assert count == 5500 - 5500 // 7
        digest = rows_digest(con)
    finally:
        con.close()
    res = util.run(['sqlite3', db, 'PRAGMA integrity_check;'])
    assert res.stdout.strip() == 'ok'
    mount.remount()
    res = util.run(['sqlite3', db, 'PRAGMA integrity_check; '
                    'SELECT count(*) FROM t;'])
    assert res.stdout.split() == ['ok', str(count)]
    con = sqlite3.connect(db)
    try:
        assert rows_digest(con) == digest
    finally:
        con.close()
