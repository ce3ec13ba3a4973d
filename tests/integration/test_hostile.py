"""A hostile key holder (issue 11, defect 4): with node1's valid CURVE key, a
peer lists every fragment on every node, sends each one again with garbage
that carries a valid checksum, and asks every node to delete everything.
Every node refuses all of it and logs the refusals, rate-limited; every
file still reads bit-identical from the nodes (the mount's own store
emptied); the nodes still serve."""

import ctypes
import ctypes.util
import errno
import os
import random
import re
import struct

import pytest

import util
from util import MiB
from test_cluster import (HDR, dealer, header, parse, read, read_key,
                          seeded, wait_uploaded_and_evicted, write_fsync)

OP_PUT, OP_GET, OP_DELETE, OP_LIST = 2, 3, 5, 6
F_MORE = 2
FREF = struct.Struct('<I32sB')       # codec, digest, fragment index
ITEM = struct.Struct('<I32sBI')      # fref + frag_len
FRAG = struct.Struct('<4sBBBBIIII32sQ')  # the 64-byte fragment header
assert FREF.size == 37 and ITEM.size == 41 and FRAG.size == 64

# One request at a time, each answered within this many ms.
REPLY_MS = 10000


def xxh3():
    name = ctypes.util.find_library('xxhash') or 'libxxhash.so.0'
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        pytest.skip('libxxhash is not installed')
    lib.XXH3_64bits.restype = ctypes.c_uint64
    lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.XXH3_64bits_withSeed.restype = ctypes.c_uint64
    lib.XXH3_64bits_withSeed.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                         ctypes.c_uint64]
    return lib


def seal(lib, hdr, data):
    """HDR (64 bytes) with its checksum computed again over DATA, as
    ec_frag_hdr_seal does: XXH3-64 of DATA seeded with XXH3-64 of the
    header's first 56 bytes."""
    seed = lib.XXH3_64bits(hdr[:56], 56)
    return hdr[:56] + struct.pack('<Q', lib.XXH3_64bits_withSeed(
        data, len(data), seed))


def call(zmq, sock, frames):
    sock.send_multipart(frames)
    assert sock.poll(REPLY_MS, zmq.POLLIN), \
        f'no reply within {REPLY_MS} ms to {HDR.unpack(frames[0])}'
    got = sock.recv_multipart()
    return parse(got), got


def list_all(zmq, sock):
    """Every fragment the node lists: [(fref bytes, frag_len)]."""
    out, cursor, rid = [], b'', 1000
    while True:
        rid += 1
        r, got = call(zmq, sock, [header(op=OP_LIST, rid=rid, count=1000),
                                  cursor])
        assert r['status'] == 0, r
        items = got[1]
        for i in range(r['count']):
            it = items[i * ITEM.size:(i + 1) * ITEM.size]
            out.append((it[:FREF.size], ITEM.unpack(it)[3]))
        if not r['flags'] & F_MORE or not r['count']:
            return out
        cursor = out[-1][0]


def attack(zmq, ctx, lib, c, node):
    """Overwrite and delete everything NODE lists; returns
    (fragments, {status: count}) of the PUTs and the DELETE's status."""
    s = dealer(zmq, ctx, c.node_dir(node), c.port(node),
               read_key(c.node_dir(1), 'curve.pub'),
               read_key(c.node_dir(1), 'curve.key'))
    rng = random.Random(node)
    statuses = {}
    try:
        frags = list_all(zmq, s)
        for n, (fref, flen) in enumerate(frags):
            r, got = call(zmq, s, [header(op=OP_GET, rid=n + 1), fref])
            assert r['status'] == 0 and len(got) == 3, r
            garbage = rng.randbytes(flen)
            hdr = seal(lib, got[1], garbage)
            assert FRAG.unpack(hdr)[0] == b'BFRG'
            r, _ = call(zmq, s, [header(op=OP_PUT, rid=100000 + n), hdr,
                                 garbage])
            statuses[r['status']] = statuses.get(r['status'], 0) + 1
        refs = b''.join(f for f, _ in frags)
        r, _ = call(zmq, s, [header(op=OP_DELETE, rid=7, count=len(frags)),
                             refs])
        return len(frags), statuses, r['status']
    finally:
        s.close()


def log_lines(path, pattern):
    with open(path, errors='replace') as f:
        return re.findall(pattern, f.read())


def test_hostile_key_holder_destroys_nothing(cluster):
    zmq = pytest.importorskip(
        'zmq', reason='python3-zmq is not installed (contrib/install-deps.sh '
        'installs it)')
    lib = xxh3()
    # ec:2+1: blocks of 64 KiB and more are coded (the node can check only
    # their checksums), shorter ones are whole copies (checked against
    # their CIDs).
    c = cluster(nodes=4, redundancy='ec:2+1', opts='cache_size=1')
    files = {}
    for i in range(12):
        size = [100, 5000, 70_000, 300_000, 2 * MiB, 3 * MiB + 7][i % 6]
        files[os.path.join(c.mnt, f'f{i:02d}')] = (size, 500 + i)
    res = write_fsync([(p, n, s) for p, (n, s) in files.items()], 300)
    assert all(r['errno'] == 0 for r in res), res
    util.syncfs(c.mnt)
    wait_uploaded_and_evicted(c)

    ctx = zmq.Context()
    try:
        report = {}
        for node in (2, 3, 4, 1):  # the serve nodes, then the mount's
            report[node] = attack(zmq, ctx, lib, c, node)
    finally:
        ctx.term()
    print(f'attack: {report}')
    total = sum(n for n, _, _ in report.values())
    assert total >= 3 * len(files), report
    for node, (n, statuses, delete) in report.items():
        assert n > 0, f'node{node} listed nothing: {report}'
        assert 0 not in statuses, \
            f'node{node} accepted {statuses.get(0)} of {n} overwrites'
        assert set(statuses) <= {-errno.EEXIST, -errno.EBADMSG}, statuses
        assert delete == -errno.EPERM, f'node{node} DELETE: {delete}'

    # Every file reads right from the nodes.
    util.drop_caches(c.mnt)
    for p, (n, s) in files.items():
        assert read(p) == seeded(n, s), f'{p} reads wrong bytes'
    st = c.status()
    assert sum(n['fragments'] for n in st['nodes']) >= total, st

    # Each node logged the refusals, about once per kind: hundreds of
    # refusals, a handful of lines.
    for node in (2, 3, 4):
        log = c.servers[node].log
        puts = log_lines(log, r'refused put from node node1: .*')
        deletes = log_lines(log, r'refused delete from node node1: .*')
        assert puts and deletes, \
            f'node{node} logged no refusals:\n{util.log_tail(log, 30)}'
        assert len(puts) <= 2 and len(deletes) == 1, (puts, deletes)
    # The mount's own server names the node too (the same server
    # configuration as blockfs serve's).
    mlog = c.mount.log
    assert log_lines(mlog, r'refused put from node node1: .*') and \
        log_lines(mlog, r'refused delete from node node1: .*'), \
        util.log_tail(mlog, 30)
