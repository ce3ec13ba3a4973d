"""The reference side of the interop tests works, without blockfs: the
scripts in tests/interop, run through interop.py on trees and CARs made
here, give known answers and catch the differences they exist to catch."""

import os
import subprocess

import pytest

import interop
from interop import interop_tools  # noqa: F401 (a fixture)


def make_tree(root):
    """A small tree of every kind interop cares about; returns its path."""
    os.makedirs(os.path.join(root, 'dir', 'sub'))
    os.makedirs(os.path.join(root, 'empty'))
    with open(os.path.join(root, 'empty-file'), 'wb'):
        pass
    with open(os.path.join(root, 'dir', 'small'), 'wb') as f:
        f.write(b'small file\n')
    # 200 chunks at fixed:1024: two levels of the 174-link balanced layout.
    with open(os.path.join(root, 'dir', 'sub', 'chunks'), 'wb') as f:
        f.write(bytes((i * 31 + (i >> 10)) & 0xff for i in range(200 * 1024)))
    os.symlink('dir/small', os.path.join(root, 'link'))
    os.mkfifo(os.path.join(root, 'fifo'))
    os.chmod(os.path.join(root, 'dir', 'small'), 0o640)
    os.utime(os.path.join(root, 'dir', 'small'),
             ns=(1_234_567_890_123_456_789, 1_234_567_890_123_456_789))
    return str(root)


def test_selftest(interop_tools):
    """The scripts' own self-test: importer, car-check and dag-cbor checks
    on trees and CARs it builds, including the pinned sharding rule."""
    assert 'checks passed' in interop_tools.selftest()


def test_importer_known_answer(interop_tools, tmp_path):
    """A bare wrap of nothing is the empty UnixFS directory; DIR as the
    root carries DIR's mtime, so it is another CID."""
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert (interop_tools.importer_root_cid(empty, wrap=True)
            == interop.EMPTY_DIR_CID)
    assert interop_tools.importer_root_cid(empty) != interop.EMPTY_DIR_CID


def test_importer_sees_modes_and_mtimes(interop_tools, tmp_path):
    """The root CID is stable, and changes with a mode or with an mtime's
    nanoseconds, as a snapshot root must."""
    tree = make_tree(tmp_path / 'tree')
    small = os.path.join(tree, 'dir', 'small')
    first = interop_tools.importer_root_cid(tree)
    assert first.startswith('bafy')
    assert interop_tools.importer_root_cid(tree) == first
    os.chmod(small, 0o600)
    assert interop_tools.importer_root_cid(tree) != first
    os.chmod(small, 0o640)
    # Restoring the mode changed dir's ctime only: the CID is back.
    assert interop_tools.importer_root_cid(tree) == first
    st = os.lstat(small)
    os.utime(small, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert interop_tools.importer_root_cid(tree) != first


def test_importer_entries(interop_tools, tmp_path):
    """--json names every path, the root first among equals; the FIFO is
    left out; the balanced layout and chunker options reach the importer."""
    tree = make_tree(tmp_path / 'tree')
    out = interop_tools.importer_entries(tree, chunker='fixed:1024')
    assert out['cids'][''] == out['root']
    assert set(out['cids']) == {'', 'dir', 'dir/small', 'dir/sub',
                                'dir/sub/chunks', 'empty', 'empty-file',
                                'link'}
    assert out['types']['link'] == 'symlink'
    assert out['types']['empty'] == 'directory'
    assert out['skipped'] == ['fifo']
    default = interop_tools.importer_entries(tree)
    assert default['cids']['dir/small'] == out['cids']['dir/small']
    assert default['cids']['dir/sub/chunks'] != out['cids']['dir/sub/chunks']


def test_car_check(interop_tools, tmp_path):
    """A CAR the importer wrote passes car_check against its tree, with
    modes and mtimes; a changed byte, a missing file and an extra file are
    each named."""
    tree = make_tree(tmp_path / 'tree')
    car = str(tmp_path / 'tree.car')
    root = interop_tools.importer_entries(tree, chunker='fixed:1024',
                                          car=car)['root']
    summary = interop_tools.car_check(car, tree, meta=True)
    assert summary['root'] == root
    assert (summary['files'], summary['dirs'], summary['symlinks']) == \
        (3, 4, 1)
    assert summary['skipped'] == 1
    assert summary['blocks']['raw'] >= 200

    with open(os.path.join(tree, 'dir', 'sub', 'chunks'), 'r+b') as f:
        f.seek(150_000)
        byte = f.read(1)
        f.seek(150_000)
        f.write(bytes([byte[0] ^ 1]))
    os.unlink(os.path.join(tree, 'empty-file'))
    with open(os.path.join(tree, 'empty', 'new'), 'w') as f:
        f.write('new\n')
    with pytest.raises(interop.InteropMismatch) as exc:
        interop_tools.car_check(car, tree)
    diffs = '\n'.join(exc.value.differences)
    assert 'dir/sub/chunks: bytes differ from offset 150000' in diffs
    assert 'empty-file: in the CAR but not in DIR' in diffs
    assert 'empty/new: missing from the CAR' in diffs


def test_car_check_refuses_garbage(interop_tools, tmp_path):
    """Not a CAR: a mismatch that says so, not a crash or a pass."""
    tree = make_tree(tmp_path / 'tree')
    bad = tmp_path / 'bad.car'
    bad.write_bytes(b'\x05hello')
    with pytest.raises(interop.InteropMismatch, match='not a readable CAR'):
        interop_tools.car_check(str(bad), tree)
    with pytest.raises(interop.InteropError):
        interop_tools.car_check(str(tmp_path / 'missing.car'), tree)


def test_dagcbor_roundtrip(interop_tools, tmp_path):
    """Canonical DAG-CBOR passes; keys out of order and a non-shortest
    integer are named by CID. The CAR is written by interop.write_car."""
    leaf = b'leaf'
    leaf_cid = interop.cid_bytes(0x55, leaf)
    # {"a": 1, "bb": [true, null], "cid": CID(leaf)}, keys length-first.
    good = (b'\xa3\x61a\x01\x62bb\x82\xf5\xf6\x63cid\xd8\x2a\x58\x25\x00'
            + leaf_cid)
    unsorted = b'\xa2\x61b\x01\x61a\x02'   # {"b": 1, "a": 2}
    longint = b'\xa1\x61a\x18\x01'          # {"a": 1} with 1 in two bytes
    good_cid = interop.cid_bytes(0x71, good)
    ok_car = str(tmp_path / 'ok.car')
    interop.write_car(ok_car, [good_cid],
                      [(good_cid, good), (leaf_cid, leaf)])
    res = interop_tools.dagcbor_roundtrip(ok_car)
    assert res['checked'] == 1 and res['blocks'] == {'dag-cbor': 1, 'raw': 1}

    bad_car = str(tmp_path / 'bad.car')
    interop.write_car(bad_car, [good_cid], [
        (good_cid, good),
        (interop.cid_bytes(0x71, unsorted), unsorted),
        (interop.cid_bytes(0x71, longint), longint)])
    with pytest.raises(interop.InteropMismatch) as exc:
        interop_tools.dagcbor_roundtrip(bad_car)
    assert len(exc.value.differences) == 2
    assert any('re-encodes to other bytes' in d
               for d in exc.value.differences)
    assert any('does not decode' in d for d in exc.value.differences)

    # A CAR whose blocks are all raw checks nothing: refused by default.
    raw_car = str(tmp_path / 'raw.car')
    interop.write_car(raw_car, [leaf_cid], [(leaf_cid, leaf)])
    with pytest.raises(interop.InteropMismatch, match='only 0 dag-cbor'):
        interop_tools.dagcbor_roundtrip(raw_car)
    assert interop_tools.dagcbor_roundtrip(raw_car, min_blocks=0)[
        'checked'] == 0


def test_node_missing(monkeypatch):
    """Without node: a skip with the reason, or a failure when required."""
    monkeypatch.setenv('PATH', '/nonexistent')
    monkeypatch.delenv('CI', raising=False)
    monkeypatch.delenv('BLOCKFS_TEST_REQUIRE_NODE', raising=False)
    assert 'node not found' in interop.node_missing_reason()
    with pytest.raises(pytest.skip.Exception, match='node not found'):
        interop.require_node()
    monkeypatch.setenv('BLOCKFS_TEST_REQUIRE_NODE', '1')
    with pytest.raises(pytest.fail.Exception, match='required'):
        interop.require_node()
    monkeypatch.delenv('BLOCKFS_TEST_REQUIRE_NODE')
    monkeypatch.setenv('CI', 'true')
    with pytest.raises(pytest.fail.Exception, match='required'):
        interop.require_node()


def test_scripts_say_how_to_use_them(interop_tools):
    """Every script has --help (exit 0) and refuses a bad option (exit 2)."""
    for script in ('importer-cid.mjs', 'car-check.mjs',
                   'dagcbor-roundtrip.mjs'):
        path = os.path.join(interop.INTEROP_DIR, script)
        res = subprocess.run(['node', path, '--help'], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0 and 'usage:' in res.stdout
        res = subprocess.run(['node', path, '--no-such-option'],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and 'usage:' in res.stderr
