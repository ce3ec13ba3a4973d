"""Extended attribute namespaces on a real mount, beside a tmpfs reference
(tmpfs keeps user.*, trusted.* and security.* as ext4 does): which names
are accepted, and what listxattr shows to callers without CAP_SYS_ADMIN."""

import errno
import os
import subprocess


import util
from test_acl import roots  # noqa: F401 (the fixture)
from test_acl import same

NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
          '--']
# root without CAP_SYS_ADMIN: dropped from the bounding set, the program
# run gets no such capability
ROOT_NO_ADMIN = ['setpriv', '--bounding-set=-sys_admin', '--']

PROBE = r'''
import errno, os, sys
op, path, name = sys.argv[1:4]
try:
    if op == 'list':
        print(' '.join(sorted(os.listxattr(path))))
    elif op == 'get':
        print(os.getxattr(path, name))
    elif op == 'set':
        os.setxattr(path, name, b'v')
    elif op == 'remove':
        os.removexattr(path, name)
except OSError as exc:
    print(errno.errorcode[exc.errno])
'''


def attempt(op, path, name):
    """OP (list, get, set, remove) of NAME on PATH in this process: what
    it gave, or the errno's name."""
    try:
        if op == 'list':
            return ' '.join(sorted(os.listxattr(path)))
        if op == 'get':
            return str(os.getxattr(path, name))
        if op == 'set':
            os.setxattr(path, name, b'v')
        else:
            os.removexattr(path, name)
        return ''
    except OSError as exc:
        return errno.errorcode[exc.errno]


def probe(prefix, op, path, name=''):
    """attempt(OP, PATH, NAME) run as PREFIX says (in this process for an
    empty PREFIX)."""
    if not prefix:
        return attempt(op, path, name)
    res = subprocess.run([*prefix, '/usr/bin/python3', '-c', PROBE, op,
                          path, name], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


NAMES = ['foo.bar', 'system.foo', 'system.posix_acl_other', 'user.',
         'trusted.', 'security.', 'user', 'USER.x', 'os2.x', 'user.ok',
         'trusted.ok', 'security.ok', 'user.' + 'x' * 250]


def test_xattr_names_like_tmpfs(roots):  # noqa: F811
    """setxattr, getxattr and removexattr of names in no namespace, of a
    namespace prefix alone, and of good names, as root: the same answers
    as tmpfs (EOPNOTSUPP, EINVAL, success)."""
    for root in roots:
        util.run(['sh', '-c', f'echo x > {root}/f'])

    def attempts(root):
        f = os.path.join(root, 'f')
        out = []
        for op in ('set', 'get', 'remove', 'get'):
            out += [(op, n, probe([], op, f, n)) for n in NAMES]
        return out
    got = same(roots, attempts)
    assert ('set', 'foo.bar', errno.errorcode[errno.EOPNOTSUPP]) in got
    assert ('set', 'user.', 'EINVAL') in got
    res = util.run(['setfattr', '-n', 'foo.bar', '-v', '1',
                    os.path.join(roots.mnt, 'f')], check=False)
    assert res.returncode != 0 and 'not supported' in res.stderr


def test_trusted_hidden_without_cap_sys_admin(roots):  # noqa: F811
    """trusted.* names are listed to callers with CAP_SYS_ADMIN only: not
    to nobody, not to root without the capability; reading or writing one
    without it fails as on tmpfs."""
    for root in roots:
        f = os.path.join(root, 'f')
        util.run(['sh', '-c', f'echo x > {f}; chmod 666 {f}'])
        for name in ('user.u', 'trusted.t', 'security.s'):
            os.setxattr(f, name, b'v')
        os.mkdir(os.path.join(root, 'd'))
        os.setxattr(os.path.join(root, 'd'), 'trusted.dir', b'v')
        os.chmod(os.path.join(root, 'd'), 0o777)

    def views(root, change=True):
        f, d = os.path.join(root, 'f'), os.path.join(root, 'd')
        out = []
        for who in (NOBODY, ROOT_NO_ADMIN, []):
            out += [probe(who, 'list', f), probe(who, 'list', d),
                    probe(who, 'get', f, 'trusted.t'),
                    probe(who, 'get', f, 'user.u')]
            if change and who:  # refused: nothing changes
                out += [probe(who, 'set', f, 'trusted.new'),
                        probe(who, 'remove', f, 'trusted.t')]
        return out
    got = same(roots, views)
    assert got[0] == 'security.s user.u'  # nobody
    assert got[6] == 'security.s user.u'  # root without CAP_SYS_ADMIN
    assert got[12] == 'security.s trusted.t user.u'
    assert got[13] == 'trusted.dir'
    roots.mount.remount()
    assert views(roots.mnt, False) == views(roots.ref, False)
