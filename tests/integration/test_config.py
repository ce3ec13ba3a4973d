"""Configuration that is wrong is refused, saying what is wrong and where:
the cluster file, the node's keys, `cluster create` over old nodes, the
redundancy, mount options; and what users meet around a mount: other
users, stale pid files, `status`, files past 1 PiB, the unmount drain with
every peer down, and `blockfs sync`."""

import errno
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import util
from util import blockfs


def as_nobody(*cmd):
    return subprocess.run(['setpriv', '--reuid=65534', '--regid=65534',
                           '--clear-groups', '--', *cmd],
                          capture_output=True, text=True, timeout=60,
                          env=util.daemon_env())


def mount_refused(node, mnt, *opts, code=1):
    """`blockfs mount NODE MNT [-o OPTS]` must fail with CODE and a message;
    a mount that wrongly came up is taken down before the test fails.
    Returns stderr."""
    args = ['mount', str(node), str(mnt)]
    if opts:
        args += ['-o', ','.join(opts)]
    res = blockfs(*args, check=False)
    if util.is_mounted(mnt):
        pid = util.read_pidfile(str(node))
        subprocess.run(['umount', str(mnt)], timeout=60)
        if pid:
            util.wait_until(lambda: not util.pid_alive(pid),
                            util.UNMOUNT_TIMEOUT, 'the daemon to exit')
    assert res.returncode == code, (res.returncode, res.stderr)
    assert not util.is_mounted(mnt)
    assert res.stderr.strip(), 'a refusal must say what is wrong'
    return res.stderr


def two_node_cluster(base):
    """A cluster of two nodes (never started); node1's directory."""
    return util.create_cluster(base, nodes=2,
                               extra=['--base-port',
                                      str(util.free_base_port(2))])


def edit(path, fn):
    with open(path) as f:
        text = f.read()
    with open(path, 'w') as f:
        f.write(fn(text))


# ---- the cluster file ------------------------------------------------------

CLUSTER_FILE_DAMAGE = {
    'empty': (lambda t: '', 'no [cluster] id'),
    'truncated': (lambda t: t[:t.index('[node node2]') + 40],
                  'has no public_key'),
    'truncated_at_a_node': (lambda t: t[:t.index('[node node2]')],
                            'nodes = 2, but the file lists 1'),
    'duplicated': (lambda t: t + t, 'set again'),
    'without_this_node': (lambda t: t.replace('[node node1]',
                                              '[node nodeX]'),
                          'node node1'),
}


@pytest.mark.parametrize('damage', sorted(CLUSTER_FILE_DAMAGE))
def test_damaged_cluster_file_refused(tmp_path, mnt, damage):
    """A node of a cluster never mounts as a standalone filesystem."""
    node = two_node_cluster(tmp_path / 'c')
    conf = os.path.join(node, 'cluster.conf')
    fn, want = CLUSTER_FILE_DAMAGE[damage]
    edit(conf, fn)
    err = mount_refused(node, mnt)
    assert conf in err, err
    assert want in err, err
    assert 'cluster.conf.example' not in err


def test_cluster_file_error_names_line_and_setting(node_dir, mnt):
    conf = os.path.join(node_dir, 'cluster.conf')
    edit(conf, lambda t: t.replace('redundancy = replicas:1',
                                   'redundancy = replicas:one'))
    line = open(conf).read().split('\n').index('redundancy = replicas:one')
    err = mount_refused(node_dir, mnt)
    assert f'{conf}:{line + 1}:' in err, err
    assert "redundancy 'replicas:one'" in err, err
    assert 'cluster.conf.example' not in err


def test_mismatched_curve_key_refused(tmp_path, mnt):
    node = two_node_cluster(tmp_path / 'c')
    other = os.path.join(str(tmp_path / 'c'), 'node2')
    shutil.copy(os.path.join(other, 'curve.key'),
                os.path.join(node, 'curve.key'))
    err = mount_refused(node, mnt)
    assert 'curve.key does not match' in err, err
    assert os.path.join(node, 'curve.pub') in err


def cluster_id(conf):
    with open(conf) as f:
        return re.search(r'^id = (\S+)$', f.read(), re.M).group(1)


def test_other_clusters_file_refused(tmp_path, mnt):
    """A node belongs to the cluster it was created in (its node.conf says
    which): a cluster file that carries another cluster's id is refused by
    mount and serve, naming the file and both ids, even when it lists the
    node with its own key."""
    node = two_node_cluster(tmp_path / 'a')
    other = two_node_cluster(tmp_path / 'b')
    own_id = cluster_id(os.path.join(node, 'cluster.conf'))
    other_id = cluster_id(os.path.join(other, 'cluster.conf'))
    assert own_id != other_id
    node2 = os.path.join(str(tmp_path / 'a'), 'node2')
    for n in (node, node2):
        edit(os.path.join(n, 'cluster.conf'),
             lambda t: t.replace(f'id = {own_id}', f'id = {other_id}'))
    err = mount_refused(node, mnt)
    conf = os.path.join(node, 'cluster.conf')
    assert conf in err and own_id in err and other_id in err, err
    res = blockfs('serve', node2, check=False, timeout=30)
    assert res.returncode == 1, (res.returncode, res.stderr)
    conf = os.path.join(node2, 'cluster.conf')
    assert conf in res.stderr and own_id in res.stderr and \
        other_id in res.stderr, res.stderr


def test_cluster_create_keeps_existing_nodes(tmp_path):
    base = tmp_path / 'c'
    node = util.create_cluster(base, nodes=2)
    keys = {p: open(p, 'rb').read()
            for p in (os.path.join(node, 'curve.key'),
                      os.path.join(node, 'curve.pub'))}
    os.unlink(base / 'cluster.conf')
    res = blockfs('cluster', 'create', str(base), '--nodes', '2',
                  check=False)
    assert res.returncode == 1, res.stderr
    assert node in res.stderr and 'refusing' in res.stderr, res.stderr
    for p, data in keys.items():
        assert open(p, 'rb').read() == data, f'{p} was replaced'


def test_unmeetable_redundancy_refused(node_dir, mnt):
    err = mount_refused(node_dir, mnt, 'redundancy=replicas:2')
    assert 'redundancy=replicas:2' in err and 'needs 2 nodes' in err, err


# ---- mount options ---------------------------------------------------------

@pytest.mark.parametrize('opt,want', [
    ('ro=0', 'ro is a flag'),
    ('verify=no', 'verify is a flag'),
    ('allow_other=1', 'allow_other is a flag'),
    ('chunker', "'chunker': it needs a value"),
    ('chunker=rabin', 'chunker must be fastcdc or fixed'),
    ('sync_timeout=10s', 'sync_timeout must be whole seconds'),
    ('no_such_option', "unknown mount option 'no_such_option'"),
])
def test_mount_option_errors_name_the_option(node_dir, mnt, opt, want):
    err = mount_refused(node_dir, mnt, 'rw', opt, code=2)
    assert f"'{opt}'" in err, err
    assert want in err, err


def test_sync_option_makes_writes_synchronous(make_mount, node_dir, mnt):
    """-o sync reaches the kernel: every write(2) is fsync'ed, so what a
    write returned survives kill -9 of the daemon with the file open."""
    m = make_mount(node_dir, mnt, opts='sync')
    assert 'sync' in util.mount_entry(mnt)[3].split(','), \
        util.mount_entry(mnt)
    fd = os.open(os.path.join(mnt, 'f'), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert os.write(fd, b'written synchronously\n') == 22
        m.kill()
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    make_mount(node_dir, mnt)
    assert open(os.path.join(mnt, 'f'), 'rb').read() == \
        b'written synchronously\n'


def test_root_mount_serves_other_users(public_dir, make_mount, node_dir):
    """A root mount is open to every user (allow_other), the kernel
    checking modes; noallow_other keeps it to root."""
    mnt = os.path.join(public_dir, 'mnt')
    os.mkdir(mnt)
    m = make_mount(node_dir, mnt)
    os.chmod(mnt, 0o755)
    with open(os.path.join(mnt, 'public'), 'w') as f:
        f.write('everyone reads')
    os.chmod(os.path.join(mnt, 'public'), 0o644)
    with open(os.path.join(mnt, 'secret'), 'w') as f:
        f.write('root only')
    os.chmod(os.path.join(mnt, 'secret'), 0o600)
    res = as_nobody('cat', os.path.join(mnt, 'public'))
    assert res.returncode == 0 and res.stdout == 'everyone reads', \
        res.stderr
    res = as_nobody('cat', os.path.join(mnt, 'secret'))
    assert res.returncode != 0 and 'Permission denied' in res.stderr
    m.stop()
    m.opts = 'noallow_other'
    m.start()
    res = as_nobody('ls', mnt)
    assert res.returncode != 0 and 'Permission denied' in res.stderr
    assert open(os.path.join(mnt, 'public')).read() == 'everyone reads'


# ---- the node directory and status -----------------------------------------

def test_other_user_told_permission_denied(public_dir):
    node = util.create_cluster(os.path.join(public_dir, 'c'))
    res = as_nobody(util.blockfs_bin(), 'status', node)
    assert res.returncode == 1
    assert 'Permission denied' in res.stderr, res.stderr
    assert 'not a blockfs node directory' not in res.stderr


def test_stale_pid_file_does_not_block(make_mount, node_dir, mnt):
    # A live process that is not blockfs: this test's own.
    with open(os.path.join(node_dir, 'blockfs.pid'), 'w') as f:
        f.write(f'{os.getpid()}\n')
    m = make_mount(node_dir, mnt)
    assert util.read_pidfile(node_dir) == m.pid
    assert util.status(node_dir)['mounted'] is True


def test_status_json_escapes_names(node_dir):
    name = 'odd"name\\1'
    edit(os.path.join(node_dir, 'node.conf'),
         lambda t: t.replace('name = node1', f'name = {name}'))
    for conf in (os.path.join(node_dir, 'cluster.conf'),
                 os.path.join(os.path.dirname(node_dir), 'cluster.conf')):
        edit(conf, lambda t: t.replace('[node node1]', f'[node {name}]'))
    st = util.status(node_dir)
    assert st['node'] == name


def test_status_of_a_served_node(tmp_path):
    port = util.free_base_port(1)
    node = util.create_cluster(tmp_path / 'c',
                               extra=['--base-port', str(port)])
    s = util.Server(node, port, tmp_path / 'serve.log')
    s.start()
    try:
        st = util.status(node)
        assert st['mounted'] is False and st['served'] is True, st
        assert st['pid'] == s.pid
        text = blockfs('status', node).stdout
        assert 'mounted:       yes' not in text, text
        assert 'served' in text, text
    finally:
        s.stop()
    util.check_log(s.log)


# ---- file size -------------------------------------------------------------

def test_writes_past_1_pib(make_mount, node_dir, mnt):
    """A write the kernel accepts is stored, up to the kernel's limit
    for FUSE (2^63-1), where write(2) itself stops: never close."""
    make_mount(node_dir, mnt)
    path = os.path.join(mnt, 'huge')
    offsets = [(1 << 50) + 4096, 1 << 62, (1 << 63) - 20]
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for off in offsets:
            assert os.pwrite(fd, b'0123456789', off) == 10
        # Up to the kernel's own limit; a write past it fails in write(2)
        # (EINVAL: the kernel refuses its end before asking the daemon).
        assert os.pwrite(fd, b'xxxx', (1 << 63) - 5) == 4
        with pytest.raises(OSError) as exc:
            os.pwrite(fd, b'x', (1 << 63) - 1)
        assert exc.value.errno in (errno.EFBIG, errno.EINVAL)
        os.fsync(fd)
    finally:
        os.close(fd)  # must not fail
    assert os.stat(path).st_size == (1 << 63) - 1
    util.drop_caches(mnt)
    fd = os.open(path, os.O_RDONLY)
    try:
        for off in offsets:
            assert os.pread(fd, 10, off) == b'0123456789'
        assert os.pread(fd, 4, (1 << 63) - 5) == b'xxxx'
        assert os.pread(fd, 10, 1 << 61) == bytes(10)  # a hole
    finally:
        os.close(fd)


# ---- unmount and sync in a cluster -----------------------------------------

def test_unmount_with_every_peer_down_waits_one_sync_timeout(cluster):
    tmo = 4
    c = cluster(nodes=2, redundancy='replicas:2', opts=f'sync_timeout={tmo}')
    c.kill(2)
    with open(os.path.join(c.mnt, 'f'), 'wb') as f:
        f.write(os.urandom(2 * util.MiB))
    m = c.mount
    proc = m.proc
    start = time.monotonic()
    util.run(['fusermount3', '-u', c.mnt])
    # Meanwhile the node is held, and a mount is told why.
    other = os.path.join(c.base, 'mnt-other')
    os.mkdir(other)
    try:
        util.poll(lambda: blockfs('mount', c.node_dir(1), other,
                                  check=False),
                  lambda res: 'still uploading' in res.stderr, tmo,
                  lambda res: f'a mount during the drain was told: '
                  f'{res.stderr}', 0.1)
    finally:
        if util.is_mounted(other):
            pid = util.read_pidfile(c.node_dir(1))
            util.lazy_unmount(other)
            if pid and util.is_blockfs_pid(pid, c.node_dir(1)):
                os.kill(pid, signal.SIGKILL)
    rc = m.wait_exit(timeout=120)
    took = time.monotonic() - start
    # One sync_timeout, and some seconds to close; three would be 12+ s.
    assert took < 2 * tmo + 2, f'the daemon took {took:.1f}s to exit'
    assert rc == 1, f'exit status {rc}: blocks were left queued'
    log = open(m.log).read()
    assert re.search(r'blocks not uploaded.*stay queued', log), \
        util.log_tail(m.log)
    assert 'node2' in log.split('blocks not uploaded')[-1].split('\n')[0]
    assert not util.pid_alive(proc.pid)
    # The queue is kept: with node2 back, the next mount uploads it.
    c.restart(2)
    c.start_mount(f'sync_timeout={tmo}')
    c.wait_status(lambda st: st.get('pending_uploads') == 0, 60,
                  'the queue to drain')


def test_blockfs_sync_waits_for_the_cluster(cluster):
    c = cluster(nodes=2, redundancy='replicas:2', opts='sync_timeout=3')
    res = blockfs('sync', '--help')
    assert res.returncode == 0 and 'usage' in res.stdout.lower()
    with open(os.path.join(c.mnt, 'a'), 'wb') as f:
        f.write(os.urandom(util.MiB))
    res = blockfs('sync', c.mnt, check=False)
    assert res.returncode == 0, res.stderr
    assert c.status()['pending_uploads'] == 0
    c.kill(2)
    with open(os.path.join(c.mnt, 'b'), 'wb') as f:
        f.write(os.urandom(util.MiB))
    res = blockfs('sync', c.mnt, check=False)
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert 'sync_timeout' in res.stderr, res.stderr
    c.restart(2)
    res = blockfs('sync', c.mnt, check=False, timeout=120)
    assert res.returncode == 0, res.stderr
    res = blockfs('sync', '/', check=False)
    assert res.returncode == 1 and 'not a blockfs mount' in res.stderr
