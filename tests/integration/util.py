"""Helpers for the blockfs integration tests: the binary, clusters, mounts and
tree comparisons. Every wait here is bounded; every mount started here is
tracked so that the session can clean up what a failed test left behind."""

import hashlib
import json
import os
import signal
import stat
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..'))

# Sanitizer and crash markers that must never show in a daemon's log.
BAD_LOG_MARKERS = (
    'ERROR: AddressSanitizer',
    'ERROR: LeakSanitizer',
    'LeakSanitizer',
    'runtime error:',
    'ThreadSanitizer',
    'AddressSanitizer:DEADLYSIGNAL',
)

MOUNT_TIMEOUT = float(os.environ.get('BLOCKFS_TEST_MOUNT_TIMEOUT', '60'))
UNMOUNT_TIMEOUT = float(os.environ.get('BLOCKFS_TEST_UNMOUNT_TIMEOUT', '300'))
CMD_TIMEOUT = 120

MiB = 1 << 20
GiB = 1 << 30


def env_int(name, default):
    """Reads an integer knob from the environment."""
    val = os.environ.get(name)
    return int(val) if val not in (None, '') else default


def blockfs_bin():
    """The blockfs binary under test: $BLOCKFS_BIN, else build/fs/blockfs."""
    path = os.environ.get('BLOCKFS_BIN')
    if path:
        return os.path.abspath(path)
    for cand in ('build/fs/blockfs', 'build-it/fs/blockfs'):
        p = os.path.join(REPO, cand)
        if os.access(p, os.X_OK):
            return p
    return os.path.join(REPO, 'build/fs/blockfs')


def daemon_env():
    """Environment for blockfs processes: sanitizers report to stderr and
    keep going where they can, so the log scan sees every report."""
    env = dict(os.environ)
    env.setdefault('ASAN_OPTIONS',
                   'detect_leaks=1:abort_on_error=0:halt_on_error=1:'
                   'detect_stack_use_after_return=0')
    env.setdefault('UBSAN_OPTIONS', 'print_stacktrace=1:halt_on_error=0')
    env['BLOCKFS_BIN'] = blockfs_bin()
    return env


def run(args, check=True, timeout=CMD_TIMEOUT, input=None, **kw):
    """Runs a command with a timeout, capturing text output; with check,
    fails the test showing the output when the exit status is not 0."""
    try:
        res = subprocess.run(args, capture_output=True, text=True,
                             timeout=timeout, input=input,
                             env=kw.pop('env', daemon_env()), **kw)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f'{args!r} did not finish within {timeout}s '
                    f'(output: {exc.stdout!r} {exc.stderr!r})')
    if check and res.returncode != 0:
        pytest.fail(f'{args!r} exited {res.returncode}\n'
                    f'stdout: {res.stdout}\nstderr: {res.stderr}')
    return res


def blockfs(*args, **kw):
    """Runs `blockfs ARGS...`."""
    return run([blockfs_bin(), *args], **kw)


def status(node_dir):
    """`blockfs status NODE_DIR --json`, parsed."""
    res = blockfs('status', node_dir, '--json')
    try:
        return json.loads(res.stdout)
    except ValueError:
        pytest.fail(f'blockfs status --json printed no JSON: {res.stdout!r}')


def create_cluster(base, nodes=1, extra=()):
    """Creates a cluster in BASE (a new directory); returns node1's dir."""
    blockfs('cluster', 'create', str(base), '--nodes', str(nodes), *extra)
    node = os.path.join(str(base), 'node1')
    assert os.path.isdir(node), f'cluster create made no {node}'
    assert os.path.isfile(os.path.join(str(base), 'cluster.conf'))
    return node


def mount_entry(mnt):
    """The /proc/mounts line for MNT as a list of fields, or None."""
    mnt = os.path.realpath(mnt)
    with open('/proc/mounts') as f:
        found = None
        for line in f:
            fields = line.split()
            path = fields[1].replace('\\040', ' ')
            if path == mnt:
                found = fields  # the last one is the visible one
    return found


def is_mounted(mnt):
    return mount_entry(mnt) is not None


def lazy_unmount(mnt):
    """Detaches MNT whatever state its daemon is in."""
    subprocess.run(['fusermount3', '-u', '-z', str(mnt)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=30)
    if is_mounted(mnt):
        subprocess.run(['umount', '-l', str(mnt)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)


def wait_until(pred, timeout, what, interval=0.05):
    """Polls PRED until it is true; fails the test after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() > deadline:
            pytest.fail(f'timed out after {timeout}s waiting for {what}')
        time.sleep(interval)


def check_log(path):
    """Fails if the daemon log at PATH holds a sanitizer report."""
    try:
        with open(path, errors='replace') as f:
            text = f.read()
    except FileNotFoundError:
        return
    for marker in BAD_LOG_MARKERS:
        if marker in text:
            idx = text.index(marker)
            pytest.fail(f'{marker!r} in {path}:\n'
                        f'{text[max(0, idx - 2000):idx + 6000]}')


def log_tail(path, n=60):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-n:])
    except FileNotFoundError:
        return '(no log)'


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def read_pidfile(node_dir):
    try:
        with open(os.path.join(node_dir, 'blockfs.pid')) as f:
            return int(f.read().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def is_blockfs_pid(pid, node_dir):
    """True if PID is a live blockfs process serving NODE_DIR."""
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            argv = f.read().split(b'\0')
    except (FileNotFoundError, ProcessLookupError):
        return False
    node = os.path.realpath(node_dir).encode()
    return any(os.path.realpath(a) == node for a in argv if a) and \
        any(b'blockfs' in a for a in argv[:2])


# Everything started by these tests and not yet stopped: mountpoints and the
# (pid, node_dir) of daemons. The session fixture sweeps what is left.
LIVE_MOUNTS = set()
LIVE_DAEMONS = set()


class Mount:
    """One `blockfs mount NODE_DIR MNT -f` owned by the test: started as a
    child process whose stderr goes to a log file."""

    def __init__(self, node_dir, mnt, log, opts=None):
        self.node_dir = str(node_dir)
        self.mnt = str(mnt)
        self.log = str(log)
        self.opts = opts
        self.proc = None

    def __repr__(self):
        return f'Mount({self.node_dir} on {self.mnt})'

    def start(self):
        assert self.proc is None
        os.makedirs(self.mnt, exist_ok=True)
        args = [blockfs_bin(), 'mount', self.node_dir, self.mnt, '-f']
        if self.opts:
            args += ['-o', self.opts]
        with open(self.log, 'ab') as logf:
            logf.write(f'=== {" ".join(args)}\n'.encode())
            logf.flush()
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf,
                                         env=daemon_env())
        LIVE_MOUNTS.add(self.mnt)
        LIVE_DAEMONS.add((self.proc.pid, self.node_dir))
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not (os.path.ismount(self.mnt) and is_mounted(self.mnt)):
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                pytest.fail(f'blockfs mount exited {rc} before the mount '
                            f'came up; log:\n{log_tail(self.log)}')
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f'mount did not come up within {MOUNT_TIMEOUT}s;'
                            f' log:\n{log_tail(self.log)}')
            time.sleep(0.05)
        fields = mount_entry(self.mnt)
        assert fields[2] == 'fuse.blockfs', f'mount type is {fields[2]}'
        return self

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        """Unmounts cleanly and requires exit status 0 and a clean log."""
        if self.proc is None:
            return
        proc = self.proc
        try:
            if proc.poll() is not None:
                # It died before being asked to: a crash, or a test that
                # stopped it without telling this object.
                lazy_unmount(self.mnt)
                pytest.fail(f'blockfs had exited ({proc.returncode}) before '
                            f'the unmount;'
                            f' log:\n{log_tail(self.log)}')
            res = subprocess.run(['fusermount3', '-u', self.mnt],
                                 capture_output=True, text=True, timeout=60)
            if res.returncode != 0:
                # Busy or dead: detach, then let the daemon go.
                lazy_unmount(self.mnt)
                self._reap(proc)
                pytest.fail(f'fusermount3 -u {self.mnt} failed: '
                            f'{res.stderr.strip()}')
            try:
                rc = proc.wait(timeout=UNMOUNT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._reap(proc)
                pytest.fail(f'blockfs did not exit within {UNMOUNT_TIMEOUT}s '
                            f'of unmount; log:\n{log_tail(self.log)}')
            if rc != 0:
                pytest.fail(f'blockfs exited {rc} after a clean unmount; '
                            f'log:\n{log_tail(self.log)}')
            assert not is_mounted(self.mnt), 'still mounted after unmount'
        finally:
            self._forget(proc)
        check_log(self.log)

    def kill(self, sig=signal.SIGKILL):
        """Kills the daemon (default SIGKILL) and detaches its mount."""
        if self.proc is None:
            return
        proc = self.proc
        try:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=60)
            lazy_unmount(self.mnt)
        finally:
            self._forget(proc)

    def cleanup(self):
        """For teardown after a failure: never raises, leaves nothing."""
        if self.proc is None:
            if is_mounted(self.mnt):
                lazy_unmount(self.mnt)
            return
        proc = self.proc
        try:
            subprocess.run(['fusermount3', '-u', self.mnt],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        except subprocess.TimeoutExpired:
            pass
        if is_mounted(self.mnt):
            lazy_unmount(self.mnt)
        self._reap(proc)
        self._forget(proc)

    def _reap(self, proc):
        for sig, wait in ((None, 30), (signal.SIGTERM, 10),
                          (signal.SIGKILL, 30)):
            if sig is not None:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def _forget(self, proc):
        LIVE_DAEMONS.discard((proc.pid, self.node_dir))
        LIVE_MOUNTS.discard(self.mnt)
        self.proc = None

    def wait_exit(self, timeout=UNMOUNT_TIMEOUT):
        """Waits for the daemon to exit on its own (after a signal or an
        unmount made by the test); returns its exit status. On timeout the
        daemon is detached and killed, and the test fails."""
        proc = self.proc
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cleanup()
            pytest.fail(f'blockfs did not exit within {timeout}s; '
                        f'log:\n{log_tail(self.log)}')
        finally:
            self._forget(proc)

    def remount(self):
        self.stop()
        return self.start()


def sweep():
    """Detaches every mount and kills every daemon the tests left behind."""
    for mnt in list(LIVE_MOUNTS):
        if is_mounted(mnt):
            lazy_unmount(mnt)
        LIVE_MOUNTS.discard(mnt)
    for pid, node in list(LIVE_DAEMONS):
        if pid_alive(pid) and is_blockfs_pid(pid, node):
            os.kill(pid, signal.SIGKILL)
        LIVE_DAEMONS.discard((pid, node))


def sha256_file(path, bufsize=1 << 20):
    h = hashlib.sha256()
    with open(path, 'rb', buffering=0) as f:
        while True:
            buf = f.read(bufsize)
            if not buf:
                break
            h.update(buf)
    return h.hexdigest()


def tree_manifest(root, times=True, owners=True):
    """Maps every path under ROOT to what must survive a copy: type, mode,
    owner, size, mtime (ns), sha256 or symlink target, and hard-link
    groups (by index of the first name seen)."""
    out = {}
    inodes = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            ent = {'mode': st.st_mode}
            if owners:
                ent['uid'] = st.st_uid
                ent['gid'] = st.st_gid
            if stat.S_ISREG(st.st_mode):
                ent['size'] = st.st_size
                ent['sha256'] = sha256_file(p)
                if st.st_nlink > 1:
                    ent['link'] = inodes.setdefault(st.st_ino, rel)
            elif stat.S_ISLNK(st.st_mode):
                ent['target'] = os.readlink(p)
            if times and not stat.S_ISDIR(st.st_mode):
                ent['mtime_ns'] = st.st_mtime_ns
            out[rel] = ent
    return out


def assert_same_tree(src, dst, **kw):
    """Fails with a short list of differences if the trees differ."""
    a = tree_manifest(src, **kw)
    b = tree_manifest(dst, **kw)
    if a == b:
        return
    diffs = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            diffs.append(f'{k}: {a.get(k)} != {b.get(k)}')
    pytest.fail(f'{len(diffs)} differences between {src} and {dst}:\n' +
                '\n'.join(diffs[:30]))


def count_files(root):
    n = 0
    for _, _, files in os.walk(root):
        n += len(files)
    return n


def drop_caches(path=None):
    """Syncs PATH's filesystem (or all) and drops the kernel's clean page,
    dentry and inode caches, so that reads reach the daemon."""
    if path is not None:
        run(['sync', '-f', str(path)], timeout=600)
    else:
        os.sync()
    try:
        with open('/proc/sys/vm/drop_caches', 'w') as f:
            f.write('3\n')
    except OSError:
        pass


def syncfs(path):
    run(['sync', '-f', str(path)], timeout=600)
