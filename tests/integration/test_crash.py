"""Crash consistency (issue 11): the seeded random workload of crashmodel.py
with kill -9 of the mount daemon, of storage nodes, or both, at random
moments, on a single node and on an ec:4+2 cluster; and the same workload
without kills, checked exactly against a reference directory after dropping
the kernel's caches and after remounts (the overwrite/truncate family).
The model and what it allows after a crash are described in crashmodel.py.

CI runs 2 x 55 kill points on a single node and 2 x 45 on ec:4+2 (200 in
all), and 2 x 15 + 8 checks without kills. On the ec:4+2 cluster the mount
has cache_size=1 (reads come from the nodes) and sync_timeout=3 (fsync
fails fast while nodes are down); after nodes or the daemon are started
again the run waits until the mount sees every node up and nothing is left
to upload, so that a fsync with every node up does not time out behind
that backlog. At most two storage nodes are killed at once: ec:4+2 must
lose nothing then, so with only nodes killed the tree must equal the model
exactly.

The corruption family (issue 20): at a quarter of the kill points, bytes
are flipped in the store of what was killed before it starts again. In a
storage node (its blob, table or write-ahead log files) the cluster must
still read right, and a node holding fewer fragments than before must
count them as lost (blockfs status); such a node stays short (no repair
yet), so later kill points count it as one of the two failures ec:4+2
tolerates. In the mount's own block bytes (blob files) a read must come
out right (healed from the cluster) or fail with EIO while the daemon's
log names the file and the block; such files are then removed and the
workload goes on. BLOCKFS_CRASH_ROT=0 turns the family off.

Every failure names its seed, the operation index at which the check
failed, and a command line that replays it. Knobs (environment):
  BLOCKFS_CRASH_SEED        seeds to run (comma-separated), instead of each
                            test's fixed ones
  BLOCKFS_CRASH_OPS         stop at the first check after this many
                            operations (replays a failure; rounds are then
                            not limited)
  BLOCKFS_CRASH_ROUNDS      kill points (or checks, without kills) per test
  BLOCKFS_CRASH_KEEP_GOING  1: with kills, after a failed check take what is
                            there as the new state and carry on; report all
                            at the end (the family without kills stops)
contrib/crash-soak.sh runs these tests for hours with new seeds.
"""

import collections
import errno
import json
import os
import random
import shlex
import subprocess
import sys
import time

import pytest

import crashmodel as cm
import util

NODES = 7                   # ec:4+2: node1 a client of weight 0, 2..7 store
STORAGE = list(range(2, NODES + 1))
OP_TIMEOUT = 300            # one operation, however large
READY_TIMEOUT = 60          # the mount sees every node up again
SYNC_TIMEOUT = 3            # fsync's EIO while nodes are down comes fast
DRAIN_TIMEOUT = 120         # uploads queued while nodes were down go out
COMMIT_TIMEOUT = 120        # `blockfs commit` before a clean unmount
SETTLE_TRIES = 4            # commits tried before a clean unmount
EC_OPTS = f'cache_size=1,sync_timeout={SYNC_TIMEOUT}'


def env_seeds(default):
    val = os.environ.get('BLOCKFS_CRASH_SEED')
    if val:
        return [int(s) for s in val.replace(' ', '').split(',') if s]
    return default


ROUNDS = util.env_int('BLOCKFS_CRASH_ROUNDS', 0)
# The corruption family: at this share of kill points, bytes are flipped
# in the store of what was killed (BLOCKFS_CRASH_ROT=0: never).
ROT = os.environ.get('BLOCKFS_CRASH_ROT', '1') not in ('', '0')
P_ROT = 0.25
MAX_OPS = util.env_int('BLOCKFS_CRASH_OPS', 0)
KEEP_GOING = os.environ.get('BLOCKFS_CRASH_KEEP_GOING', '') not in ('', '0')


def db_dir(node_dir):
    return os.path.join(node_dir, 'db')


class SingleNode:
    """A one-node cluster mounted at MNT: only the daemon can be killed."""
    storage = []

    def __init__(self, make_mount, node_dir, mnt):
        self.m = make_mount(node_dir, mnt)
        self.mnt = mnt
        self.node_dir = node_dir

    @property
    def log(self):
        return self.m.log

    def rot_mount(self, rng):
        """Bit rot in the stopped mount's block bytes (blob files)."""
        return cm.rot(db_dir(self.node_dir), ('.blob',), rng)

    def kill_daemon(self):
        self.m.kill()

    def start_daemon(self):
        self.m.start()

    def kill_nodes(self, nodes):
        raise AssertionError('a single node has no storage nodes')

    def restart_nodes(self, nodes, rotted=()):
        raise AssertionError('a single node has no storage nodes')

    def settle(self):
        pass

    def rebuild_damaged(self):
        pass

    def wait_ready(self):
        pass

    def remount(self):
        self.m.remount()


class EcCluster:
    """ec:4+2 over six storage nodes (test_ec.py's cluster), mounted with
    cache_size=1 so that reads come from the nodes, and a short
    sync_timeout so that fsync fails quickly while nodes are down."""
    storage = STORAGE

    def __init__(self, cluster):
        self.c = cluster(nodes=NODES, redundancy='ec:4+2', opts=EC_OPTS,
                         client=True)
        self.mnt = self.c.mnt
        self.rotted = set()  # nodes whose store the harness damaged
        self.rebuilt = []    # every node started empty, in order

    @property
    def log(self):
        return self.c.mount.log

    def rot_mount(self, rng):
        return cm.rot(db_dir(self.c.node_dir(1)), ('.blob',), rng)

    def rot_node(self, node, rng):
        """Bit rot in a stopped storage node's database: its blob files
        (fragment bytes), table files or write-ahead log."""
        return cm.rot(db_dir(self.c.node_dir(node)), ('.blob', '.sst',
                                                       '.log'), rng)

    def fragments(self, node):
        """(fragments stored, fragments it knows it lost) of NODE."""
        for n in self.c.status()['nodes']:
            if n['name'] == f'node{node}':
                return n.get('fragments', 0), n.get('lost_fragments', 0)
        raise AssertionError(f'node{node} is not in the status')

    def kill_daemon(self):
        self.c.mount.kill()

    def start_daemon(self):
        self.c.mount.start()

    def kill_nodes(self, nodes):
        self.c.kill(*nodes)

    def restart_nodes(self, nodes, rotted=()):
        """Starts NODES again. A node of ROTTED whose damaged database
        keeps it from starting must say so; its database is then moved
        aside and it starts empty, as after a new disk. Returns the nodes
        so rebuilt."""
        rebuilt = []
        self.rotted |= set(rotted)
        for i in nodes:
            self.c.servers[i].start(wait=False)
        for i in nodes:
            try:
                self.c.servers[i].wait_listening()
            except pytest.fail.Exception:
                if i not in rotted:
                    raise
                with open(self.c.servers[i].log, errors='replace') as f:
                    said = f.read().rsplit('\n=== ', 1)[-1]
                if 'is damaged' not in said and 'Corruption:' not in said:
                    raise
                self.move_db_aside(i)
                self.c.servers[i].start()
                rebuilt.append(i)
        self.rebuilt += rebuilt
        return rebuilt

    def move_db_aside(self, i):
        db = db_dir(self.c.node_dir(i))
        os.rename(db, db + f'.damaged-{time.monotonic_ns()}')

    def rebuild_damaged(self):
        """A rotted node may start, and only later stop taking fragments,
        when a compaction meets its damaged table file; it then says its
        database is damaged (net/server/server.c). Such a node is rebuilt as
        one that cannot start: stopped, its database moved aside, started
        empty, so that the mount uploads what it held again. Returns the
        nodes rebuilt."""
        rebuilt = []
        for i in sorted(self.rotted):
            s = self.c.servers[i]
            if s.proc is None:
                continue
            with open(s.log, errors='replace') as f:
                said = f.read().rsplit('\n=== ', 1)[-1]
            if "node's database is damaged" not in said:
                continue
            s.kill()
            self.move_db_aside(i)
            s.start()
            rebuilt.append(i)
        self.rebuilt += rebuilt
        return rebuilt

    def wait_ready(self):
        """Every node up in the mount's view, and nothing left to upload
        (what was queued while nodes were down, or before the daemon was
        killed): so that a fsync with every node up does not meet the
        short sync_timeout behind that backlog."""
        self.c.wait_mount_sees(lambda v: len(v) == NODES and
                               all(up for up, _ in v.values()),
                               READY_TIMEOUT, 'every node up')
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            st = self.c.status()
            if st.get('pending_uploads') == 0:
                return
            if self.rebuild_damaged():
                deadline = time.monotonic() + DRAIN_TIMEOUT
            if time.monotonic() > deadline:
                pytest.fail(f'timed out after {DRAIN_TIMEOUT}s waiting for '
                            f'pending_uploads == 0; last status: '
                            f'{json.dumps(st)}')
            time.sleep(0.2)

    def settle(self):
        """Before a clean unmount, which drains the uploads and commits:
        a commit made now, and every node that said its database is
        damaged rebuilt, until a commit succeeds with none damaged. A
        rotted node may say so only when a write reaches it, and the
        unmount's own commit must not be that write."""
        last = None
        for _ in range(SETTLE_TRIES):
            if self.rebuild_damaged():
                self.wait_ready()
            last = subprocess.run([util.blockfs_bin(), 'commit', self.mnt],
                                  capture_output=True, text=True,
                                  timeout=COMMIT_TIMEOUT)
            if last.returncode == 0 and not self.rebuild_damaged():
                return
            self.wait_ready()
        pytest.fail(f'no commit succeeded with every node whole after '
                    f'{SETTLE_TRIES} tries; the last: exit '
                    f'{last.returncode}: {last.stderr.strip()}')

    def remount(self):
        self.settle()
        self.c.mount.stop()
        self.c.mount.start()
        self.wait_ready()


class Run:
    """One seeded run of the workload on ENV's mount (and on REF, a
    reference directory, without kills)."""

    def __init__(self, seed, test, env, ref=None, big=True):
        self.seed, self.test, self.env, self.ref = seed, test, env, ref
        self.rng = random.Random(seed)
        self.model = cm.Model()
        self.gen = cm.Generator(self.rng, self.model, big=big)
        self.ops = 0
        self.kills = collections.Counter()
        self.checks = 0
        self.recent = collections.deque(maxlen=40)
        self.failures = []
        self.rotted = set()   # storage nodes whose store was damaged
        self.rots = 0
        self.t0 = time.monotonic()
        self.spent = collections.Counter()  # seconds by activity
        print(f'crash harness: {test} seed {seed}', file=sys.stderr)

    # -- running operations --------------------------------------------
    def do(self, op, nodes_down=False, on_start=None):
        """Applies OP to the model, runs it on the mount (ON_START, which
        may kill something, is called while it runs) and the reference,
        and records what its syncs achieved."""
        self.model.apply(op)
        self.ops += 1
        t = time.monotonic()
        res = cm.run_op(op, self.env.mnt, OP_TIMEOUT, on_start)
        self.spent['ops'] += time.monotonic() - t
        self.recent.append(f'{self.ops}: {op} -> {res}')
        self.model.finish(op, res)
        if self.ref is not None:
            ref = cm.execute(op, self.ref)
            if ref.err is not None:
                raise cm.HarnessBug(f'op {self.ops} {op} fails on the '
                                    f'reference directory: {ref}')
        return res

    def expect_ok(self, op, res, nodes_down):
        if res.err is None:
            return
        if nodes_down and res.sync_err == errno.EIO:
            return  # fsync cannot meet the placement: not durable
        raise cm.Failure(f'op {self.ops} {op} failed: {res}')

    def step(self, nodes_down=False):
        op = self.gen.next()
        res = self.do(op)
        try:
            self.expect_ok(op, res, nodes_down)
        except cm.Failure as exc:
            # A rotted node that stopped taking writes (it says its
            # database is damaged) is a node down: a fsync cannot meet
            # the placement until it is rebuilt.
            if res.sync_err == errno.EIO and self.env.rebuild_damaged():
                self.env.wait_ready()
                return
            err = exc
        else:
            return
        self.fail(err, 'an operation failed')

    # -- checks ----------------------------------------------------------
    def fail(self, exc, what):
        replay = (f'BLOCKFS_CRASH_SEED={self.seed} '
                  f'BLOCKFS_CRASH_OPS={self.ops} '
                  f'BLOCKFS_BIN={shlex.quote(util.blockfs_bin())} '
                  f'/usr/bin/python3 -m pytest '
                  f'tests/integration/test_crash.py -k {self.test}')
        msg = (f'{self.test} seed {self.seed}: {what} after op {self.ops} '
               f'(kill points so far: {sum(self.kills.values())}):\n'
               f'{exc}\nlast operations:\n  ' + '\n  '.join(self.recent) +
               f'\nreplay: {replay}')
        print(f'crash harness: FAILED {self.test} seed {self.seed} at op '
              f'{self.ops}: {str(exc).splitlines()[0]}; replay: {replay}',
              file=sys.stderr)
        self.failures.append(msg)
        if not KEEP_GOING or self.ref is not None or \
                isinstance(exc, cm.HarnessBug):
            pytest.fail(msg, pytrace=False)

    def timed_check(self, check):
        """CHECK(model, mount), its time counted: None or the Failure."""
        t = time.monotonic()
        try:
            check(self.model, self.env.mnt)
            err = None
        except cm.Failure as exc:
            err = exc
        self.spent['checks'] += time.monotonic() - t
        return err

    def check_exact(self, what):
        """The mount (and the reference) equal the model exactly."""
        self.checks += 1
        if self.ref is not None:
            try:
                cm.check_exact(self.model, self.ref, 'the reference')
            except cm.Failure as exc:
                raise cm.HarnessBug(f'the model disagrees with the '
                                    f'reference directory: {exc}')
        util.drop_caches(self.env.mnt)
        err = self.timed_check(cm.check_exact)
        if err is not None:
            self.fail(err, what)
            self.rebase(sync=True)

    def check_crash(self, what, rotted=False):
        """After a crash: what the model allows; then what is there
        becomes the model's durable state. ROTTED: the store was damaged
        too, so a file may fail with EIO, if the log says which; such
        files are removed before the workload goes on."""
        self.checks += 1
        lost = {} if rotted else None
        err = self.timed_check(
            lambda model, root: cm.check_crash(model, root, lost))
        if err is None and lost:
            err = self.reported(lost)
        if err is not None:
            self.fail(err, what)
        for paths in (lost or {}).values():
            for p in paths:
                os.unlink(os.path.join(self.env.mnt, p))
        t = time.monotonic()
        self.rebase(sync=True)
        self.spent['rebase'] += time.monotonic() - t

    def reported(self, lost):
        """None if the daemon's log names every file of LOST ({real
        inode: paths} that read with EIO after bit rot), else the
        Failure. A block shared by several files (dedup) is named once,
        with one of them."""
        with open(self.env.log, errors='replace') as f:
            log = f.read().rsplit('\n=== ', 1)[-1]  # since the restart
        silent = [ps for ino, ps in lost.items()
                  if f'(inode {ino}): block ' not in log]
        if silent and 'is unreadable' not in log:
            return cm.Failure(f'reads of {silent} fail with EIO, and the '
                              f'log names no unreadable block')
        print(f'crash harness: unreadable after bit rot: '
              f'{sorted(p for ps in lost.values() for p in ps)}',
              file=sys.stderr)
        return None

    def rebase(self, sync):
        err = None
        try:
            tree, contents = cm.scan(self.env.mnt)
        except cm.Failure as exc:
            err = exc
        if err is not None:
            # What is there cannot even be read: no state to go on from.
            self.failures.append(f'{self.test} seed {self.seed}: cannot '
                                 f'go on after op {self.ops}: {err}')
            pytest.fail('\n\n'.join(self.failures), pytrace=False)
        if sync:
            try:
                cm.sync_tree(self.env.mnt, tree)
            except cm.Failure as exc:
                err = exc
        if err is not None:
            self.fail(err, 'syncing the tree after the crash')
        self.model = cm.Model.from_tree(tree, contents)
        self.gen.model = self.model

    def done(self):
        return MAX_OPS and self.ops >= MAX_OPS

    def summary(self):
        took = time.monotonic() - self.t0
        kills = ', '.join(f'{k} {n}' for k, n in sorted(self.kills.items()))
        print(f'crash harness: {self.test} seed {self.seed}: {self.ops} '
              f'ops, {self.checks} checks, kill points: '
              f'{sum(self.kills.values())} ({kills or "none"}), '
              f'{self.rots} with bit rot, '
              f'{took:.1f}s (' + ', '.join(f'{k} {v:.1f}s' for k, v in
                                          sorted(self.spent.items())) +
              ')', file=sys.stderr)
        if self.failures:
            pytest.fail(f'{len(self.failures)} failed checks:\n\n' +
                        '\n\n'.join(self.failures), pytrace=False)

    # -- the two families -------------------------------------------------
    def with_kills(self, rounds):
        rng, env = self.rng, self.env
        kinds = ['daemon'] if not env.storage else \
            ['daemon', 'nodes', 'both']
        weights = [1] if not env.storage else [2, 1, 1]
        r = 0
        while not self.done() and (MAX_OPS or r < rounds):
            r += 1
            # Every choice of this kill point is drawn before anything
            # runs, so that a replay makes the same ones.
            nops = rng.randint(1, 12)
            kind = rng.choices(kinds, weights)[0]
            during = rng.random() < 0.3
            delay = rng.uniform(0, 0.08)
            pause = rng.choice([0, 0, 0.05, 0.2, 1.0])
            long_pause = rng.random() < 0.7
            cut_big = rng.random() < 0.5
            victims = sorted(rng.sample(env.storage, rng.choice([1, 2]))) \
                if kind != 'daemon' else []
            ndown = rng.randint(0, 2) if kind != 'daemon' else 0
            rot = ROT and rng.random() < P_ROT
            if victims and self.rotted:
                # A damaged node stays short (no repair yet): it is one of
                # the two failures ec:4+2 tolerates from now on.
                victims = sorted(self.rotted | {victims[0]})
            rot_node = victims[0] if rot and victims and \
                (not self.rotted or victims[0] in self.rotted) else None
            frags = env.fragments(rot_node) if rot_node else None
            for _ in range(nops - during):
                self.step()
                if self.done() or (cut_big and self.gen.last_big_append):
                    break
            if not during and self.gen.last_big_append and long_pause:
                pause = 1.0  # let the flushers commit the append
            actions = (['nodes'] if victims else []) + \
                (['daemon'] if kind != 'nodes' else [])

            def act(a):
                if a == 'nodes':
                    env.kill_nodes(victims)
                else:
                    env.kill_daemon()

            if during:
                op = self.gen.next()
                res = self.do(op, on_start=lambda: (cm.sleep(delay),
                                                    act(actions[0])))
                if actions[0] == 'nodes' and res.err is not None and \
                        res.sync_err != errno.EIO:
                    self.fail(cm.Failure(f'op {self.ops} {op} failed: '
                                         f'{res}'), 'an operation failed')
            else:
                cm.sleep(pause)
                self.spent['pauses'] += pause
                act(actions[0])
            if victims:
                # Nodes first; some operations while they are down (fsync
                # fails with EIO), then the daemon too, or not.
                for _ in range(ndown):
                    self.step(nodes_down=True)
                if 'daemon' in actions:
                    act('daemon')
            self.kills[kind] += 1
            what = (f'kill point {r} ({kind}'
                    f'{" " + str(victims) if victims else ""}, '
                    f'{"during op %d" % self.ops if during else "pause %.2fs" % pause})')
            # Bit rot while they are down: a storage node's store (the
            # cluster must still read right, and a node that lost
            # fragments must say so), or the mount's blocks (healed from
            # the cluster, or EIO that the log explains).
            rotted_mount = False
            if rot_node:
                desc = env.rot_node(rot_node, rng)
                if desc:
                    self.rotted.add(rot_node)
                    what += f', node{rot_node} rotted: {desc}'
            elif rot and 'daemon' in actions:
                desc = env.rot_mount(rng)
                rotted_mount = desc is not None
                if desc:
                    what += f', the mount\'s store rotted: {desc}'
            self.rots += 'rotted' in what
            t = time.monotonic()
            rebuilt = []
            # nodes rebuilt from here on: by restart_nodes, or by
            # wait_ready when one said its database is damaged once up
            mark = len(getattr(env, 'rebuilt', []))
            if victims:
                # before anything is read
                rebuilt = env.restart_nodes(victims, self.rotted)
                if rebuilt:
                    what += f', {rebuilt} refused to start (damaged) and ' \
                        f'were started empty'
            if 'daemon' in actions:
                env.start_daemon()
            env.wait_ready()
            self.spent['restarts'] += time.monotonic() - t
            if frags and 'rotted' in what and \
                    rot_node not in env.rebuilt[mark:]:
                self.check_loss(rot_node, frags, what)
            if 'daemon' in actions:
                self.check_crash(what, rotted_mount)
            else:
                self.check_exact(what + ', the mount alive')
        # a rotted node that stopped taking writes since the last check
        # would fail the teardown's clean stop
        self.env.settle()
        self.summary()

    def check_loss(self, node, before, what):
        """A storage node whose store rotted holds at least the fragments
        it held before, or counts those it lost (never short silently)."""
        now, lost = self.env.fragments(node)
        if now < before[0] and lost <= before[1]:
            self.fail(cm.Failure(f'node{node} holds {now} fragments, '
                                 f'{before[0]} before its store rotted, '
                                 f'and reports none lost'), what)

    def without_kills(self, rounds):
        rng, env = self.rng, self.env
        r = 0
        while not self.done() and (MAX_OPS or r < rounds):
            r += 1
            nops = rng.randint(4, 30)
            remount = rng.random() < 0.3
            for _ in range(nops):
                self.step()
                if self.done():
                    break
            if remount:
                env.remount()
            self.check_exact(f'check {r}' +
                             (' after a remount' if remount else
                              ' after drop_caches'))
        # a rotted node that stopped taking writes since the last check
        # would fail the teardown's clean stop
        self.env.settle()
        self.summary()


# ---- the tests ---------------------------------------------------------------

def rounds(default):
    return ROUNDS or default


@pytest.mark.parametrize('seed', env_seeds([1101, 1102]))
def test_crash_single_node(make_mount, node_dir, mnt, seed):
    """kill -9 of a one-node mount at random moments of the workload."""
    run = Run(seed, 'test_crash_single_node', SingleNode(make_mount,
                                                         node_dir, mnt))
    run.with_kills(rounds(55))


@pytest.mark.parametrize('seed', env_seeds([1201, 1202]))
def test_crash_ec(cluster, seed):
    """ec:4+2 (six storage nodes, the mount a client): kill -9 of the
    daemon, of one or two storage nodes, or of both."""
    run = Run(seed, 'test_crash_ec', EcCluster(cluster))
    run.with_kills(rounds(45))


@pytest.mark.parametrize('seed', env_seeds([1301, 1302]))
def test_no_kill_single_node(make_mount, node_dir, mnt, tmp_path, seed):
    """The same workload without kills, checked exactly against a
    reference directory after drop_caches and after remounts."""
    ref = tmp_path / 'ref'
    ref.mkdir()
    run = Run(seed, 'test_no_kill_single_node',
              SingleNode(make_mount, node_dir, mnt), ref=str(ref))
    run.without_kills(rounds(15))


@pytest.mark.parametrize('seed', env_seeds([1401]))
def test_no_kill_ec(cluster, tmp_path, seed):
    """Without kills on ec:4+2 with cache_size=1: the reads after
    drop_caches and remounts come from the storage nodes."""
    ref = tmp_path / 'ref'
    ref.mkdir()
    run = Run(seed, 'test_no_kill_ec', EcCluster(cluster), ref=str(ref))
    run.without_kills(rounds(8))
