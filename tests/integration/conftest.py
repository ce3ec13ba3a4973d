"""Fixtures for the blockfs integration tests: a fresh one-node cluster per
test, a real FUSE mount owned by the test, and source data made once per
session. Every fixture unmounts and stops what it started, even when the test
fails.

Knobs (environment):
  BLOCKFS_BIN                 binary under test (default build/fs/blockfs)
  BLOCKFS_TEST_BIG_MB         total MiB of large random files, and the size of
                              the file copied ten times for dedup (default 1024)
  BLOCKFS_TEST_TREE_FILES     minimum files in the `cp -a` tree (default 5000)
  BLOCKFS_TEST_SRC_DIR        where source data is made (default /dev/shm)
  BLOCKFS_TEST_SERVE_TIMEOUT  seconds a `blockfs serve` node may take to
                              listen (default 60)
  BLOCKFS_TEST_REQUIRE_HELPER fail, not skip, when mount.blockfs is not
                              installed in /sbin (set by contrib/run-tests.sh)
  BLOCKFS_TEST_REQUIRE_FAULT  fail, not skip, when BLOCKFS_BIN was built
                              without -Dfault_injection=true (set by
                              contrib/run-tests.sh)
"""

import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading

import pytest

import util
from util import MiB


def fuse_unusable_reason():
    if not shutil.which('fusermount3'):
        return 'fusermount3 not found (apt-get install fuse3)'
    if not os.path.exists('/dev/fuse'):
        return '/dev/fuse does not exist (FUSE kernel module not loaded?)'
    try:
        fd = os.open('/dev/fuse', os.O_RDWR)
    except OSError as exc:
        return f'cannot open /dev/fuse: {exc.strerror}'
    os.close(fd)
    if os.getuid() != 0:
        return 'these tests mount, chown and drop caches: run them as root'
    return None


def pytest_collection_modifyitems(config, items):
    reason = fuse_unusable_reason()
    if reason:
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope='session', autouse=True)
def sweep_leftovers():
    """Last line of defence: whatever a test left mounted or running."""
    yield
    util.sweep()


def _test_timeout_seconds(config):
    """The per-test timeout of pytest-timeout, if it is in use."""
    for get in (lambda: config.getoption('timeout'),
                lambda: config.getini('timeout')):
        try:
            val = get()
        except (ValueError, KeyError):
            continue
        if val not in (None, ''):
            return float(val)
    return None


@pytest.fixture(autouse=True)
def watchdog(request):
    """A test stuck in a syscall on a hung mount cannot be interrupted by
    pytest-timeout's SIGALRM (FUSE waits only for fatal signals). Shortly
    before that timeout, kill the daemons this test started: the kernel
    aborts their connections, the syscall fails with ENOTCONN, the test
    fails, and its fixtures clean up."""
    limit = _test_timeout_seconds(request.config)
    if not limit:
        yield
        return
    before = set(util.LIVE_DAEMONS)

    def fire():
        for pid, node in set(util.LIVE_DAEMONS) - before:
            if util.pid_alive(pid) and util.is_blockfs_pid(pid, node):
                print(f'watchdog: killing blockfs pid {pid} ({node}): the '
                      f'test is about to time out', file=sys.stderr)
                os.kill(pid, 9)

    timer = threading.Timer(max(limit - 30, limit * 0.9), fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.fixture(scope='session')
def src_base(tmp_path_factory):
    """A directory for source data, on tmpfs when there is room, so that
    reading the sources costs little next to writing into blockfs."""
    want = 4 * util.env_int('BLOCKFS_TEST_BIG_MB', 1024) * MiB
    base = os.environ.get('BLOCKFS_TEST_SRC_DIR', '/dev/shm')
    try:
        st = os.statvfs(base)
        usable = os.access(base, os.W_OK) and \
            st.f_bavail * st.f_frsize > want
    except OSError:
        usable = False
    if not usable:
        yield str(tmp_path_factory.mktemp('src'))
        return
    d = tempfile.mkdtemp(prefix='blockfs-test-src-', dir=base)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def write_random(path, size, rng=None, bufsize=4 * MiB):
    with open(path, 'wb') as f:
        left = size
        while left > 0:
            n = min(left, bufsize)
            f.write(rng.randbytes(n) if rng else os.urandom(n))
            left -= n


@pytest.fixture(scope='session')
def big_files(src_base):
    """Large random files, BLOCKFS_TEST_BIG_MB MiB in total."""
    total = util.env_int('BLOCKFS_TEST_BIG_MB', 1024)
    count = util.env_int('BLOCKFS_TEST_BIG_FILES', 4)
    d = os.path.join(src_base, 'big')
    os.makedirs(d)
    paths = []
    for i in range(count):
        p = os.path.join(d, f'random{i}.bin')
        write_random(p, total * MiB // count)
        paths.append(p)
    return paths


@pytest.fixture(scope='session')
def big_file(src_base, big_files):
    """One random file of BLOCKFS_TEST_BIG_MB MiB."""
    p = os.path.join(src_base, 'one-big.bin')
    with open(p, 'wb') as out:
        for part in big_files:
            with open(part, 'rb') as f:
                shutil.copyfileobj(f, out, 4 * MiB)
    return p


@pytest.fixture(scope='session')
def big_tree(src_base):
    """A tree of at least BLOCKFS_TEST_TREE_FILES files: /usr/include when it
    is big enough, else a generated one."""
    want = util.env_int('BLOCKFS_TEST_TREE_FILES', 5000)
    if util.count_files('/usr/include') >= want:
        return '/usr/include'
    d = os.path.join(src_base, 'gen-tree')
    make_tree(d, want, seed=5000)
    return d


@pytest.fixture(scope='session')
def small_tree(src_base):
    """A varied tree of ~1,500 files: sizes from 0 to a few MiB, odd names,
    modes, symlinks (also dangling), hard links, empty directories."""
    d = os.path.join(src_base, 'small-tree')
    make_tree(d, 1500, seed=42)
    return d


def make_tree(root, nfiles, seed):
    rng = random.Random(seed)
    os.makedirs(root)
    dirs = [root]
    for i in range(max(1, nfiles // 25)):
        parent = rng.choice(dirs)
        name = rng.choice(['d', 'dir ', 'Ünïcødé-', 'x.y.']) + str(i)
        p = os.path.join(parent, name)
        os.mkdir(p)
        dirs.append(p)
    os.mkdir(os.path.join(root, 'empty-dir'))
    sizes = [0, 1, 100, 4095, 4096, 4097, 65536, 100_000, 300_000]
    files = []
    for i in range(nfiles):
        parent = rng.choice(dirs)
        p = os.path.join(parent, f'f{i}' + rng.choice(['', '.c', ' space', '.h']))
        r = rng.random()
        if r < 0.01:
            size = rng.randint(1 * MiB, 3 * MiB)
        else:
            size = rng.choice(sizes) if r < 0.3 else rng.randint(0, 20000)
        with open(p, 'wb') as f:
            # Half compressible text, half random, so that some chunks repeat.
            if rng.random() < 0.5:
                f.write((b'line %d of a text file\n' % i) * (size // 24 + 1))
                f.truncate(size)
            else:
                f.write(rng.randbytes(size))
        os.chmod(p, rng.choice([0o644, 0o600, 0o755, 0o444, 0o640]))
        t = rng.randint(1_000_000_000, 1_700_000_000)
        os.utime(p, ns=(t * 10**9 + rng.randint(0, 10**9 - 1),
                        t * 10**9 + rng.randint(0, 10**9 - 1)))
        files.append(p)
    for i in range(30):
        target = rng.choice(files)
        link = os.path.join(rng.choice(dirs), f'sym{i}')
        os.symlink(os.path.relpath(target, os.path.dirname(link)), link)
        # A time in the past: rsync 3.5 (Debian 12's security update)
        # leaves a new symlink's time alone when it falls in the same
        # second as the source's, so links made just now would differ.
        t = rng.randint(1_000_000_000, 1_700_000_000) * 10**9
        os.utime(link, ns=(t, t), follow_symlinks=False)
    os.symlink('does/not/exist', os.path.join(root, 'dangling'))
    os.utime(os.path.join(root, 'dangling'), ns=(10**18, 10**18),
             follow_symlinks=False)
    for i in range(20):
        target = rng.choice(files)
        os.link(target, os.path.join(rng.choice(dirs), f'hard{i}'))
    for i, dpath in enumerate(dirs[1:]):
        if i % 7 == 0:
            os.chmod(dpath, 0o700)


@pytest.fixture
def plain_build(monkeypatch):
    """The test runs on the build without sanitizers that BLOCKFS_RSS_BIN
    names, when set (contrib/run-tests.sh sets it): for the tests that
    move gigabytes through paths the other tests run under ASan on less
    data. List it first among the test's fixtures."""
    plain = os.environ.get('BLOCKFS_RSS_BIN')
    if plain:
        monkeypatch.setenv('BLOCKFS_BIN', plain)
    return plain


@pytest.fixture
def cluster_dir(tmp_path):
    return tmp_path / 'cluster'


@pytest.fixture
def node_dir(cluster_dir):
    """node1 of a fresh one-node cluster."""
    return util.create_cluster(cluster_dir)


@pytest.fixture
def mnt(tmp_path):
    p = tmp_path / 'mnt'
    p.mkdir()
    return str(p)


@pytest.fixture
def make_mount(tmp_path):
    """Factory for Mount objects; stops every one of them at teardown,
    cleanly when possible (asserting exit status 0 and a clean log)."""
    mounts = []

    def factory(node_dir, mnt, opts=None, start=True):
        m = util.Mount(node_dir, mnt, tmp_path / f'blockfs-{len(mounts)}.log',
                       opts=opts)
        mounts.append(m)
        return m.start() if start else m

    yield factory
    errors = []
    for m in reversed(mounts):
        try:
            m.stop()
        except BaseException as exc:  # pytest.fail raises BaseException
            errors.append(f'{m}: {exc}')
            m.cleanup()
        # The log of a killed daemon must be clean too.
        try:
            util.check_log(m.log)
        except BaseException as exc:
            errors.append(str(exc))
    if errors:
        pytest.fail('teardown: ' + '\n'.join(errors))


@pytest.fixture
def mount(make_mount, node_dir, mnt):
    """A live mount of a fresh cluster's node1 at MNT."""
    return make_mount(node_dir, mnt)


@pytest.fixture
def public_dir():
    """A directory others may traverse (pytest's tmp dirs are 0700)."""
    d = tempfile.mkdtemp(prefix='blockfs-test-pub-', dir='/tmp')
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        for sub in os.listdir(d):
            p = os.path.join(d, sub)
            if util.is_mounted(p):
                util.lazy_unmount(p)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def helper_installed():
    """Skips (or fails, in CI) when mount(8) cannot find mount.blockfs."""
    if not os.access('/sbin/mount.blockfs', os.X_OK):
        msg = ('/sbin/mount.blockfs is not installed '
               '(contrib/run-tests.sh installs it)')
        if os.environ.get('BLOCKFS_TEST_REQUIRE_HELPER'):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture
def fault_injection():
    """Skips (or fails, in CI) when the binary under test was built without
    -Dfault_injection=true: its servers ignore BLOCKFS_FAULT_CORRUPT_GET."""
    out = subprocess.run([util.blockfs_bin(), '--version'],
                         capture_output=True, text=True, timeout=30).stdout
    if 'fault injection: compiled in' not in out:
        msg = (f'{util.blockfs_bin()} has no fault injection (build it '
               f'with meson setup -Dfault_injection=true)')
        if os.environ.get('BLOCKFS_TEST_REQUIRE_FAULT'):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture
def background_mounts():
    """Tracks daemons started in the background (blockfs mount without -f,
    or mount -t blockfs): list of (node_dir, mnt). At teardown each is
    unmounted and its daemon, found through NODE_DIR/blockfs.pid, must exit
    and leave a clean log; on failure it is detached and killed."""
    started = []
    yield started
    errors = []
    for node, m in reversed(started):
        pid = util.read_pidfile(node)
        if util.is_mounted(m):
            res = subprocess.run(['umount', m], capture_output=True, text=True,
                                 timeout=60)
            if res.returncode != 0:
                errors.append(f'umount {m}: {res.stderr.strip()}')
                util.lazy_unmount(m)
        if pid and util.is_blockfs_pid(pid, node):
            try:
                util.wait_until(lambda: not util.pid_alive(pid),
                                util.UNMOUNT_TIMEOUT, f'blockfs pid {pid} to exit')
            except BaseException as exc:
                errors.append(str(exc))
                if util.is_blockfs_pid(pid, node):
                    os.kill(pid, 9)
        try:
            util.check_log(os.path.join(node, 'blockfs.log'))
        except BaseException as exc:
            errors.append(str(exc))
    if errors:
        pytest.fail('teardown: ' + '\n'.join(errors))


def pytest_report_header(config):
    return [f'blockfs binary: {util.blockfs_bin()}',
            f'BLOCKFS_TEST_BIG_MB={util.env_int("BLOCKFS_TEST_BIG_MB", 1024)}']



@pytest.fixture
def cluster(tmp_path):
    """Factory: cluster(nodes=4, redundancy='replicas:3', opts='...',
    env={2: {'VAR': '1'}}, mount=True) creates a cluster on free loopback
    ports in tmp_path/clusterK, starts `blockfs serve` for nodes 2..N (logs
    in tmp_path/logsK/serve-nodeI.log), waits until each listens, and mounts
    node1 (with client=True: of weight 0, holding no fragments)
    at tmp_path/mntK with OPTS (log tmp_path/logsK/mount-node1.log),
    K counting the clusters made by the test from 0. Returns a
    util.Cluster. At teardown, whatever happened: nodes the test killed are
    restarted, node1 is unmounted (exit status 0 and a clean log required),
    then every server gets SIGTERM (exit 0 within a minute, else SIGKILL)
    and its log must hold no sanitizer report."""
    made = []

    def factory(nodes=4, redundancy='replicas:3', opts=None, env=None,
                mount=True, client=False):
        for attempt in range(3):
            n = len(made)
            logdir = tmp_path / f'logs{n}'
            logdir.mkdir()
            c = util.Cluster(tmp_path / f'cluster{n}', tmp_path / f'mnt{n}',
                             logdir, nodes, redundancy, client=client)
            made.append(c)
            c.create()
            try:
                c.start_servers(env)
            except util.PortTaken as exc:
                # Another process took a port between the probe and the
                # bind: start over on other ports.
                print(f'cluster: {exc}; retrying on other ports',
                      file=sys.stderr)
                errors = c.teardown()
                if errors:
                    pytest.fail('teardown: ' + '\n'.join(errors))
                continue
            if mount:
                c.start_mount(opts)
            return c
        pytest.fail('could not start a cluster: ports kept being taken')

    yield factory
    errors = []
    for c in reversed(made):
        errors += c.teardown()
    if errors:
        pytest.fail('teardown: ' + '\n'.join(errors))


@pytest.fixture
def tmpfs_ref(tmp_path):
    """A tmpfs of its own, the reference filesystem for tests that compare
    blockfs with a local one; unmounted at teardown."""
    with util.tmpfs(tmp_path / 'ref', 256) as d:
        yield d
