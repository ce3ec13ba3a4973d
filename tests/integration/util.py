"""Helpers for the blockfs integration tests: the binary, clusters, mounts and
tree comparisons. Every wait here is bounded; every mount started here is
tracked so that the session can clean up what a failed test left behind."""

import contextlib
import hashlib
import json
import os
import select
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


def tool_path(name):
    """A test-only program built beside blockfs (tests/tools/NAME.c, in
    BUILD/tests/NAME); the test fails when it was not built."""
    path = os.path.join(os.path.dirname(os.path.dirname(blockfs_bin())),
                        'tests', name)
    if not os.access(path, os.X_OK):
        pytest.fail(f'{path} was not built (ninja -C builds it beside '
                    f'blockfs)')
    return path


def create_cluster(base, nodes=1, extra=()):
    """Creates a cluster in BASE (a new directory); returns node1's dir."""
    blockfs('cluster', 'create', str(base), '--nodes', str(nodes), *extra)
    node = os.path.join(str(base), 'node1')
    assert os.path.isdir(node), f'cluster create made no {node}'
    assert os.path.isfile(os.path.join(str(base), 'cluster.conf'))
    return node


def expect_mount_error(node, mnt, *extra, code=1):
    """Runs blockfs mount NODE MNT EXTRA..., which must fail with CODE and
    say why; returns its stderr. A mount that wrongly came up is stopped
    first."""
    res = blockfs('mount', str(node), str(mnt), *extra, check=False)
    if res.returncode == 0 and is_mounted(mnt):
        # Wrongly succeeded: stop it before failing.
        pid = read_pidfile(str(node))
        subprocess.run(['umount', str(mnt)], timeout=60)
        if pid:
            wait_until(lambda: not pid_alive(pid), 60, 'daemon exit')
    assert res.returncode == code, (res.returncode, res.stderr)
    assert res.stderr.strip(), 'an error must say what went wrong'
    return res.stderr

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


def poll(get, pred, timeout, failure, interval):
    """Calls GET every INTERVAL seconds until PRED(value) is true and
    returns that value; after TIMEOUT seconds fails the test with the
    message FAILURE(last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if pred(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(failure(value))
        time.sleep(interval)


def wait_until(pred, timeout, what, interval=0.05):
    """Polls PRED until it is true; fails the test after TIMEOUT seconds."""
    poll(lambda: None, lambda _: pred(), timeout,
         lambda _: f'timed out after {timeout}s waiting for {what}', interval)


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
    child process whose stderr goes to a log file; start() waits on its
    --ready-fd, not by polling for the mount."""

    def __init__(self, node_dir, mnt, log, opts=None):
        self.node_dir = str(node_dir)
        self.mnt = str(mnt)
        self.log = str(log)
        self.opts = opts
        self.proc = None
        # Exit statuses stop() accepts after a clean unmount.
        self.ok_exit = (0,)

    def __repr__(self):
        return f'Mount({self.node_dir} on {self.mnt})'

    def start(self):
        """Starts the daemon with --ready-fd and returns once it has
        written the byte that says the mount is live."""
        assert self.proc is None
        os.makedirs(self.mnt, exist_ok=True)
        ready_r, ready_w = os.pipe()
        args = [blockfs_bin(), 'mount', self.node_dir, self.mnt, '-f',
                f'--ready-fd={ready_w}']
        if self.opts:
            args += ['-o', self.opts]
        try:
            with open(self.log, 'ab') as logf:
                logf.write(f'=== {" ".join(args)}\n'.encode())
                logf.flush()
                self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                             stdout=logf, stderr=logf,
                                             env=daemon_env(),
                                             pass_fds=(ready_w,))
        finally:
            os.close(ready_w)
        LIVE_MOUNTS.add(self.mnt)
        LIVE_DAEMONS.add((self.proc.pid, self.node_dir))
        try:
            self._wait_ready(ready_r)
        finally:
            os.close(ready_r)
        fields = mount_entry(self.mnt)
        assert fields is not None, f'{self.mnt} is not in /proc/mounts'
        assert fields[2] == 'fuse.blockfs', f'mount type is {fields[2]}'
        return self

    def _wait_ready(self, fd):
        """Waits up to MOUNT_TIMEOUT for the byte on the --ready-fd pipe
        FD; fails the test with the log if the pipe closes without it
        (blockfs failed to mount) or the time runs out."""
        readable, _, _ = select.select([fd], [], [], MOUNT_TIMEOUT)
        if not readable:
            self.kill()
            pytest.fail(f'mount did not come up within {MOUNT_TIMEOUT}s;'
                        f' log:\n{log_tail(self.log)}')
        if os.read(fd, 1):
            return
        try:
            rc = self.proc.wait(timeout=MOUNT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f'blockfs mount closed its --ready-fd without '
                        f'saying the mount is live, and did not exit; '
                        f'log:\n{log_tail(self.log)}')
        self.proc = None
        pytest.fail(f'blockfs mount exited {rc} before the mount came up; '
                    f'log:\n{log_tail(self.log)}')

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
            if rc not in self.ok_exit:
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


# ---- clusters of several nodes ---------------------------------------------

SERVE_TIMEOUT = float(os.environ.get('BLOCKFS_TEST_SERVE_TIMEOUT', '60'))
STOP_TIMEOUT = 60

# Ports handed out in this session; never handed out twice, so that a test
# does not meet the TIME_WAIT sockets or a straggler of an earlier one.
_CLAIMED_PORTS = set()
PORT_RANGE = (20000, 32000)  # below Linux's ephemeral range (32768-60999)


def port_free(port):
    """True if PORT can be bound on 127.0.0.1 now."""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(('127.0.0.1', port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_base_port(count, tries=200):
    """A base port P such that P..P+COUNT-1 are all free now and were not
    handed out before in this session; claims them."""
    import random
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(tries):
        base = rng.randrange(PORT_RANGE[0], PORT_RANGE[1] - count)
        ports = range(base, base + count)
        if any(p in _CLAIMED_PORTS for p in ports):
            continue
        if all(port_free(p) for p in ports):
            _CLAIMED_PORTS.update(ports)
            return base
    pytest.fail(f'found no {count} free consecutive ports in {PORT_RANGE}')


def tcp_accepts(port, timeout=0.5):
    import socket
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=timeout):
            return True
    except OSError:
        return False


class PortTaken(Exception):
    """A node could not bind its address (another process has it)."""


class Server:
    """One `blockfs serve NODE_DIR` (a storage node) run by the test in the
    foreground, its stderr appended to LOG."""

    def __init__(self, node_dir, port, log, env=None):
        self.node_dir = str(node_dir)
        self.name = os.path.basename(self.node_dir)
        self.port = port
        self.log = str(log)
        self.env = dict(env or {})
        self.proc = None
        self.killed = False  # stopped by kill(), not (yet) restarted

    def __repr__(self):
        return f'Server({self.name} on 127.0.0.1:{self.port})'

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, wait=True):
        """Starts the node; with WAIT, returns once it listens (else call
        wait_listening)."""
        assert self.proc is None or self.proc.poll() is not None
        args = [blockfs_bin(), 'serve', self.node_dir]
        env = daemon_env()
        env.update(self.env)
        with open(self.log, 'ab') as logf:
            logf.write(f'=== {" ".join(args)} '
                       f'{" ".join(f"{k}={v}" for k, v in self.env.items())}'
                       f'\n'.encode())
            logf.flush()
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf, env=env)
        LIVE_DAEMONS.add((self.proc.pid, self.node_dir))
        self.killed = False
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout=SERVE_TIMEOUT):
        """Until the pidfile names this process and the port accepts TCP
        connections; fails (or raises PortTaken) if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self._forget()
                tail = log_tail(self.log, 20)
                if 'in use' in tail.lower():
                    raise PortTaken(f'{self}: {tail}')
                pytest.fail(f'{self} exited {rc} while starting; log:\n'
                            f'{tail}')
            if read_pidfile(self.node_dir) == self.proc.pid and \
                    tcp_accepts(self.port):
                return
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f'{self} not listening within {timeout}s; '
                            f'log:\n{log_tail(self.log)}')
            time.sleep(0.05)

    def kill(self, sig=signal.SIGKILL):
        """kill -9 (or SIG) and reap it."""
        if self.proc is None:
            return
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
        self.killed = True
        self._forget()

    def stop(self):
        """SIGTERM; it must exit 0 within STOP_TIMEOUT, else it is killed
        and the test fails. A clean log is checked by the caller."""
        if self.proc is None:
            return
        proc = self.proc
        try:
            if proc.poll() is not None:
                pytest.fail(f'{self} had exited ({proc.returncode}) before '
                            f'it was stopped; log:\n{log_tail(self.log)}')
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
                pytest.fail(f'{self} did not exit within {STOP_TIMEOUT}s of '
                            f'SIGTERM; log:\n{log_tail(self.log)}')
            if rc != 0:
                pytest.fail(f'{self} exited {rc} on SIGTERM; log:\n'
                            f'{log_tail(self.log)}')
        finally:
            self._forget(proc)

    def _forget(self, proc=None):
        proc = proc or self.proc
        if proc is not None:
            LIVE_DAEMONS.discard((proc.pid, self.node_dir))
        self.proc = None


def mount_view(mnt):
    """Parses the root's blockfs.nodes attribute ("NAME up|down LATENCY_US"
    lines): {name: (up, latency_us)}."""
    text = os.getxattr(mnt, 'blockfs.nodes').decode()
    view = {}
    for line in text.splitlines():
        name, state, lat = line.split()
        assert state in ('up', 'down'), line
        view[name] = (state == 'up', int(lat))
    return view


class Cluster:
    """A cluster of N nodes made by `blockfs cluster create` in BASE: node1
    mounted at MNT (unless mount=False), nodes 2..N run as `blockfs serve`.
    Nodes are numbered from 1 as in the cluster file."""

    def __init__(self, base, mnt, logdir, nodes, redundancy=None,
                 client=False):
        self.base = str(base)
        self.mnt = str(mnt)
        self.logdir = str(logdir)
        self.n = nodes
        self.redundancy = redundancy
        # node1 of weight 0: a pure client that holds no fragments, so
        # every storage node can be killed while the mount stays up.
        self.client = client
        self.base_port = None
        self.servers = {}
        self.mount = None

    def __repr__(self):
        return f'Cluster({self.n} nodes in {self.base}, ports ' \
               f'{self.base_port}..{self.base_port + self.n - 1})'

    def node_dir(self, i):
        return os.path.join(self.base, f'node{i}')

    def port(self, i):
        return self.base_port + i - 1

    def create(self):
        self.base_port = free_base_port(self.n)
        extra = ['--base-port', str(self.base_port)]
        if self.redundancy:
            extra += ['--redundancy', self.redundancy]
        create_cluster(self.base, self.n, extra)
        if self.client:
            self.set_weight(1, 0)

    def set_weight(self, node, weight):
        """Sets NODE's weight in every copy of the cluster file (before
        the nodes start)."""
        paths = [os.path.join(self.base, 'cluster.conf')] + \
            [os.path.join(self.node_dir(i), 'cluster.conf')
             for i in range(1, self.n + 1)]
        for path in paths:
            with open(path) as f:
                lines = f.read().split('\n')
            section = None
            for k, line in enumerate(lines):
                if line.startswith('['):
                    section = line.strip()
                elif section == f'[node node{node}]' and \
                        line.startswith('weight'):
                    lines[k] = f'weight = {weight}'
            with open(path, 'w') as f:
                f.write('\n'.join(lines))

    def start_servers(self, env=None):
        """Starts nodes 2..N; ENV maps a node number to extra environment."""
        env = env or {}
        for i in range(2, self.n + 1):
            s = Server(self.node_dir(i), self.port(i),
                       os.path.join(self.logdir, f'serve-node{i}.log'),
                       env=env.get(i))
            self.servers[i] = s
            s.start()

    def start_mount(self, opts=None):
        self.mount = Mount(self.node_dir(1), self.mnt,
                           os.path.join(self.logdir, 'mount-node1.log'),
                           opts=opts)
        return self.mount.start()

    def kill(self, *nodes):
        """kill -9 of serve nodes."""
        for i in nodes:
            self.servers[i].kill()

    def restart(self, *nodes):
        """Starts killed serve nodes again (same node dir, same port), all
        at once, and waits until each listens."""
        for i in nodes:
            self.servers[i].start(wait=False)
        for i in nodes:
            self.servers[i].wait_listening()

    def status(self, node=1):
        return status(self.node_dir(node))

    def mount_view(self):
        """The mount's own view of the nodes (the root's blockfs.nodes
        attribute): {name: (up, latency_us)}."""
        return mount_view(self.mnt)

    def wait_mount_sees(self, pred, timeout, what, interval=0.1):
        """Polls the mount's view until PRED(view) is true; fails after
        TIMEOUT seconds, showing the last view. Returns that view."""
        return poll(self.mount_view, pred, timeout,
                    lambda view: f'timed out after {timeout}s waiting for '
                    f'the mount to see {what}; it sees {view}', interval)

    def wait_status(self, pred, timeout, what, node=1, interval=0.5):
        """Polls `blockfs status` until PRED(status) is true; fails after
        TIMEOUT seconds, showing the last status. Returns that status."""
        return poll(lambda: self.status(node), pred, timeout,
                    lambda st: f'timed out after {timeout}s waiting for '
                    f'{what}; last status: {json.dumps(st)}', interval)

    def teardown(self):
        """Unmounts node1, then stops every server; returns the errors.
        Nodes a test killed are started again first, so that the unmount
        can drain its uploads instead of waiting for the dead."""
        errors = []
        for i, s in self.servers.items():
            if s.killed:
                try:
                    s.start()
                except BaseException as exc:
                    errors.append(f'restarting {s} for teardown: {exc}')
        if self.mount is not None:
            try:
                self.mount.stop()
            except BaseException as exc:
                errors.append(f'{self.mount}: {exc}')
                self.mount.cleanup()
            try:
                check_log(self.mount.log)
            except BaseException as exc:
                errors.append(str(exc))
        for s in self.servers.values():
            try:
                s.stop()
            except BaseException as exc:
                errors.append(str(exc))
                if s.proc is not None:
                    s.kill()
            try:
                check_log(s.log)
            except BaseException as exc:
                errors.append(str(exc))
        return errors


def node_states(st):
    """{node name: up} from a status."""
    return {n['name']: n['up'] for n in st.get('nodes', [])}


@contextlib.contextmanager
def tmpfs(path, size_mb, opts=''):
    """A tmpfs of SIZE_MB mounted on PATH (made if missing) for the
    with block; detached when it ends, whatever happened."""
    os.makedirs(path, exist_ok=True)
    run(['mount', '-t', 'tmpfs', '-o',
         f'size={size_mb}m' + (f',{opts}' if opts else ''), 'tmpfs',
         str(path)], timeout=30)
    try:
        yield str(path)
    finally:
        subprocess.run(['umount', '-l', str(path)], timeout=30)


def room(path):
    """Bytes free for unprivileged writers on PATH's file system."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def write_fsync(path, data, off=0, flags=os.O_CREAT | os.O_TRUNC):
    """Writes DATA at OFF into PATH (opened write-only with FLAGS), 1 MiB
    a write, and fsyncs: 0, or the errno that stopped it (the open's
    too)."""
    try:
        fd = os.open(path, os.O_WRONLY | flags, 0o644)
    except OSError as exc:
        return exc.errno
    err = 0
    try:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view[:MiB], off)
            view = view[n:]
            off += n
        os.fsync(fd)
    except OSError as exc:
        err = exc.errno
    finally:
        try:
            os.close(fd)
        except OSError as exc:
            err = err or exc.errno
    return err
