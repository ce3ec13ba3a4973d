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
import os
import random
import shlex
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
EC_OPTS = f'cache_size=1,sync_timeout={SYNC_TIMEOUT}'


def env_seeds(default):
    val = os.environ.get('BLOCKFS_CRASH_SEED')
    if val:
        return [int(s) for s in val.replace(' ', '').split(',') if s]
    return default


ROUNDS = util.env_int('BLOCKFS_CRASH_ROUNDS', 0)
MAX_OPS = util.env_int('BLOCKFS_CRASH_OPS', 0)
KEEP_GOING = os.environ.get('BLOCKFS_CRASH_KEEP_GOING', '') not in ('', '0')


class SingleNode:
    """A one-node cluster mounted at MNT: only the daemon can be killed."""
    storage = []

    def __init__(self, make_mount, node_dir, mnt):
        self.m = make_mount(node_dir, mnt)
        self.mnt = mnt

    def kill_daemon(self):
        self.m.kill()

    def start_daemon(self):
        self.m.start()

    def kill_nodes(self, nodes):
        raise AssertionError('a single node has no storage nodes')

    restart_nodes = kill_nodes

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

    def kill_daemon(self):
        self.c.mount.kill()

    def start_daemon(self):
        self.c.mount.start()

    def kill_nodes(self, nodes):
        self.c.kill(*nodes)

    def restart_nodes(self, nodes):
        self.c.restart(*nodes)

    def wait_ready(self):
        """Every node up in the mount's view, and nothing left to upload
        (what was queued while nodes were down, or before the daemon was
        killed): so that a fsync with every node up does not meet the
        short sync_timeout behind that backlog."""
        self.c.wait_mount_sees(lambda v: len(v) == NODES and
                               all(up for up, _ in v.values()),
                               READY_TIMEOUT, 'every node up')
        self.c.wait_status(lambda st: st.get('pending_uploads') == 0,
                           DRAIN_TIMEOUT, 'pending_uploads == 0',
                           interval=0.2)

    def remount(self):
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

    def check_crash(self, what):
        """After a crash: what the model allows; then what is there
        becomes the model's durable state."""
        self.checks += 1
        err = self.timed_check(cm.check_crash)
        if err is not None:
            self.fail(err, what)
        t = time.monotonic()
        self.rebase(sync=True)
        self.spent['rebase'] += time.monotonic() - t

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
            t = time.monotonic()
            if victims:
                env.restart_nodes(victims)  # before anything is read
            if 'daemon' in actions:
                env.start_daemon()
            env.wait_ready()
            self.spent['restarts'] += time.monotonic() - t
            if 'daemon' in actions:
                self.check_crash(what)
            else:
                self.check_exact(what + ', the mount alive')
        self.summary()

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
