"""Heads (issue 23), end to end: unsigned, forged, stale and replayed heads,
and heads of another filesystem or off another parent, are refused by every
node of a cluster of real `blockfs serve` processes and the mount, and
every node logs each refusal; the filesystem's head stays where it was and
the mount goes on committing. The same tool's correct next head is accepted
by every node: the control that shows the refusals are the nodes', not a
probe that cannot succeed.

The probe is tests/tools/head-probe, built beside blockfs: it reads the
latest head from the nodes, builds each case from it, sends it to every
node at once (HEAD_CAS) and prints each node's answer as JSON."""

import json
import os

import pytest

import util

# Each bad case: the status every node answers (net/server/heads.h) and
# what its refusal log says (net/server/heads.c).
BAD = {
    'unsigned': ('EBADMSG', 'unsigned head'),
    'forged': ('EBADMSG', 'forged head'),
    'stale': ('ESTALE', 'stale head'),
    'replayed': ('ESTALE', 'replayed head'),
    'other-fs': ('ENOENT', 'head of another filesystem'),
    'bad-parent': ('EINVAL', 'wrong parent'),
}
# A node logs one refusal of heads per peer a minute and counts the rest
# (net/server/refusals.h): each case goes out as another node, so that
# every node logs every case. Hence one node per case.
NODES = len(BAD)
LOG_TIMEOUT = 30
# The mount renews its lease at half of it: far beyond this test, so that
# no head but the test's own appears while the probe runs.
OPTS = 'commit_interval=0,lease=600'


def probe(node_dir, *args):
    """head-probe NODE_DIR ARGS...: its JSON. Its stderr must hold no
    sanitizer report (UBSan's do not change the exit status)."""
    res = util.run([util.tool_path('head-probe'), *args, str(node_dir)])
    bad = [m for m in util.BAD_LOG_MARKERS if m in res.stderr]
    assert not bad, f'head-probe: {bad}:\n{res.stderr}'
    try:
        return json.loads(res.stdout)
    except ValueError:
        pytest.fail(f'head-probe printed no JSON: {res.stdout!r} '
                    f'{res.stderr!r}')


def commit(mnt):
    return json.loads(util.blockfs('commit', '--json', str(mnt)).stdout)


def latest(node_dir):
    """The filesystem's latest head, as 'blockfs snapshot list' sees it."""
    res = util.blockfs('snapshot', 'list', '--json', str(node_dir))
    return json.loads(res.stdout)['snapshots'][0]


def write(mnt, name, data):
    with open(os.path.join(mnt, name), 'wb') as f:
        f.write(data)


def node_log(c, i):
    """Node I's log: the mount's for node1, which it serves."""
    return c.mount.log if i == 1 else c.servers[i].log


def read(path):
    with open(path, errors='replace') as f:
        return f.read()


def test_bad_heads_refused_by_every_node(cluster):
    """Each bad case, sent to all six nodes at once, is refused by each
    with its status and logged by each; the nodes' heads do not move; the
    correct next head is then taken by all."""
    c = cluster(nodes=NODES, redundancy='replicas:2', opts=OPTS)
    names = [f'node{i}' for i in range(1, NODES + 1)]
    write(c.mnt, 'a', b'first')
    commit(c.mnt)
    write(c.mnt, 'b', b'second')  # a head N-1 for stale and bad-parent
    seq = commit(c.mnt)['seq']
    head = latest(c.node_dir(1))
    assert head['seq'] == seq and seq >= 2, head
    now = {n: {'seq': seq, 'cid': head['head']} for n in names}

    for k, (case, (status, why)) in enumerate(BAD.items()):
        sender = k + 1
        out = probe(c.node_dir(sender), '--case', case)
        assert out['identity'] == f'node{sender}'
        assert out['before'] == now, (case, out)
        assert out['head'] == now['node1'], (case, out)
        got = out['cases'][case]
        assert got['status'] == {n: status for n in names}, (case, got)
        assert out['after'] == now, (case, out)

    # Every node logged every refusal, naming the node it came from.
    for i in range(1, NODES + 1):
        path = node_log(c, i)
        want = [f'refused head from node node{k + 1}: {why}'
                for k, (_, why) in enumerate(BAD.values())]
        util.wait_until(lambda: all(w in read(path) for w in want),
                        LOG_TIMEOUT, f'node{i} to log every refusal')

    # Nothing moved: the latest head is the mount's, which goes on.
    after = latest(c.node_dir(1))
    assert (after['seq'], after['head']) == (seq, head['head']), after
    write(c.mnt, 'c', b'third')
    assert commit(c.mnt)['seq'] == seq + 1

    # The control: the correct next head, from the same tool, is taken by
    # every node. The mount stops first (its commits would race the
    # probe's head) and node1 is served by 'blockfs serve' instead.
    c.mount.stop()
    s = util.Server(c.node_dir(1), c.port(1),
                    os.path.join(c.logdir, 'serve-node1.log'))
    c.servers[1] = s  # the cluster's teardown stops it
    s.start()
    out = probe(c.node_dir(1), '--valid')
    base = out['head']['seq']
    assert base >= seq + 1, out
    got = out['cases']['valid']
    assert got['seq'] == base + 1, got
    assert got['status'] == {n: 0 for n in names}, got
    assert out['after'] == {n: {'seq': base + 1, 'cid': got['cid']}
                            for n in names}, out
    after = latest(c.node_dir(1))
    assert (after['seq'], after['head']) == (base + 1, got['cid']), after
