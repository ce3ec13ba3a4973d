"""The reference IPFS side of the interop tests: runs the scripts in
tests/interop (ipfs-unixfs-importer, ipfs-unixfs-exporter, @ipld/car,
@ipld/dag-cbor, pinned by tests/interop/package-lock.json) on what blockfs
produces.

Use:
    from interop import interop_tools   # the session fixture: npm ci once

    def test_x(interop_tools, tmp_path):
        cid = interop_tools.importer_root_cid(tree)
        interop_tools.car_check(car, tree)
        interop_tools.dagcbor_roundtrip(car)

Failures raise: InteropMismatch (an AssertionError) when the thing checked
differs from the reference, with every difference the script listed;
InteropError when a script could not do its job (bad input, timeout), with
its stderr. Without node and npm the tests skip, saying so, unless CI or
BLOCKFS_TEST_REQUIRE_NODE is set (contrib/run-tests.sh sets it): then they
fail.

Knobs (environment):
  BLOCKFS_TEST_REQUIRE_NODE  fail, not skip, when node or npm is missing
  CI                         the same (set by CI services)
  BLOCKFS_TEST_NPM_CI=1      run npm ci even when node_modules is current
"""

import hashlib
import json
import os
import shutil
import subprocess
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..'))
INTEROP_DIR = os.path.join(REPO, 'tests', 'interop')

# The defaults of DESIGN.md §3's acceptance test.
CHUNKER = 'fixed:262144'
SHARD_BYTES = 262144

# Generous: the importer reads about 50-100 MiB/s in one thread here.
SCRIPT_TIMEOUT = 1800
NPM_TIMEOUT = 600

EMPTY_DIR_CID = 'bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354'


class InteropError(Exception):
    """A script could not do its job: usage, unreadable input, timeout."""


class InteropMismatch(AssertionError):
    """What blockfs produced differs from what the reference tools say.
    `differences` holds one line per difference."""

    def __init__(self, message, differences=()):
        super().__init__(message)
        self.differences = list(differences)


def node_missing_reason():
    """Why the interop scripts cannot run here, or None."""
    for tool in ('node', 'npm'):
        if shutil.which(tool) is None:
            return (f'{tool} not found: the interop tests need Node 20 and '
                    'npm (contrib/install-deps.sh)')
    return None


def _node_required():
    return any(os.environ.get(k) not in (None, '', '0', 'false')
               for k in ('CI', 'BLOCKFS_TEST_REQUIRE_NODE'))


def require_node():
    """Skips the calling test without node/npm; fails it in CI."""
    reason = node_missing_reason()
    if reason is None:
        return
    if _node_required():
        pytest.fail(reason + ' (required: CI or BLOCKFS_TEST_REQUIRE_NODE)')
    pytest.skip(reason)


_npm_lock = threading.Lock()
_npm_done = False


def _node_modules_current():
    """npm's own record of the last install (node_modules/.package-lock.json)
    is newer than package.json and package-lock.json."""
    stamp = os.path.join(INTEROP_DIR, 'node_modules', '.package-lock.json')
    try:
        done = os.stat(stamp).st_mtime
    except FileNotFoundError:
        return False
    return all(os.stat(os.path.join(INTEROP_DIR, f)).st_mtime <= done
               for f in ('package.json', 'package-lock.json'))


def npm_ci():
    """Installs tests/interop's pinned libraries, once per session (not at
    all when node_modules is already from the current lock file, e.g.
    after contrib/run-tests.sh's own npm ci)."""
    global _npm_done
    require_node()
    with _npm_lock:
        if _npm_done:
            return
        if (os.environ.get('BLOCKFS_TEST_NPM_CI') == '1'
                or not _node_modules_current()):
            try:
                res = subprocess.run(
                    ['npm', 'ci', '--no-audit', '--no-fund',
                     '--loglevel=error'],
                    cwd=INTEROP_DIR, capture_output=True, text=True,
                    timeout=NPM_TIMEOUT)
            except subprocess.TimeoutExpired:
                pytest.fail(f'npm ci in {INTEROP_DIR} did not finish within '
                            f'{NPM_TIMEOUT}s')
            if res.returncode != 0:
                pytest.fail(f'npm ci in {INTEROP_DIR} exited '
                            f'{res.returncode}:\n{res.stderr}{res.stdout}')
        _npm_done = True


@pytest.fixture(scope='session')
def interop_tools():
    """This module, once npm ci has run: `interop_tools.car_check(...)`."""
    import interop
    npm_ci()
    return interop


def run_script(script, *args, timeout=SCRIPT_TIMEOUT):
    """Runs tests/interop/SCRIPT with node; returns the CompletedProcess.
    Raises InteropError on a timeout or exit status 2 (usage, input that
    cannot be read); exit status 1 is left to the caller."""
    npm_ci()
    cmd = ['node', os.path.join(INTEROP_DIR, script), *map(str, args)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=timeout, cwd=INTEROP_DIR)
    except subprocess.TimeoutExpired as exc:
        raise InteropError(f'{script} did not finish within {timeout}s: '
                           f'{exc.stderr!r}') from None
    if res.returncode not in (0, 1):
        raise InteropError(f'{" ".join(cmd)} exited {res.returncode}:\n'
                           f'{res.stderr}')
    return res


def _json(res, script):
    try:
        return json.loads(res.stdout)
    except ValueError:
        raise InteropError(f'{script} printed no JSON (exit '
                           f'{res.returncode}): {res.stdout!r}\n'
                           f'{res.stderr}') from None


def _importer_args(chunker, shard_bytes, wrap):
    args = ['--chunker', chunker, '--shard-bytes', shard_bytes]
    return args + ['--wrap'] if wrap else args


def importer_root_cid(tree, chunker=CHUNKER, shard_bytes=SHARD_BYTES,
                      wrap=False, timeout=SCRIPT_TIMEOUT):
    """The root CID ipfs-unixfs-importer computes for the directory TREE:
    CIDv1, raw leaves, balanced 174, the fixed chunker, each entry's lstat
    mode and mtime, the root being TREE itself with its mode and mtime (or
    with wrap, a bare wrapping directory). FIFOs, sockets and devices are
    left out (no UnixFS type)."""
    res = run_script('importer-cid.mjs',
                     *_importer_args(chunker, shard_bytes, wrap), tree,
                     timeout=timeout)
    if res.returncode != 0:
        raise InteropError(f'importer-cid.mjs failed:\n{res.stderr}')
    return res.stdout.strip()


def importer_entries(tree, chunker=CHUNKER, shard_bytes=SHARD_BYTES,
                     wrap=False, car=None, timeout=SCRIPT_TIMEOUT):
    """importer-cid.mjs --json: {'root': CID, 'cids': {path: CID}, 'types':
    {path: UnixFS type}, 'skipped': [paths]}, paths relative to TREE ('' is
    the root). With car, also writes the blocks there as a CAR v1."""
    args = _importer_args(chunker, shard_bytes, wrap) + ['--json']
    if car is not None:
        args += ['--car', car]
    res = run_script('importer-cid.mjs', *args, tree, timeout=timeout)
    if res.returncode != 0:
        raise InteropError(f'importer-cid.mjs failed:\n{res.stderr}')
    out = _json(res, 'importer-cid.mjs')
    return {
        'root': out['root'],
        'cids': {e['path']: e['cid'] for e in out['entries']},
        'types': {e['path']: e['type'] for e in out['entries']},
        'skipped': [s['path'] for s in out['skipped']],
    }


def car_check(car, tree, meta=False, root=None, timeout=SCRIPT_TIMEOUT):
    """Checks the CAR v1 file CAR against the directory TREE with @ipld/car
    and ipfs-unixfs-exporter: every block against its CID, every dag-pb
    block canonical, the same names in every directory, every file
    byte-identical, every symlink's target (with meta, modes and mtimes
    too). Returns the summary (dirs, files, bytes, symlinks, skipped,
    blocks: {total, raw, dag-pb, dag-cbor, other}); raises InteropMismatch
    listing the differences."""
    args = ['--json', '--max-report', '1000000']
    if meta:
        args.append('--meta')
    if root is not None:
        args += ['--root', root]
    res = run_script('car-check.mjs', *args, car, tree, timeout=timeout)
    if res.returncode == 1 and not res.stdout.strip():
        raise InteropMismatch(f'car-check.mjs {car} {tree}:\n{res.stderr}',
                              res.stderr.splitlines())
    out = _json(res, 'car-check.mjs')
    if res.returncode != 0 or not out.get('ok'):
        diffs = out.get('differences', [])
        shown = '\n'.join(diffs[:50])
        more = f'\n... and {len(diffs) - 50} more' if len(diffs) > 50 else ''
        raise InteropMismatch(f'{car} is not {tree} ({len(diffs)} '
                              f'differences):\n{shown}{more}', diffs)
    return out


def dagcbor_roundtrip(*paths, car=True, min_blocks=1, timeout=SCRIPT_TIMEOUT):
    """Checks that every DAG-CBOR block (of each CAR in PATHS, or each file
    being one block with car=False) decodes with @ipld/dag-cbor and
    re-encodes to the same bytes (and, in a CAR, every block against its
    CID). Returns {'checked': n, 'blocks': {codec: count}}; raises
    InteropMismatch naming each block that does not, or when fewer than
    min_blocks dag-cbor blocks were found."""
    args = ['--json', '--min', str(min_blocks)]
    if car:
        args.append('--car')
    res = run_script('dagcbor-roundtrip.mjs', *args, *paths, timeout=timeout)
    if res.returncode == 1 and not res.stdout.strip():
        raise InteropMismatch(f'dagcbor-roundtrip.mjs:\n{res.stderr}',
                              res.stderr.splitlines())
    out = _json(res, 'dagcbor-roundtrip.mjs')
    if res.returncode != 0:
        lines = [f"{f['cid']} ({f['file']}): {f['error']}"
                 for f in out['failed']]
        raise InteropMismatch('DAG-CBOR blocks that do not round-trip '
                              f'through @ipld/dag-cbor:\n{res.stderr}', lines)
    return {'checked': out['checked'], 'blocks': out['blocks']}


def selftest(timeout=300):
    """Runs tests/interop/selftest.mjs: the scripts on trees and CARs it
    builds itself. Returns its summary line; raises InteropMismatch."""
    res = run_script('selftest.mjs', timeout=timeout)
    if res.returncode != 0:
        raise InteropMismatch(f'selftest.mjs failed:\n{res.stderr}',
                              res.stderr.splitlines())
    return res.stdout.strip()


# A CAR v1 writer, for tests that need a CAR of blocks they made.

def _varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7f) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def cid_bytes(codec, data):
    """Binary CIDv1 of DATA under CODEC (0x55 raw, 0x70 dag-pb, 0x71
    dag-cbor) with a sha2-256 multihash."""
    return (_varint(1) + _varint(codec) + _varint(0x12) + _varint(32)
            + hashlib.sha256(data).digest())


def write_car(path, roots, blocks):
    """Writes a CAR v1: ROOTS are binary CIDs, BLOCKS (cid, data) pairs.
    The header is written in canonical DAG-CBOR by hand."""
    header = bytearray(b'\xa2\x65roots')
    header += bytes([0x80 + len(roots)]) if len(roots) < 24 else b''
    if len(roots) >= 24:
        raise ValueError('more than 23 roots')
    for cid in roots:
        link = b'\x00' + cid  # tag 42 over 0x00 || binary CID
        header += b'\xd8\x2a\x58' + bytes([len(link)]) + link
    header += b'\x67version\x01'
    with open(path, 'wb') as f:
        f.write(_varint(len(header)) + header)
        for cid, data in blocks:
            f.write(_varint(len(cid) + len(data)) + cid + data)
