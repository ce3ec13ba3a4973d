"""The `blockfs` command and mount.blockfs as users and mount(8) call them:
help, cluster creation, status, mount modes and options, error paths."""

import errno
import json
import os
import signal

import pytest

import util
from util import blockfs

HELPER_SRC = os.path.join(util.REPO, 'mount-helper', 'mount.blockfs')


@pytest.mark.parametrize('cmd', [
    [], ['cluster'], ['cluster', 'create'], ['mount'], ['status'],
])
def test_help(cmd):
    res = blockfs(*cmd, '--help')
    assert res.returncode == 0
    assert 'usage' in (res.stdout + res.stderr).lower()


def test_helper_help():
    res = util.run([HELPER_SRC, '--help'])
    assert 'usage' in res.stdout.lower()


@pytest.mark.parametrize('args', [
    [], ['no-such-command'], ['mount'], ['mount', '/nonexistent'],
    ['cluster', 'create'], ['status'],
])
def test_usage_errors_exit_2(args):
    res = blockfs(*args, check=False)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.strip(), 'a usage error must say what is wrong'


def test_cluster_create(cluster_dir):
    node = util.create_cluster(cluster_dir)
    assert os.path.isdir(node)
    # A second create must refuse rather than overwrite keys and config.
    conf = os.path.join(cluster_dir, 'cluster.conf')
    before = open(conf, 'rb').read()
    res = blockfs('cluster', 'create', str(cluster_dir), '--nodes', '1',
                  check=False)
    assert res.returncode == 1
    assert res.stderr.strip()
    assert open(conf, 'rb').read() == before


def test_cluster_create_redundancy_and_ports(tmp_path):
    node = util.create_cluster(tmp_path / 'c', nodes=1,
                               extra=['--redundancy', 'replicas:1',
                                      '--base-port', '24100'])
    assert os.path.isdir(node)


def test_status_unmounted(make_mount, node_dir, mnt):
    """status of a node that is not mounted: empty when new; what was
    written once it has been mounted and unmounted."""
    st = util.status(node_dir)
    for key in ('node', 'mounted', 'blocks', 'stored_bytes', 'logical_bytes',
                'dedup_ratio', 'disk_bytes'):
        assert key in st, f'status --json lacks {key}: {st}'
    assert st['mounted'] is False
    assert st['blocks'] == 0 and st['stored_bytes'] == 0, st
    assert isinstance(st['dedup_ratio'], (int, float))
    m = make_mount(node_dir, mnt)
    with open(os.path.join(mnt, 'f'), 'wb') as f:
        f.write(os.urandom(3 * util.MiB))
    m.stop()
    st = util.status(node_dir)
    assert st['mounted'] is False
    assert st['blocks'] >= 1, st
    assert 3 * util.MiB <= st['stored_bytes'] < 4 * util.MiB, st
    assert 3 * util.MiB <= st['logical_bytes'] < 4 * util.MiB, st
    # The human form works too.
    assert blockfs('status', node_dir).stdout.strip()


def test_status_mounted(mount):
    with open(os.path.join(mount.mnt, 'f'), 'wb') as f:
        f.write(os.urandom(3 * util.MiB))
    util.syncfs(mount.mnt)
    st = util.status(mount.node_dir)
    assert st['mounted'] is True
    assert st['blocks'] >= 1
    assert 3 * util.MiB <= st['stored_bytes'] < 4 * util.MiB
    assert 3 * util.MiB <= st['logical_bytes'] < 4 * util.MiB


def test_foreground_sigterm_unmounts(make_mount, node_dir, mnt):
    m = make_mount(node_dir, mnt)
    with open(os.path.join(mnt, 'kept'), 'w') as f:
        f.write('kept across SIGTERM\n')
    m.proc.send_signal(signal.SIGTERM)
    rc = m.wait_exit()
    assert not util.is_mounted(mnt)
    # What was written must survive, whatever the exit status says.
    make_mount(node_dir, mnt)
    assert open(os.path.join(mnt, 'kept')).read() == 'kept across SIGTERM\n'
    assert rc == 0, f'blockfs exited {rc} after SIGTERM'
    util.check_log(m.log)


def test_pidfile_while_mounted(mount):
    assert util.read_pidfile(mount.node_dir) == mount.pid


def background_mount(node, mnt, background_mounts, *extra):
    """`blockfs mount` without -f: returns once the mount is live."""
    background_mounts.append((str(node), str(mnt)))
    res = blockfs('mount', str(node), str(mnt), *extra, check=False)
    assert res.returncode == 0, res.stderr
    # No polling: the command returns only once the mount is live.
    assert os.path.ismount(mnt)
    assert util.mount_entry(mnt)[2] == 'fuse.blockfs'
    pid = util.read_pidfile(str(node))
    assert pid and util.is_blockfs_pid(pid, str(node))
    return pid


def test_background_mount_and_umount(node_dir, mnt, background_mounts):
    pid = background_mount(node_dir, mnt, background_mounts)
    with open(os.path.join(mnt, 'a'), 'w') as f:
        f.write('hello\n')
    assert os.path.exists(os.path.join(node_dir, 'blockfs.log'))
    util.run(['umount', mnt])
    util.wait_until(lambda: not util.pid_alive(pid), util.UNMOUNT_TIMEOUT,
                    'the daemon to exit after umount')
    assert not util.is_mounted(mnt)
    pid = background_mount(node_dir, mnt, background_mounts)
    assert open(os.path.join(mnt, 'a')).read() == 'hello\n'
    # SIGTERM makes the daemon unmount itself.
    os.kill(pid, signal.SIGTERM)
    util.wait_until(lambda: not util.pid_alive(pid), util.UNMOUNT_TIMEOUT,
                    'the daemon to exit after SIGTERM')
    assert not util.is_mounted(mnt)


def test_fstab_only_options_accepted(node_dir, mnt, background_mounts):
    background_mount(node_dir, mnt, background_mounts, '-o',
                     'defaults,_netdev,nofail,noauto,auto,user,users,nouser,'
                     'x-systemd.automount,rw')


def test_mount_options(make_mount, node_dir, mnt):
    m = make_mount(node_dir, mnt, opts='chunker=fixed,chunk_size=64K,'
                   'cache_size=64M,fsname=blockfs-test-fs')
    assert util.mount_entry(mnt)[0] == 'blockfs-test-fs'
    data = os.urandom(5 * util.MiB + 123)
    with open(os.path.join(mnt, 'f'), 'wb') as f:
        f.write(data)
    m.remount()
    assert open(os.path.join(mnt, 'f'), 'rb').read() == data
    m.stop()
    m.opts = 'chunker=fastcdc'
    m.start()
    assert open(os.path.join(mnt, 'f'), 'rb').read() == data


def test_ro_mount(make_mount, node_dir, mnt):
    m = make_mount(node_dir, mnt)
    os.mkdir(os.path.join(mnt, 'd'))
    with open(os.path.join(mnt, 'd', 'f'), 'w') as f:
        f.write('read only\n')
    m.stop()
    m.opts = 'ro'
    m.start()
    assert 'ro' in util.mount_entry(mnt)[3].split(',')
    assert open(os.path.join(mnt, 'd', 'f')).read() == 'read only\n'
    for action in (lambda: open(os.path.join(mnt, 'd', 'f'), 'w'),
                   lambda: open(os.path.join(mnt, 'new'), 'w'),
                   lambda: os.mkdir(os.path.join(mnt, 'e')),
                   lambda: os.unlink(os.path.join(mnt, 'd', 'f')),
                   lambda: os.rename(os.path.join(mnt, 'd'),
                                     os.path.join(mnt, 'd2')),
                   lambda: os.chmod(os.path.join(mnt, 'd', 'f'), 0o600),
                   lambda: os.setxattr(os.path.join(mnt, 'd', 'f'),
                                       'user.x', b'1')):
        with pytest.raises(OSError) as exc:
            action()
        assert exc.value.errno == errno.EROFS


def test_mount_missing_node_dir(tmp_path, mnt):
    err = util.expect_mount_error(tmp_path / 'no-such-node', mnt)
    assert 'no-such-node' in err
    assert not util.is_mounted(mnt)


def test_mount_missing_mountpoint(node_dir, tmp_path):
    util.expect_mount_error(node_dir, tmp_path / 'no-such-mnt')


def test_mount_onto_file(node_dir, tmp_path):
    f = tmp_path / 'file'
    f.write_text('x')
    util.expect_mount_error(node_dir, f)


def test_mount_onto_nonempty_dir(node_dir, mnt):
    with open(os.path.join(mnt, 'something'), 'w') as f:
        f.write('x')
    util.expect_mount_error(node_dir, mnt)
    assert not util.is_mounted(mnt)


def test_mount_onto_mounted_dir(mount, tmp_path):
    other = util.create_cluster(tmp_path / 'other')
    util.expect_mount_error(other, mount.mnt)
    # The first mount is unharmed.
    with open(os.path.join(mount.mnt, 'ok'), 'w') as f:
        f.write('ok')


def test_node_in_use(mount, tmp_path):
    second = tmp_path / 'mnt2'
    second.mkdir()
    util.expect_mount_error(mount.node_dir, second)
    assert not util.is_mounted(second)


def test_mount_t_blockfs(node_dir, mnt, helper_installed, background_mounts):
    background_mounts.append((node_dir, mnt))
    util.run(['mount', '-t', 'blockfs', node_dir, mnt])
    assert util.mount_entry(mnt)[2] == 'fuse.blockfs'
    with open(os.path.join(mnt, 'x'), 'w') as f:
        f.write('through mount(8)\n')
    pid = util.read_pidfile(node_dir)
    util.run(['umount', mnt])
    util.wait_until(lambda: not util.pid_alive(pid), util.UNMOUNT_TIMEOUT,
                    'the daemon to exit after umount')
    util.run(['mount', '-t', 'blockfs', '-o', 'ro', node_dir, mnt])
    assert 'ro' in util.mount_entry(mnt)[3].split(',')
    assert open(os.path.join(mnt, 'x')).read() == 'through mount(8)\n'
    with pytest.raises(OSError) as exc:
        open(os.path.join(mnt, 'y'), 'w')
    assert exc.value.errno == errno.EROFS


@pytest.mark.parametrize('opts,ro', [
    ('defaults,_netdev,nofail', False),
    ('defaults,noauto,user,x-systemd.requires=network-online.target,'
     'comment=test', False),
    ('ro,_netdev,nofail', True),
    # Generic VFS options people put in fstab; the kernel applies them.
    ('defaults,noatime,nosuid,nodev,noexec', False),
])
def test_fstab_line(node_dir, mnt, tmp_path, helper_installed,
                    background_mounts, opts, ro):
    fstab = tmp_path / 'fstab'
    fstab.write_text(f'# test fstab\n{node_dir}  {mnt}  blockfs  {opts}  0  0\n')
    background_mounts.append((node_dir, mnt))
    util.run(['mount', '-T', str(fstab), mnt])
    fields = util.mount_entry(mnt)
    assert fields[2] == 'fuse.blockfs'
    assert ('ro' in fields[3].split(',')) == ro
    if not ro:
        with open(os.path.join(mnt, 'f'), 'w') as f:
            f.write('fstab\n')


def test_helper_direct(node_dir, mnt, background_mounts):
    """mount-helper/mount.blockfs from the source tree, called the way
    mount(8) calls it, finds blockfs through $BLOCKFS_BIN."""
    background_mounts.append((node_dir, mnt))
    util.run([HELPER_SRC, node_dir, mnt, '-o',
              'rw,defaults,_netdev,nofail,x-foo=bar,comment=c'])
    assert util.mount_entry(mnt)[2] == 'fuse.blockfs'


def test_helper_fake_mounts_nothing(node_dir, mnt):
    res = util.run([HELPER_SRC, node_dir, mnt, '-fv', '-o', 'defaults,ro'])
    assert not util.is_mounted(mnt)
    assert f'mount {node_dir} {mnt} -o ro' in res.stderr


def test_status_json_is_json(node_dir):
    res = blockfs('status', node_dir, '--json')
    json.loads(res.stdout)
