"""The filesystem survives its machine (issue 23): a tree of every kind of
file, committed, then the mounting node's directory lost but for its keys
and the cluster file; and the same after kill -9 of the writer in the
middle of a copy."""

import os
import random
import signal
import subprocess
import time

import util
from test_commit import commit, rsync_differences

BIG_MB = 512          # of file data, in a few large files
SMALL_FILES = 20000   # in one directory


def make_big_tree(root, rng):
    """At least 5,000 files and 512 MiB: hard links, symlinks, xattrs,
    sparse files, a FIFO, odd modes and owners, a directory of 20,000
    entries."""
    big = os.path.join(root, 'big')
    os.makedirs(big)
    left = BIG_MB << 20
    i = 0
    while left > 0:
        n = min(left, rng.choice([96, 128, 160]) << 20)
        with open(os.path.join(big, f'data{i}'), 'wb') as f:
            f.write(rng.randbytes(1 << 20) * (n >> 20))
        left -= n
        i += 1
    many = os.path.join(root, 'many')
    os.mkdir(many)
    for k in range(SMALL_FILES):
        with open(os.path.join(many, f'small-file-{k:06d}'), 'wb') as f:
            f.write(k.to_bytes(4, 'little') * (k % 9))
    odd = os.path.join(root, 'odd')
    os.mkdir(odd)
    with open(os.path.join(odd, 'sparse'), 'wb') as f:
        f.seek(64 << 20)
        f.write(b'after a 64 MiB hole')
        f.truncate(100 << 20)
    with open(os.path.join(odd, 'linked'), 'wb') as f:
        f.write(b'three names')
    os.link(os.path.join(odd, 'linked'), os.path.join(odd, 'linked2'))
    os.link(os.path.join(odd, 'linked'), os.path.join(many, 'linked3'))
    os.symlink('../big/data0', os.path.join(odd, 'to-data0'))
    os.symlink('nowhere', os.path.join(odd, 'dangling'))
    os.mkfifo(os.path.join(odd, 'fifo'))
    os.chown(os.path.join(odd, 'linked'), 4321, 8765)
    os.chown(os.path.join(odd, 'to-data0'), 99, 98, follow_symlinks=False)
    os.chmod(os.path.join(odd, 'sparse'), 0o4711)
    os.chmod(odd, 0o1777)
    os.setxattr(os.path.join(odd, 'linked'), 'user.a', b'1')
    os.setxattr(os.path.join(odd, 'linked'), 'user.b', os.urandom(2000))
    os.setxattr(big, 'user.dir', b'attribute of a directory')


def lose_node_dir(node_dir):
    """Everything of the node directory but its keys and cluster file."""
    keep = {'curve.key', 'curve.pub', 'cluster.conf', 'node.conf'}
    for name in os.listdir(node_dir):
        if name not in keep:
            util.run(['rm', '-rf', os.path.join(node_dir, name)])


def stop_everything(c):
    c.mount.stop()
    for s in c.servers.values():
        s.stop()


def start_everything(c, opts):
    for s in c.servers.values():
        s.start()
    c.start_mount(opts=opts)


def test_big_tree_survives_the_loss_of_its_writer(plain_build, cluster,
                                                  tmp_path):
    """The issue's recovery test, on the build without sanitizers when
    BLOCKFS_RSS_BIN names one (512 MiB and 20,000 entries); the same
    rebuild runs under ASan in test_commit on smaller trees."""
    rng = random.Random(23)
    src = tmp_path / 'src'
    src.mkdir()
    make_big_tree(str(src), rng)
    c = cluster(nodes=4, redundancy='replicas:3', opts='commit_interval=0')
    util.run(['rsync', '-aHAX', f'{src}/', f'{c.mnt}/'], timeout=3600)
    commit(c.mnt)
    stop_everything(c)
    lose_node_dir(c.node_dir(1))
    start_everything(c, 'commit_interval=0')
    assert rsync_differences(src, c.mnt) == []


def test_kill_during_a_copy_keeps_the_last_head_and_fsyncs(cluster,
                                                           tmp_path):
    """kill -9 of the writer while rsync copies: after the node's
    directory is lost too, every file of the recovered tree that has its
    final name is whole (rsync renames a file into place once written,
    so a commit holds it whole or not at all), and every file fsync'd
    before the kill is there."""
    rng = random.Random(5)
    src = tmp_path / 'src'
    src.mkdir()
    make_big_tree(str(src), rng)
    c = cluster(nodes=4, redundancy='replicas:3', opts='commit_interval=1')
    synced = {}
    copy = subprocess.Popen(['rsync', '-aHAX', f'{src}/', f'{c.mnt}/'],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        # fsync'd files, a few at a time, while the copy runs
        deadline = time.monotonic() + 600
        k = 0
        while copy.poll() is None and time.monotonic() < deadline:
            name = f'synced-{k}'
            data = rng.randbytes(rng.randrange(1, 300000))
            fd = os.open(os.path.join(c.mnt, name),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            synced[name] = data
            k += 1
            if k == 6:
                break
            time.sleep(1)
        util.wait_until(lambda: copy.poll() is not None or
                        os.path.exists(os.path.join(c.mnt, 'many')), 600,
                        'the copy reaches the 20,000-entry directory')
        c.mount.kill(signal.SIGKILL)
    finally:
        copy.kill()
        copy.wait()
    assert synced, 'the copy ended before anything was fsync\'d'
    for s in c.servers.values():
        s.stop()
    lose_node_dir(c.node_dir(1))
    start_everything(c, 'commit_interval=0')
    for name, data in synced.items():
        with open(os.path.join(c.mnt, name), 'rb') as f:
            assert f.read() == data, f'{name}, fsync\'d, differs'
    whole = 0
    for dirpath, _, files in os.walk(c.mnt):
        for name in files:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, c.mnt)
            if rel in synced or name.startswith('.'):
                continue  # fsync'd above; rsync's temporary files
            s = os.path.join(src, rel)
            assert os.path.lexists(s), f'{rel} is in no source'
            if os.path.islink(s) or not os.path.isfile(s):
                continue
            assert util.sha256_file(p) == util.sha256_file(s), \
                f'{rel} is not whole'
            whole += 1
    assert whole > 0
