"""POSIX ACLs (system.posix_acl_access and _default) on a real mount, each
step run beside a tmpfs reference, which keeps ACLs by the kernel's own
rules: getfacl's output, the modes, and what another user may do must be
the same on both, and stay so after a remount (the kernel's ACL cache is
then empty: what is enforced is what blockfs stored)."""

import errno
import os
import stat
import struct
import subprocess

import pytest

import util

NOBODY = 65534


def as_nobody(*cmd):
    return subprocess.run(['setpriv', '--reuid=65534', '--regid=65534',
                           '--clear-groups', '--', *cmd],
                          capture_output=True, text=True, timeout=60)


def sh(root, script, umask=0o022):
    """Runs SCRIPT with sh in ROOT under UMASK; fails the test if it
    fails."""
    return util.run(['sh', '-ec', f'umask {umask:03o}\n{script}'], cwd=root)


class Roots:
    """The blockfs mount and the tmpfs reference, both 0755 directories
    under a public directory, so that nobody reaches both."""

    def __init__(self, mount, node_dir, ref):
        self.mount = mount
        self.node_dir = node_dir
        self.mnt = mount.mnt
        self.ref = ref

    def __iter__(self):
        return iter((self.mnt, self.ref))


@pytest.fixture
def roots(public_dir, make_mount, node_dir):
    # public_dir comes first so that it is torn down after the mount.
    mnt = os.path.join(public_dir, 'mnt')
    os.mkdir(mnt)
    m = make_mount(node_dir, mnt, opts='allow_other')
    os.chmod(mnt, 0o755)
    ref = os.path.join(public_dir, 'ref')
    os.mkdir(ref)
    util.run(['mount', '-t', 'tmpfs', '-o', 'mode=0755,size=64m',
              'blockfs-acl-ref', ref])
    try:
        yield Roots(m, node_dir, ref)
    finally:
        util.run(['umount', ref], check=False)


def same(roots, fn):
    """FN(root) for the mount and the reference: must be equal."""
    a, b = fn(roots.mnt), fn(roots.ref)
    assert a == b, f'blockfs:\n{a}\ntmpfs (reference):\n{b}'
    return a


def getfacl(root, *names):
    """getfacl's output for NAMES relative to ROOT, so that the file name
    lines read the same in both trees."""
    return util.run(['getfacl', *names], cwd=root).stdout


def getfacl_r(root):
    """getfacl -R of ROOT, one entry per file, in name order (getfacl
    walks in directory order, which differs between filesystems)."""
    out = getfacl(root, '-R', '.')
    return sorted(e for e in out.split('\n\n') if e.strip())


def acl_xattr(path, name='system.posix_acl_access'):
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError as exc:
        assert exc.errno == errno.ENODATA, exc
        return None


def mode(path):
    return oct(os.lstat(path).st_mode)


def state(root, *names):
    """What the ACLs of NAMES look like: getfacl, modes, the raw values,
    and whether listxattr names them."""
    out = [getfacl(root, *names)]
    for n in names:
        p = os.path.join(root, n)
        out.append((n, mode(p), acl_xattr(p),
                    sorted(x for x in os.listxattr(p)
                           if x.startswith('system.'))))
    return out


def test_setfacl_getfacl_like_tmpfs(roots):
    for root in roots:
        sh(root, 'echo x > f; echo y > g; mkdir d')
    steps = [
        'setfacl -m u:65534:r f',
        'setfacl -m g:65534:rw f',
        'setfacl -m m::r f',
        'setfacl -x u:65534 f',
        'setfacl -x g:65534 f',
        'setfacl -m u::rwx,g::r,o::- f',  # the mask alone stays stored
        'setfacl -b f',
        'setfacl -m u:65534:rw f',
        'setfacl --set u::rw,g::r,o::r f',  # equivalent to a mode: none
        'setfacl -m u:1:rx,g:65534:w,m::rw g',
        'setfacl -m u:65534:rwx d',
        'setfacl -d -m u:65534:r,g:1:rw d',
    ]
    for step in steps:
        same(roots, lambda r: (sh(r, step), state(r, 'f', 'g', 'd'))[1])
    want = state(roots.ref, 'f', 'g', 'd')
    roots.mount.remount()
    assert state(roots.mnt, 'f', 'g', 'd') == want


def probe(root):
    """What nobody may do to the files test_acl_access_checks made."""
    out = {}
    for name in ('allow', 'none', 'masked', 'denied', 'bygroup', 'rw'):
        p = os.path.join(root, name)
        out[name] = (as_nobody('cat', p).returncode == 0,
                     as_nobody('sh', '-c', f'echo y >> {p}').returncode == 0)
    out['dir'] = as_nobody('ls', os.path.join(root, 'dir')).returncode == 0
    return out


def test_acl_access_checks(roots):
    for root in roots:
        sh(root, '''
            for f in allow none masked denied bygroup rw; do echo x > $f; done
            chmod 600 allow none masked bygroup rw
            setfacl -m u:65534:r allow
            setfacl -m u:65534:rw,m::r masked
            setfacl -m u:65534:- denied        # others may read: not nobody
            setfacl -m g:65534:r bygroup
            setfacl -m u:65534:rw rw
            mkdir -m 700 dir; echo x > dir/in
            setfacl -m u:65534:rx dir
        ''')
    want = {'allow': (True, False), 'none': (False, False),
            'masked': (True, False), 'denied': (False, False),
            'bygroup': (True, False), 'rw': (True, True), 'dir': True}
    assert probe(roots.ref) == want
    assert probe(roots.mnt) == want
    roots.mount.remount()
    assert probe(roots.mnt) == want


def test_chmod_updates_acl(roots):
    for root in roots:
        sh(root, '''
            echo x > f; setfacl -m u:65534:rwx f
            echo x > plain
            mkdir d; setfacl -m u:65534:rx,g:1:w d; setfacl -d -m u:1:r d
        ''')
    for m in (0o640, 0o604, 0o750, 0o600, 0o2755, 0o644):
        same(roots, lambda r: (os.chmod(os.path.join(r, 'f'), m),
                               os.chmod(os.path.join(r, 'plain'), m),
                               os.chmod(os.path.join(r, 'd'), m | 0o100),
                               state(r, 'f', 'plain', 'd'))[-1])
        want = as_nobody('cat', os.path.join(roots.ref, 'f')).returncode
        assert as_nobody('cat', os.path.join(roots.mnt, 'f')).returncode \
            == want
    want = state(roots.ref, 'f', 'plain', 'd')
    roots.mount.remount()
    assert state(roots.mnt, 'f', 'plain', 'd') == want


def tree_state(root):
    """getfacl and mode of everything under ROOT but symlinks (getfacl
    follows them), and the symlinks' modes."""
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames) + sorted(filenames):
            names.append(os.path.relpath(os.path.join(dirpath, n), root))
    acls = getfacl(root, *[n for n in names
                           if not os.path.islink(os.path.join(root, n))])
    return acls, [(n, mode(os.path.join(root, n))) for n in names]


INHERIT = '''
    mkdir d
    setfacl -d -m u:65534:rwx,g:1:rx d
    mkdir d2
    setfacl -d --set u::rwx,g::r-x,o::--- d2        # minimal: no mask
    umask 077
    for x in d d2; do
        touch $x/f; mkdir $x/sub; mkfifo $x/p; ln -s f $x/l
        touch $x/sub/f; mkdir $x/sub/s2
        mkdir -m 0750 $x/m750
        /usr/bin/python3 -c "import os; os.close(os.open('$x/o600',
            os.O_CREAT | os.O_WRONLY, 0o600))"
        /usr/bin/python3 -c "import os; os.close(os.open('$x/o2777',
            os.O_CREAT | os.O_WRONLY, 0o2777))"
    done
    umask 027
    mkdir plain; touch plain/f; mkdir plain/s; mkfifo plain/p
    mkdir -m 0777 plain/m777
    umask 0
    touch plain/u0
'''


def test_default_acl_inherited(roots):
    """A default ACL is inherited by what is created in the directory,
    masked by the mode asked for, the umask ignored; without one the
    umask applies."""
    for root in roots:
        sh(root, INHERIT)
    want = same(roots, tree_state)
    # umask 077 did not apply where a default ACL was inherited: touch's
    # 0666 masked by u::rwx, mask::rwx, o::r-x; and it did where none was
    assert ('d/f', oct(stat.S_IFREG | 0o664)) in want[1]
    assert ('d2/f', oct(stat.S_IFREG | 0o640)) in want[1]
    assert ('plain/f', oct(stat.S_IFREG | 0o640)) in want[1]
    roots.mount.remount()
    assert tree_state(roots.mnt) == want


def test_setfacl_b_and_k_remove(roots):
    for root in roots:
        sh(root, '''
            mkdir d; setfacl -m u:65534:rx d; setfacl -d -m u:65534:r d
            echo x > f; setfacl -m u:65534:r,g:1:w f
        ''')
    for step in ('setfacl -k d', 'setfacl -b d', 'setfacl -b f',
                 'setfacl -b f', 'setfacl -k d'):
        same(roots, lambda r: (sh(r, step), state(r, 'd', 'f'))[1])
    want = state(roots.ref, 'd', 'f')
    roots.mount.remount()
    assert state(roots.mnt, 'd', 'f') == want


def acl_bytes(entries, version=2):
    return struct.pack('<I', version) + b''.join(
        struct.pack('<HHI', tag, perm, ident) for tag, perm, ident in entries)


UNDEF = 0xffffffff
MINIMAL = [(1, 6, UNDEF), (4, 4, UNDEF), (0x20, 4, UNDEF)]


def errno_of(fn):
    try:
        fn()
        return 0
    except OSError as exc:
        return errno.errorcode[exc.errno]


def test_acl_errors_like_tmpfs(roots):
    """Malformed ACLs, a default ACL on a file, removing what is not
    there: the same answers as tmpfs."""
    for root in roots:
        sh(root, 'echo x > f; mkdir d; ln -s f l')

    def attempts(root):
        f, d = os.path.join(root, 'f'), os.path.join(root, 'd')
        acc, dfl = 'system.posix_acl_access', 'system.posix_acl_default'
        cases = [
            (f, dfl, acl_bytes(MINIMAL)),
            (f, acc, b'\x02\x00\x00\x00\x01\x00'),
            (f, acc, acl_bytes(MINIMAL, version=1)),
            (f, acc, acl_bytes([MINIMAL[1], MINIMAL[0], MINIMAL[2]])),
            (f, acc, acl_bytes(MINIMAL[:2])),
            (f, acc, acl_bytes([(1, 6, UNDEF), (2, 4, 5), (4, 4, UNDEF),
                                (0x20, 4, UNDEF)])),  # no mask
            (f, acc, acl_bytes([(1, 8, UNDEF)] + MINIMAL[1:])),
            (d, dfl, acl_bytes(MINIMAL)),
            (f, acc, acl_bytes([(1, 6, UNDEF), (2, 4, 5), (4, 4, UNDEF),
                                (0x10, 6, UNDEF), (0x20, 0, UNDEF)])),
        ]
        out = [errno_of(lambda: os.setxattr(p, n, v)) for p, n, v in cases]
        out.append(state(root, 'f', 'd'))
        out += [errno_of(lambda: os.removexattr(p, n))
                for p, n in ((f, acc), (f, acc), (d, dfl), (d, dfl),
                             (f, dfl))]
        out.append(errno_of(lambda: os.setxattr(
            os.path.join(root, 'l'), acc, acl_bytes(MINIMAL),
            follow_symlinks=False)))
        out.append(state(root, 'f', 'd'))
        return out
    same(roots, attempts)


def test_acl_set_clears_setgid_like_tmpfs(roots):
    """Setting an access ACL clears set-group-ID when the caller is not in
    the file's group and lacks CAP_FSETID (posix_acl_update_mode)."""
    for root in roots:
        for name, gid in (('other', 0), ('ingroup', NOBODY), ('suppl', 1)):
            p = os.path.join(root, name)
            util.run(['sh', '-c', f'echo x > {p}'])
            os.chown(p, NOBODY, gid)
            os.chmod(p, 0o2775)
        util.run(['sh', '-c', f'echo x > {root}/byroot'])
        os.chmod(os.path.join(root, 'byroot'), 0o2775)

    def set_acls(root):
        out = []
        for name in ('other', 'ingroup'):
            res = as_nobody('setfacl', '-m', 'u:1:r',
                            os.path.join(root, name))
            out.append((res.returncode, res.stderr.replace(root, 'ROOT')))
        # in the file's group by a supplementary group
        res = subprocess.run(['setpriv', '--reuid=65534', '--regid=65534',
                              '--groups=1', '--', 'setfacl', '-m', 'u:1:r',
                              os.path.join(root, 'suppl')],
                             capture_output=True, text=True, timeout=60)
        out.append((res.returncode, res.stderr))
        sh(root, 'setfacl -m u:1:r byroot')
        return out + [state(root, *names)]
    names = ('other', 'ingroup', 'suppl', 'byroot')
    want = same(roots, set_acls)
    assert not os.stat(os.path.join(roots.ref, 'other')).st_mode & 0o2000
    assert os.stat(os.path.join(roots.ref, 'suppl')).st_mode & 0o2000
    roots.mount.remount()
    assert state(roots.mnt, *names) == want[-1]


def test_rsync_and_cp_keep_acls(roots):
    """rsync -aHAX and cp -a of a tree with ACLs (made on the tmpfs) into
    the mount succeed, and getfacl -R reads the same as at the source,
    also after a remount."""
    src = os.path.join(roots.ref, 'src')
    os.mkdir(src)
    sh(src, '''
        echo a > a; setfacl -m u:65534:r a
        echo b > b; chmod 640 b; setfacl -m g:65534:rw,m::r b
        echo c > c                                       # no ACL
        mkdir d; setfacl -m u:65534:rwx d; setfacl -d -m u:65534:r,g:1:rx d
        echo e > d/e; mkdir d/sub; echo f > d/sub/f
        ln a hard; ln -s a sym
        # rsync leaves alone a new symlink's time in the same second
        touch -h -d 2020-01-01 sym
    ''', umask=0o027)
    want = getfacl_r(src)
    res = util.run(['rsync', '-aHAX', src + '/',
                    os.path.join(roots.mnt, 'r') + '/'], check=False)
    assert res.returncode == 0, res.stderr
    res = util.run(['cp', '-a', src, os.path.join(roots.mnt, 'c')],
                   check=False)
    assert res.returncode == 0, res.stderr
    for _ in range(2):
        for d in ('r', 'c'):
            assert getfacl_r(os.path.join(roots.mnt, d)) == want
            util.assert_same_tree(src, os.path.join(roots.mnt, d))
        roots.mount.remount()


def test_read_only_mount_reports_acls(roots, make_mount):
    for root in roots:
        sh(root, '''
            echo x > f; chmod 600 f; setfacl -m u:65534:r f
            mkdir d; setfacl -d -m u:65534:rx d
        ''')
    want = state(roots.ref, 'f', 'd')
    roots.mount.stop()
    make_mount(roots.node_dir, roots.mnt, opts='ro,allow_other')
    assert state(roots.mnt, 'f', 'd') == want
    assert as_nobody('cat', os.path.join(roots.mnt, 'f')).returncode == 0
    res = util.run(['setfacl', '-m', 'u:1:r', os.path.join(roots.mnt, 'f')],
                   check=False)
    assert res.returncode != 0 and 'Read-only' in res.stderr, res.stderr


def test_acls_survive_kill(roots):
    """An ACL and the mode it agrees with are committed together when the
    call returns: after kill -9 the mount shows what tmpfs shows."""
    script = '''
        echo x > f; setfacl -m u:65534:rw,g:1:r f; chmod 640 f
        echo x > g; setfacl -m u:65534:r g; setfacl --set u::rw,g::r,o::- g
        mkdir d; setfacl -d -m u:65534:rwx d; echo x > d/in; mkdir d/sub
    '''
    for root in roots:
        sh(root, script, umask=0o077)
    want = state(roots.ref, 'f', 'g', 'd', 'd/in', 'd/sub')
    roots.mount.kill()
    roots.mount.start()
    assert state(roots.mnt, 'f', 'g', 'd', 'd/in', 'd/sub') == want


def test_noacl_refuses_acls_and_keeps_the_umask(public_dir, make_mount,
                                                node_dir):
    """With -o noacl (as ext4's), setfacl fails as it did before ACLs, so
    cp -a and tar fall back to chmod; the umask still applies."""
    mnt = os.path.join(public_dir, 'mnt')
    make_mount(node_dir, mnt, opts='allow_other,noacl')
    f = os.path.join(mnt, 'f')
    sh(mnt, 'echo x > f; mkdir d', umask=0o027)
    assert os.stat(f).st_mode & 0o7777 == 0o640
    assert os.stat(os.path.join(mnt, 'd')).st_mode & 0o7777 == 0o750
    res = subprocess.run(['setfacl', '-m', 'u:nobody:r', f],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and 'not supported' in res.stderr
    assert errno_of(lambda: os.getxattr(f, 'system.posix_acl_access')) \
        == errno.errorcode[errno.EOPNOTSUPP]
    res = as_nobody('cat', f)
    assert res.returncode != 0
