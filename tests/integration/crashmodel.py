"""A model-based random workload for crash consistency (issue 11).

A seeded generator (random.Random(seed)) makes a stream of operations on a
small tree: create, write at random offsets and lengths (up to several MiB),
overwrite, open with O_TRUNC, truncate down and up, append (also appends of
9..20 MiB, more than a flush pass, right after a fsync of several MiB),
rename (files, over existing files, and directories), replace (a new file
under a temporary name, not synced, renamed over an existing one, as sed -i
and editors do), chmod, chown, utime, fallocate's punch hole and zero
range (to the model, writes of zeros), link, unlink, mkdir, rmdir, fsync,
fdatasync (through read-only and read-write descriptors) and fsync of
directories. Each operation is applied to a reference model before
it runs, then run on the mount (and, in the family without kills, on a
reference directory on a local disk). test_crash.py drives it two ways:

* with kills: at random moments (between operations, after a pause of up to
  1.5 s so that background flushes run, or during an operation) the mount
  daemon, storage nodes, or both get SIGKILL; the daemon is started again,
  killed nodes are started again before anything is read, and the tree
  must be in a state that the model allows (check_crash). The model then
  takes what is there as its new state, makes it durable (fsync of every
  file and directory) and the workload carries on.
* without kills: the same generator, the tree checked exactly against the
  reference directory and against the model (check_exact) after dropping
  the kernel's caches and after remounts; the model must agree with the
  reference too, which is what makes it trustworthy for the kill family.

What blockfs promises, and so what check_crash allows
-----------------------------------------------------
The README: fsync, fdatasync and fsyncdir return once the file's data,
extents and inode are committed and the store is synced (in a cluster, on
the whole placement); such data survives kill -9. Data not yet fsync'ed may
be lost in a crash and then reads as zeros. The README says nothing
explicit about names; the model is strict about data and lenient about
names, as follows.

Data, per file (an inode; hard links share it). The model keeps the
content as of the last successful fsync or fdatasync of the file (D, of
size Sd; an empty file at creation), every write since (offset and bytes,
in order), and the smallest and largest size the file had since. An fsync
that failed (EIO while storage nodes are down) or did not return before a
kill makes nothing durable. After a crash, with S0 = the smallest size since
D (<= Sd; below Sd only if a truncate cut the file since):

* the size lies in [S0, the largest size since D];
* a byte at p < S0 (inside the fsync'd range, never cut since) equals D's
  byte or a byte some write since D put at p: never zero unless zero was
  so written (an unsynced overwrite may be lost, but then the fsync'd
  bytes must still be there);
* a byte at p >= S0 is zero (lost, or a hole), a byte some write since D
  put at p, or D's byte when p < Sd (a truncate since D is not durable
  either and may be undone);
* reading never fails (no EIO, no other error).

Names, per path. A path's state is absent, a directory, or a file (a model
inode). The model keeps, for every path touched since the last point where
it was made durable, the set of states it had since: after a crash the path
may be in any of them. A path is made durable (its set reduced to its
current state) by a successful fsyncdir of its parent directory (every
entry of that directory, present or removed) or by a successful fsync (not
fdatasync) of the file through that path. A path below a directory that is
absent after the crash is absent with it. Paths are checked one by one, not
as a whole: a crash may show, say, both names of a rename. Hard links must
hold together: the names that show one inode must each allow a model inode
that they all share, and the content must fit that inode's data rules.
(blockfs itself commits every namespace change as it happens and syncs its
whole store on any fsync, so it keeps much more than this; the model
checks what is promised.)

What a local filesystem also keeps (issue 20): a name that a replace
renamed a new file to shows, if it shows that file, all of its bytes
(ext4's auto_da_alloc); a file opened with O_TRUNC, written and closed
holds what was written after a crash (ext4 flushes such a file at close).
And order: operations reach the store in the order they returned, so a
crash may lose the last ones, never one in the middle. Names are never
reused, so a name that shows after a crash proves that the operation that
made it ran (Model.horizon); every operation before that one had returned,
so each name, and each file's mode, owner and mtime (chmod, chown, utime),
must show its value as of then or a later one. A write or truncate since
makes any mtime right (the kernel reports the times of its cached writes
in batches).

The workload is deterministic from the seed: the operations, their data and
the kill points come from random.Random(seed); only what a crash loses (a
file the generator can then no longer pick) can make two runs part.
"""

import ctypes
import errno
import hashlib
import os
import stat
import threading
import time

MiB = 1 << 20

# Limits of the tree the generator makes.
MAX_FILES = 20
MAX_DIRS = 6
MAX_DEPTH = 2
MAX_TOTAL = 24 * MiB     # bytes in all current files
MAX_FILE = 24 * MiB

# Attributes the workload sets (chmod, chown, utime) and checks.
ATTRS = ('mode', 'uid', 'mtime')
ATTR_OF = {'chmod': 'mode', 'chown': 'uid', 'utime': 'mtime'}
MODES = (0o600, 0o640, 0o644, 0o660, 0o700, 0o755, 0o604)
UIDS = (0, 1, 1000, 65534)
UTIME_BASE = 978307200 * 10**9     # 2001-01-01: never a time a write sets


def fmt_attr(name, v):
    if v is None:
        return 'any'
    if name == 'mode':
        return oct(v)
    if name == 'mtime':
        return f'{v // 10**9}.{v % 10**9:09d}'
    return str(v)


class Failure(Exception):
    """The filesystem broke what the model allows (or, in the family
    without kills, disagrees with the reference)."""


class HarnessBug(Failure):
    """The model disagrees with the reference directory: the harness is
    wrong, not (necessarily) the filesystem."""


def parent(p):
    return p.rsplit('/', 1)[0] if '/' in p else ''


def ancestors(p):
    """Proper ancestors of P, nearest first, the root ('') excluded."""
    out = []
    while '/' in p:
        p = p.rsplit('/', 1)[0]
        out.append(p)
    return out


def depth(p):
    return 0 if p == '' else p.count('/') + 1


def short(data):
    if data is None:
        return '-'
    return f'{len(data)}B#{hashlib.blake2b(data, digest_size=3).hexdigest()}'


# ---- content model ---------------------------------------------------------

class Inode:
    """One file's content: current bytes, the last durable bytes, and the
    writes and sizes since (see the module docstring)."""

    def __init__(self, ino, content=b''):
        self.ino = ino
        self.cur = bytearray(content)
        self.make_durable()

    def __repr__(self):
        return f'inode#{self.ino}'

    def make_durable(self):
        self.dur = bytes(self.cur)
        self.min_size = self.max_size = len(self.cur)
        self.layers = []  # (offset, bytes) written since dur, in order

    def write(self, off, data):
        if not data:
            return
        cur = self.cur
        if off > len(cur):
            cur.extend(bytes(off - len(cur)))
        cur[off:off + len(data)] = data
        self.layers.append((off, bytes(data)))
        self.max_size = max(self.max_size, len(cur))

    def punch(self, off, n):
        """fallocate(PUNCH_HOLE | KEEP_SIZE): zeros written over what
        there is of [OFF, OFF+N), the size kept."""
        end = min(off + n, len(self.cur))
        if off < end:
            self.write(off, bytes(end - off))

    def truncate(self, size):
        cur = self.cur
        if size < len(cur):
            del cur[size:]
        else:
            cur.extend(bytes(size - len(cur)))
        self.min_size = min(self.min_size, size)
        self.max_size = max(self.max_size, size)

    def crash_check(self, got):
        """None if GOT is a content the model allows after a crash, else
        a description of the first violation."""
        n = len(got)
        if got == self.cur:
            return None
        if not self.min_size <= n <= self.max_size:
            return (f'size {n} outside [{self.min_size}, {self.max_size}] '
                    f'(fsync\'d size {len(self.dur)}, current '
                    f'{len(self.cur)})')
        s0, sd = self.min_size, len(self.dur)
        cuts = {0, n, min(s0, n), min(sd, n)}
        for off, data in self.layers:
            if off < n:
                cuts.add(off)
                cuts.add(min(n, off + len(data)))
        cuts = sorted(cuts)
        for a, b in zip(cuts, cuts[1:]):
            cands = []
            for off, data in reversed(self.layers):
                if off <= a and b <= off + len(data):
                    cands.append((data, off))
            if b <= sd:
                cands.append((self.dur, 0))
            zero_ok = a >= s0
            bad = first_bad(got, a, b, cands, zero_ok)
            if bad is not None:
                return self.describe(got, bad, s0)
        return None

    def describe(self, got, p, s0):
        sd = len(self.dur)
        where = (f'inside the fsync\'d range [0, {s0})' if p < s0 else
                 f'beyond the fsync\'d range [0, {s0})')
        run = len(got) - p - len(got[p:].lstrip(b'\0')) if got[p] == 0 \
            else 0
        writers = [(o, len(d)) for o, d in self.layers if o <= p < o + len(d)]
        msg = (f'byte {p} {where} reads {got[p]:#04x}; fsync\'d byte '
               f'{self.dur[p] if p < sd else None}, '
               f'{len(writers)} writes since cover it '
               f'(their bytes there: {[self.byte_of(o, p) for o, _ in writers][:6]}); '
               f'size {len(got)}, fsync\'d size {sd}, current size '
               f'{len(self.cur)}, {len(self.layers)} writes since the fsync')
        if run:
            msg += f'; zeros from {p} to {p + run}'
            if p < s0:
                end = min(p + run, s0)
                msg += (f' ({end - p} bytes of them fsync\'d, '
                        f'{self.untouched(p, end)} of those never written '
                        f'since)')
        return msg

    def untouched(self, a, b):
        """Bytes of [A, B) that no write since the fsync covers."""
        spans = sorted((max(a, o), min(b, o + len(d)))
                       for o, d in self.layers if o < b and o + len(d) > a)
        covered, end = 0, a
        for s, e in spans:
            s = max(s, end)
            if e > s:
                covered += e - s
                end = e
        return (b - a) - covered

    def byte_of(self, off, p):
        for o, d in self.layers:
            if o == off and o <= p < o + len(d):
                return d[p - o]
        return None


def first_bad(got, a, b, cands, zero_ok):
    """The first position in [A, B) where GOT's byte is neither the byte
    of some candidate (DATA, OFFSET) nor, with ZERO_OK, zero; else None.
    Bisects: whole ranges are compared with bytes comparisons, single bytes
    only in ranges where the candidates mix (a lost chunk beside a kept
    one)."""
    if a >= b:
        return None
    seg = got[a:b]
    for data, off in cands:
        if data[a - off:b - off] == seg:
            return None
    if zero_ok and got.count(0, a, b) == b - a:
        return None
    if b - a <= 64:
        for p in range(a, b):
            g = got[p]
            if zero_ok and g == 0:
                continue
            if any(data[p - off] == g for data, off in cands):
                continue
            return p
        return None
    mid = (a + b) // 2
    bad = first_bad(got, a, mid, cands, zero_ok)
    if bad is not None:
        return bad
    return first_bad(got, mid, b, cands, zero_ok)


# ---- the namespace and the whole model -------------------------------------

DIR = 'D'


class Model:
    """The tree as the workload made it (paths: {path: DIR or inode
    number}, the root '' implied), its inodes, and for every path touched
    since it was last made durable the states it may show after a crash
    (allowed: {path: set of None, DIR or inode numbers})."""

    def __init__(self):
        self.paths = {}
        self.inodes = {}
        self.allowed = {}
        self.next_ino = 1
        # Order (issue 20): operations reach the store in the order they
        # returned. seq numbers the operations; birth[p] is the seq of
        # the operation that first made name P (names are never reused,
        # so a P that shows after a crash proves that operation ran);
        # hist[p] and attrs[ino][name] list (seq, value) of every change.
        self.seq = 0
        self.birth = {}
        self.hist = {}
        self.attrs = {}

    def new_inode(self, content=b''):
        ino = self.next_ino
        self.next_ino += 1
        self.inodes[ino] = Inode(ino, content)
        # None: a value the model does not know (set by the filesystem,
        # or a time a write set), which any value matches.
        self.attrs[ino] = {a: [(-1, None)] for a in ATTRS}
        return ino

    def set(self, p, state):
        old = self.paths.get(p)
        self.allowed.setdefault(p, {old}).add(state)
        self.hist.setdefault(p, [(-1, old)]).append((self.seq, state))
        if old is None and p not in self.birth:
            self.birth[p] = self.seq
        if state is None:
            self.paths.pop(p, None)
        else:
            self.paths[p] = state

    def set_attr(self, ino, name, value):
        self.attrs[ino][name].append((self.seq, value))

    def attr(self, ino, name):
        """The current value of attribute NAME of inode INO, or None."""
        return self.attrs[ino][name][-1][1]

    def pin(self, p):
        self.allowed[p] = {self.paths.get(p)}
        self.hist[p] = [(-1, self.paths.get(p))]

    def files(self):
        return sorted(p for p, s in self.paths.items() if s != DIR)

    def dirs(self):
        """Directories, the root ('') first."""
        return [''] + sorted(p for p, s in self.paths.items() if s == DIR)

    def children(self, d):
        return [p for p in self.paths if parent(p) == d]

    def total_bytes(self):
        inos = {s for s in self.paths.values() if s != DIR}
        return sum(len(self.inodes[i].cur) for i in inos)

    # Every operation is applied here before it runs (so that an operation
    # a kill interrupts counts as one that may have happened), and
    # finish() records what its syncs achieved once it returned.
    def apply(self, op):
        self.seq += 1
        op.seq = self.seq
        k = op.kind
        if k == 'create':
            op.ino = self.new_inode()
            self.set(op.path, op.ino)
            self.inodes[op.ino].write(0, op.data)
        elif k == 'replace':
            # A new file under a temporary name, not synced, renamed over
            # an existing file: if the name shows the new file after a
            # crash, it shows all of it (ext4's auto_da_alloc).
            tmp = self.new_inode()
            self.inodes[tmp].write(0, op.data)
            self.set(op.path, tmp)
            self.set(op.path, None)
            op.ino = self.new_inode(op.data)
            self.set(op.path2, op.ino)
        elif k in ('chmod', 'chown', 'utime'):
            op.ino = self.paths[op.path]
            self.set_attr(op.ino, ATTR_OF[k], op.size)
        elif k in ('write', 'otrunc', 'append', 'truncate', 'fsync',
                   'punch', 'zero'):
            op.ino = self.paths[op.path]
            ip = self.inodes[op.ino]
            if k != 'fsync':
                self.set_attr(op.ino, 'mtime', None)
            if k == 'write':
                ip.write(op.off, op.data)
            elif k == 'otrunc':
                ip.truncate(0)
                ip.write(0, op.data)
            elif k == 'append':
                op.off = len(ip.cur)
                ip.write(op.off, op.data)
            elif k == 'truncate':
                ip.truncate(op.size)
            elif k == 'punch':
                ip.punch(op.off, op.size)
            elif k == 'zero':
                # ZERO_RANGE without KEEP_SIZE: zeros, the size may grow
                ip.write(op.off, bytes(op.size))
        elif k == 'rename':
            src, dst = op.path, op.path2
            if self.paths[src] == DIR:
                moves = [(q, dst + q[len(src):]) for q in sorted(self.paths)
                         if q == src or q.startswith(src + '/')]
            else:
                moves = [(src, dst)]
            states = {q: self.paths[q] for q, _ in moves}
            for q, _ in moves:
                self.set(q, None)
            for q, r in moves:
                self.set(r, states[q])
        elif k == 'link':
            self.set(op.path2, self.paths[op.path])
        elif k in ('unlink', 'rmdir'):
            self.set(op.path, None)
        elif k == 'mkdir':
            self.set(op.path, DIR)
        elif k == 'fsyncdir':
            pass
        else:
            raise ValueError(k)

    def finish(self, op, res):
        if op.kind == 'otrunc' and res.err is None:
            # Truncated to zero, written and closed: the close ordered
            # its data before everything after it (ext4's
            # auto_da_alloc), as good as durable for a later crash.
            self.inodes[op.ino].make_durable()
        if not res.synced:
            return
        if op.kind == 'fsyncdir':
            for p in list(self.allowed):
                if parent(p) == op.path:
                    self.pin(p)
            for p in self.children(op.path):
                self.pin(p)
            return
        self.inodes[op.ino].make_durable()
        if op.sync == 'fsync':
            self.pin(op.path)

    def gc(self):
        """Forget inodes nothing can show any more."""
        live = {s for s in self.paths.values() if s != DIR}
        for states in self.allowed.values():
            live |= {s for s in states if isinstance(s, int)}
        for ino in list(self.inodes):
            if ino not in live:
                del self.inodes[ino]

    @classmethod
    def from_tree(cls, tree, contents):
        """A model whose current and durable state is TREE (as scan()
        returns it) with CONTENTS ({real inode: bytes})."""
        m = cls()
        ids = {}
        for p in sorted(tree):
            s = tree[p]
            if s == DIR:
                m.paths[p] = DIR
            else:
                if s not in ids:
                    ids[s] = m.new_inode(contents[s])
                m.paths[p] = ids[s]
        m.allowed = {p: {s} for p, s in m.paths.items()}
        m.hist = {p: [(-1, s)] for p, s in m.paths.items()}
        return m

    def horizon(self, tree):
        """The latest operation a crash visibly kept: the highest birth
        of the names in TREE (-1: none). Every operation before it had
        returned when it started, so none of them may be missing."""
        return max((self.birth[p] for p in tree if p in self.birth),
                   default=-1)

    @staticmethod
    def since(events, h):
        """The values EVENTS ((seq, value), in order) may show after a
        crash that kept operation H: the value as of the last event
        before H, and any later one."""
        k = max((i for i, (seq, _) in enumerate(events) if seq < h),
                default=0)
        return {v for _, v in events[k:]}

    def attr_check(self, ino, got, h):
        """None if GOT ({name: value}) is what inode INO may show after a
        crash that kept operation H, else what is wrong."""
        for a in ATTRS:
            ok = self.since(self.attrs[ino][a], h)
            if None not in ok and got[a] not in ok:
                return (f'{a} is {fmt_attr(a, got[a])}, but an operation '
                        f'before the last one kept (op {h}) set '
                        f'{", ".join(fmt_attr(a, v) for v in ok)}')
        return None


# ---- operations ------------------------------------------------------------

class Op:
    __slots__ = ('kind', 'path', 'path2', 'off', 'data', 'size', 'sync',
                 'rdonly', 'ino', 'seq')

    def __init__(self, kind, path, path2=None, off=None, data=None,
                 size=None, sync=None, rdonly=False):
        # size: the new size (truncate), mode (chmod), uid (chown) or
        # mtime in ns (utime)
        self.kind, self.path, self.path2 = kind, path, path2
        self.off, self.data, self.size = off, data, size
        self.sync, self.rdonly, self.ino = sync, rdonly, None
        self.seq = None

    def __repr__(self):
        parts = [self.kind, repr(self.path)]
        if self.path2 is not None:
            parts.append(f'-> {self.path2!r}')
        if self.off is not None:
            parts.append(f'@{self.off}')
        if self.data is not None:
            parts.append(short(self.data))
        if self.size is not None:
            name = ATTR_OF.get(self.kind, 'size')
            parts.append(f'{name}={fmt_attr(name, self.size)}')
        if self.sync and self.kind != 'fsyncdir':
            parts.append(f'+{self.sync}' + ('(ro)' if self.rdonly else ''))
        return ' '.join(parts)


class Result:
    __slots__ = ('err', 'step', 'synced', 'sync_err')

    def __init__(self):
        self.err = None       # (errno, step) of the first error, if any
        self.step = None
        self.synced = False   # the op's fsync/fdatasync/fsyncdir returned 0
        self.sync_err = None  # errno of that sync, if it failed

    def __repr__(self):
        if self.err is None:
            return 'ok'
        return f'{errno.errorcode.get(self.err, self.err)} in {self.step}'


def write_all(fd, data, off=None):
    view = memoryview(data)
    done = 0
    while done < len(view):
        if off is None:
            n = os.write(fd, view[done:done + 8 * MiB])
        else:
            n = os.pwrite(fd, view[done:done + 8 * MiB], off + done)
        if n <= 0:
            raise OSError(errno.EIO, 'short write')
        done += n


def sync_fd(res, sync, fd):
    """SYNC(fd), noted in RES: synced, or sync_err and the OSError."""
    try:
        sync(fd)
        res.synced = True
    except OSError as exc:
        res.sync_err = exc.errno
        raise


FALLOC_PUNCH = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE
FALLOC_ZERO = 0x10           # FALLOC_FL_ZERO_RANGE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                            ctypes.c_int64)


def fallocate(fd, mode, off, n):
    if _libc.fallocate(fd, mode, off, n) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def execute(op, root):
    """Runs OP on the tree at ROOT; never raises OSError (see Result)."""
    res = Result()
    path = os.path.join(root, op.path) if op.path else root
    k = op.kind
    fd = None
    step = k
    try:
        if k in ('create', 'write', 'otrunc', 'append', 'fsync'):
            if k == 'create':
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            elif k == 'otrunc':
                flags = os.O_WRONLY | os.O_TRUNC
            elif k == 'append':
                flags = os.O_WRONLY | os.O_APPEND
            elif k == 'fsync':
                flags = os.O_RDONLY if op.rdonly else os.O_RDWR
            else:
                flags = os.O_WRONLY
            step = 'open'
            fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
            if op.data:
                step = 'write'
                write_all(fd, op.data, op.off if k == 'write' else None)
            if op.sync:
                step = op.sync
                sync_fd(res, os.fsync if op.sync == 'fsync' else
                        os.fdatasync, fd)
            step = 'close'
            f, fd = fd, None
            os.close(f)
        elif k == 'truncate':
            os.truncate(path, op.size)
        elif k in ('punch', 'zero'):
            step = 'open'
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            step = 'fallocate'
            fallocate(fd, FALLOC_PUNCH if k == 'punch' else FALLOC_ZERO,
                      op.off, op.size)
            step = 'close'
            f, fd = fd, None
            os.close(f)
        elif k == 'replace':
            step = 'open'
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                         os.O_CLOEXEC, 0o644)
            step = 'write'
            write_all(fd, op.data)
            step = 'close'
            f, fd = fd, None
            os.close(f)
            step = 'rename'
            os.rename(path, os.path.join(root, op.path2))
        elif k == 'chmod':
            os.chmod(path, op.size)
        elif k == 'chown':
            os.chown(path, op.size, -1)
        elif k == 'utime':
            os.utime(path, ns=(op.size, op.size))
        elif k == 'rename':
            os.rename(path, os.path.join(root, op.path2))
        elif k == 'link':
            os.link(path, os.path.join(root, op.path2))
        elif k == 'unlink':
            os.unlink(path)
        elif k == 'mkdir':
            os.mkdir(path, 0o755)
        elif k == 'rmdir':
            os.rmdir(path)
        elif k == 'fsyncdir':
            step = 'open'
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            step = 'fsyncdir'
            sync_fd(res, os.fsync, fd)
            step = 'close'
            f, fd = fd, None
            os.close(f)
    except OSError as exc:
        res.err, res.step = exc.errno, step
    finally:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    return res


# ---- the generator ---------------------------------------------------------

class Generator:
    """Draws operations from RNG that are valid on MODEL's current tree.
    With big, also writes of several MiB and the fsync-then-append
    sequence (a fsync'd file of several MiB, then an unsynced append of
    more than a flush pass)."""

    WEIGHTS = {
        'create': 8, 'write': 10, 'overwrite': 8, 'otrunc': 5,
        'truncate': 5, 'append': 8, 'rename': 4, 'link': 3, 'unlink': 4,
        'mkdir': 3, 'rmdir': 2, 'fsync': 6, 'fdatasync': 4, 'fsyncdir': 4,
        'big': 2, 'fsync_append': 2, 'replace': 4, 'chmod': 3,
        'chown': 2, 'utime': 3, 'punch': 3, 'zero': 2,
    }

    def __init__(self, rng, model, big=True):
        self.rng = rng
        self.model = model
        self.big = big
        self.queue = []
        self.names = 0
        self.last_big_append = False

    def name(self, prefix):
        self.names += 1
        return f'{prefix}{self.names}'

    def length(self):
        r = self.rng.random()
        if r < 0.45:
            return self.rng.randint(1, 4096)
        if r < 0.7:
            return self.rng.randint(4097, 64 * 1024)
        if r < 0.92:
            return self.rng.randint(64 * 1024, 600 * 1024)
        return self.rng.randint(600 * 1024, 2 * MiB)

    def data(self, n):
        rng = self.rng
        r = rng.random()
        if r < 0.06:
            return bytes(n)
        if r < 0.16:
            line = b'line %d of some text\n' % rng.randint(0, 999)
            return (line * (n // len(line) + 1))[:n]
        if r < 0.22:
            files = self.model.files()
            if files:
                src = self.model.inodes[self.model.paths[rng.choice(files)]]
                if len(src.cur) >= n:
                    off = rng.randint(0, len(src.cur) - n)
                    return bytes(src.cur[off:off + n])
        return rng.randbytes(n)

    def new_path(self, prefix):
        dirs = [d for d in self.model.dirs() if depth(d) < MAX_DEPTH + 1]
        d = self.rng.choice(dirs)
        n = self.name(prefix)
        return f'{d}/{n}' if d else n

    def sync_kind(self, p_sync=0.25):
        r = self.rng.random()
        if r < p_sync * 0.6:
            return 'fsync'
        if r < p_sync:
            return 'fdatasync'
        return None

    def next(self):
        self.last_big_append = False
        if self.queue:
            op = self.queue.pop(0)
            self.last_big_append = op.kind == 'append' and \
                len(op.data) > 8 * MiB
            return op
        while True:
            op = self.draw()
            if op is not None:
                return op

    def draw(self):
        rng, m = self.rng, self.model
        kinds = list(self.WEIGHTS)
        weights = [self.WEIGHTS[k] for k in kinds]
        if not self.big:
            weights[kinds.index('big')] = 0
            weights[kinds.index('fsync_append')] = 0
        kind = rng.choices(kinds, weights)[0]
        files = m.files()
        dirs = m.dirs()
        total = m.total_bytes()
        full = total > MAX_TOTAL
        if full and kind in ('create', 'write', 'append', 'big',
                             'fsync_append', 'link', 'replace'):
            # Make room: cut or remove one of the largest files.
            big = sorted(files, key=lambda q: (-len(m.inodes[m.paths[q]].cur),
                                               q))[:3]
            p = rng.choice(big)
            r = rng.random()
            if r < 0.4:
                return Op('unlink', p)
            if r < 0.7:
                return Op('truncate', p, size=rng.randint(
                    0, len(m.inodes[m.paths[p]].cur) // 4))
            return Op('otrunc', p, data=self.data(self.length()),
                      sync=self.sync_kind())
        if kind == 'create' or (not files and kind not in
                                ('mkdir', 'fsyncdir')):
            if len(files) >= MAX_FILES:
                return None
            n = rng.choice([0, rng.randint(1, 100), self.length()])
            return Op('create', self.new_path('f'), data=self.data(n),
                      sync=self.sync_kind(0.3), rdonly=False)
        if kind in ('write', 'overwrite', 'append', 'otrunc', 'truncate',
                    'fsync', 'fdatasync', 'big', 'fsync_append', 'punch',
                    'zero'):
            p = rng.choice(files)
            size = len(m.inodes[m.paths[p]].cur)
            if kind in ('punch', 'zero'):
                # a hole in the middle, at an edge, or past the end
                if size == 0 and kind == 'punch':
                    return None
                off = rng.randint(0, size + (4096 if kind == 'zero' else
                                             0))
                n = rng.choice([rng.randint(1, 4096), self.length(),
                                max(1, size - off)])
                if off + n > MAX_FILE or total + n > MAX_TOTAL:
                    return None
                return Op(kind, p, off=off, size=n)
            if kind == 'write':
                off = rng.randint(0, size + rng.choice([0, 4096, 300_000]))
                n = self.length()
                if off + n > MAX_FILE:
                    return None
                return Op('write', p, off=off, data=self.data(n),
                          sync=self.sync_kind())
            if kind == 'overwrite':
                if size == 0:
                    return None
                off = rng.randint(0, size - 1)
                n = min(self.length(), size - off)
                return Op('write', p, off=off, data=self.data(n),
                          sync=self.sync_kind())
            if kind == 'append':
                n = self.length()
                if size + n > MAX_FILE:
                    return None
                return Op('append', p, data=self.data(n),
                          sync=self.sync_kind())
            if kind == 'otrunc':
                n = rng.choice([0, rng.randint(1, 64), self.length()])
                return Op('otrunc', p, data=self.data(n),
                          sync=self.sync_kind())
            if kind == 'truncate':
                r = rng.random()
                if r < 0.5 and size:
                    new = rng.randint(0, size - 1)
                elif r < 0.6:
                    new = 0
                else:
                    new = size + rng.choice([1, 4095, 70_000, 1 * MiB])
                    if new > MAX_FILE:
                        return None
                return Op('truncate', p, size=new)
            if kind in ('fsync', 'fdatasync'):
                return Op('fsync', p, sync=kind, rdonly=rng.random() < 0.3)
            if kind == 'big':
                n = rng.randint(2 * MiB, 9 * MiB)
                if size + n > MAX_FILE or total + n > MAX_TOTAL:
                    return None
                if rng.random() < 0.5:
                    return Op('append', p, data=rng.randbytes(n),
                              sync='fsync')
                off = rng.randint(0, size)
                return Op('write', p, off=off, data=rng.randbytes(n),
                          sync=self.sync_kind(0.7))
            # fsync_append: a new file of several MiB, fsync'd, then an
            # unsynced append larger than a flush pass (8 MiB): what lost
            # the fsync'd tail chunk of defect 2.
            n = rng.randint(2 * MiB, 6 * MiB) + rng.randint(0, 4095)
            more = rng.randint(8 * MiB + MiB // 2, 10 * MiB)
            if len(files) >= MAX_FILES or total + n + more > MAX_TOTAL:
                return None
            p = self.new_path('big')
            self.queue.append(Op('append', p, data=rng.randbytes(more)))
            return Op('create', p, data=rng.randbytes(n), sync='fsync')
        if kind == 'rename':
            if rng.random() < 0.25 and len(dirs) > 1:
                src = rng.choice(dirs[1:])
                targets = [d for d in dirs if d != src and
                           not d.startswith(src + '/') and
                           depth(d) + 1 + self.subtree_depth(src) <=
                           MAX_DEPTH + 1]
                if not targets:
                    return None
                d = rng.choice(targets)
                n = self.name('d')
                return Op('rename', src, path2=f'{d}/{n}' if d else n)
            src = rng.choice(files)
            if rng.random() < 0.4 and len(files) > 1:
                dst = rng.choice(files)
                if m.paths[dst] == m.paths[src]:
                    return None
                return Op('rename', src, path2=dst)
            return Op('rename', src, path2=self.new_path('f'))
        if kind == 'replace':
            n = self.length()
            if total + n > MAX_TOTAL:
                return None
            return Op('replace', self.new_path('t'),
                      path2=rng.choice(files), data=self.data(n))
        if kind == 'chmod':
            return Op('chmod', rng.choice(files), size=rng.choice(MODES))
        if kind == 'chown':
            return Op('chown', rng.choice(files), size=rng.choice(UIDS))
        if kind == 'utime':
            return Op('utime', rng.choice(files),
                      size=UTIME_BASE + rng.randrange(10**9) * 1000 +
                      rng.randrange(1000))
        if kind == 'link':
            if len(files) >= MAX_FILES:
                return None
            return Op('link', rng.choice(files), path2=self.new_path('l'))
        if kind == 'unlink':
            return Op('unlink', rng.choice(files))
        if kind == 'mkdir':
            if len(dirs) - 1 >= MAX_DIRS:
                return None
            d = rng.choice([d for d in dirs if depth(d) < MAX_DEPTH])
            n = self.name('d')
            return Op('mkdir', f'{d}/{n}' if d else n)
        if kind == 'rmdir':
            empty = [d for d in dirs[1:] if not m.children(d)]
            if not empty:
                return None
            return Op('rmdir', rng.choice(empty))
        if kind == 'fsyncdir':
            return Op('fsyncdir', rng.choice(dirs), sync='fsyncdir')
        raise AssertionError(kind)

    def subtree_depth(self, d):
        """Levels below D (0 for an empty or file-only directory)."""
        best = 0
        for p, s in self.model.paths.items():
            if p.startswith(d + '/') and s == DIR:
                best = max(best, p.count('/') - d.count('/'))
        return best


# ---- reading the tree back -------------------------------------------------

def scan(root, unreadable=None):
    """{path: DIR, or the real inode number of a regular file} of the
    tree at ROOT, and {real inode: bytes}. Raises Failure on an error or
    an entry of another type; with UNREADABLE (a dict), a file whose read
    fails with EIO is left out and its path added to
    UNREADABLE[real inode] instead (damage the filesystem may report)."""
    tree, contents = {}, {}
    stack = ['']
    while stack:
        d = stack.pop()
        dpath = os.path.join(root, d) if d else root
        try:
            names = sorted(os.listdir(dpath))
        except OSError as exc:
            raise Failure(f'listing {d or "/"!r} failed: {exc}')
        for name in names:
            p = f'{d}/{name}' if d else name
            full = os.path.join(root, p)
            try:
                st = os.lstat(full)
                if stat.S_ISDIR(st.st_mode):
                    tree[p] = DIR
                    stack.append(p)
                    continue
                if not stat.S_ISREG(st.st_mode):
                    raise Failure(f'{p!r} has mode {st.st_mode:o}')
                if unreadable is not None and st.st_ino in unreadable:
                    unreadable[st.st_ino].append(p)
                    continue
                if st.st_ino not in contents:
                    contents[st.st_ino] = read_file(full)
                tree[p] = st.st_ino
            except OSError as exc:
                if unreadable is None or exc.errno != errno.EIO:
                    raise Failure(f'reading {p!r} failed: {exc}')
                unreadable[st.st_ino] = [p]
    return tree, contents


def read_file(path):
    with open(path, 'rb', buffering=0) as f:
        got = f.read()
        while True:
            more = f.read()
            if not more:
                break
            got += more
    return got


def flip(path, rng, places=4, n=16):
    """Inverts N bytes at PLACES random offsets of PATH (bit rot under a
    stopped process); returns the offsets."""
    size = os.path.getsize(path)
    offs = sorted(rng.randrange(max(1, size - n)) for _ in range(places))
    with open(path, 'r+b') as f:
        for off in offs:
            f.seek(off)
            old = f.read(n)
            f.seek(off)
            f.write(bytes(b ^ 0xFF for b in old))
    return offs


def rot(db_dir, suffixes, rng):
    """Flips bytes in one of DB_DIR's files whose name ends in one of
    SUFFIXES and that holds something; returns a description, or None
    when there is no such file."""
    names = sorted(n for n in os.listdir(db_dir) if n.endswith(suffixes) and
                   os.path.getsize(os.path.join(db_dir, n)) > 64)
    if not names:
        return None
    name = rng.choice(names)
    offs = flip(os.path.join(db_dir, name), rng)
    return f'{name} at {offs}'


def scan_attrs(root, tree):
    """{real inode: {attribute: value}} of the regular files of TREE (as
    scan() returns it). Raises Failure on an error."""
    out = {}
    for p, s in tree.items():
        if s == DIR or s in out:
            continue
        try:
            st = os.lstat(os.path.join(root, p))
        except OSError as exc:
            raise Failure(f'stat of {p!r} failed: {exc}')
        out[s] = {'mode': st.st_mode & 0o7777, 'uid': st.st_uid,
                  'mtime': st.st_mtime_ns}
    return out


def first_diff(a, b):
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def compare_exact(model, tree, contents, what):
    """Differences between MODEL's current tree and TREE/CONTENTS (as
    scan() returns them): names, types, hard-link groups, bytes."""
    diffs = []
    names = set(model.paths) | set(tree)
    link = {}  # model inode -> real inode
    back = {}
    for p in sorted(names):
        want, got = model.paths.get(p), tree.get(p)
        if want is None or got is None or (want == DIR) != (got == DIR):
            diffs.append(f'{p!r}: model has '
                         f'{"a directory" if want == DIR else "nothing" if want is None else "a file"}, '
                         f'{what} has '
                         f'{"a directory" if got == DIR else "nothing" if got is None else "a file"}')
            continue
        if want == DIR:
            continue
        if link.setdefault(want, got) != got or \
                back.setdefault(got, want) != want:
            diffs.append(f'{p!r}: hard links differ from the model\'s')
            continue
        cur = model.inodes[want].cur
        data = contents[got]
        if data != cur:
            off = first_diff(data, cur)
            diffs.append(
                f'{p!r}: {what} has {len(data)} bytes, the model '
                f'{len(cur)}; first difference at {off} '
                f'({what}: {bytes(data[off:off + 16])!r}, model: '
                f'{bytes(cur[off:off + 16])!r})')
    return diffs


def compare_attrs(model, tree, attrs, what):
    """Attributes of TREE's files that differ from the values the model
    knows."""
    diffs = []
    for p in sorted(tree):
        ino = model.paths.get(p)
        if tree[p] == DIR or ino in (None, DIR):
            continue
        for a in ATTRS:
            want, got = model.attr(ino, a), attrs[tree[p]][a]
            if want is not None and got != want:
                diffs.append(f'{p!r}: {what} has {a} '
                             f'{fmt_attr(a, got)}, the model '
                             f'{fmt_attr(a, want)}')
    return diffs


def check_exact(model, root, what='the mount'):
    tree, contents = scan(root)
    diffs = compare_exact(model, tree, contents, what)
    if not diffs:
        diffs = compare_attrs(model, tree, scan_attrs(root, tree), what)
    if diffs:
        raise Failure(f'{len(diffs)} differences between the model and '
                      f'{what}:\n  ' + '\n  '.join(diffs[:20]))
    return tree, contents


def check_crash(model, root, unreadable=None):
    """Checks the tree at ROOT after a crash against what MODEL allows;
    returns scan(root). Raises Failure listing the violations. With
    UNREADABLE (a dict), files that fail with EIO are listed there
    (scan) and not checked."""
    tree, contents = scan(root, unreadable)
    gone = {p for ps in (unreadable or {}).values() for p in ps}
    attrs = scan_attrs(root, tree)
    h = model.horizon(tree)
    problems = []
    groups = {}   # real inode -> set of model inodes all its names allow
    names = {}    # real inode -> its paths
    for p in sorted(set(model.allowed) | set(tree)):
        if any(tree.get(a) != DIR for a in ancestors(p)):
            continue  # under a directory that is not there: gone with it
        if p in gone:
            continue  # unreadable: the caller checks it was reported
        allowed = model.allowed.get(p, {None})
        if p in model.hist:
            # no later operation kept while an earlier one was lost
            allowed = allowed & Model.since(model.hist[p], h)
        got = tree.get(p)
        if got is None:
            if None not in allowed:
                problems.append(f'{p!r} is missing (allowed: '
                                f'{fmt_states(allowed)})')
        elif got == DIR:
            if DIR not in allowed:
                problems.append(f'{p!r} is a directory (allowed: '
                                f'{fmt_states(allowed)})')
        else:
            cands = {s for s in allowed if isinstance(s, int)}
            if not cands:
                problems.append(f'{p!r} is a file (allowed: '
                                f'{fmt_states(allowed)})')
                continue
            groups[got] = groups.get(got, cands) & cands
            names.setdefault(got, []).append(p)
    for real, cands in groups.items():
        ps = names[real]
        if not cands:
            problems.append(f'{ps} are one file, but no model inode is '
                            f'allowed at all of them')
            continue
        data = contents[real]
        errs = []
        for ino in sorted(cands, reverse=True):
            err = model.inodes[ino].crash_check(data) or \
                model.attr_check(ino, attrs[real], h)
            if err is None:
                break
            errs.append(f'as {model.inodes[ino]}: {err}')
        else:
            problems.append(f'{ps}: ' + '; '.join(errs))
    if problems:
        raise Failure(f'{len(problems)} violations after the crash:\n  ' +
                      '\n  '.join(problems[:20]))
    return tree, contents


def fmt_states(states):
    return '{' + ', '.join(sorted('absent' if s is None else 'dir'
                                  if s == DIR else f'inode#{s}'
                                  for s in states)) + '}'


def sync_tree(root, tree):
    """fsync every file (once per inode) and every directory, deepest
    first, the root last. Raises Failure on an error."""
    seen = set()
    for p in sorted(tree, key=lambda q: -q.count('/')):
        if tree[p] == DIR or tree[p] in seen:
            continue
        seen.add(tree[p])
        op = Op('fsync', p, sync='fsync', rdonly=True)
        res = execute(op, root)
        if res.err is not None:
            raise Failure(f'fsync of {p!r} after the crash: {res}')
    for d in sorted((p for p in tree if tree[p] == DIR),
                    key=lambda q: -q.count('/')) + ['']:
        res = execute(Op('fsyncdir', d, sync='fsyncdir'), root)
        if res.err is not None:
            raise Failure(f'fsync of directory {d or "/"!r} after the '
                          f'crash: {res}')


def run_op(op, root, timeout, on_start=None):
    """Runs OP on ROOT in a thread; calls ON_START() (which may kill the
    daemon) while it runs, then waits for the thread (bounded). Returns
    the Result."""
    box = {}

    def body():
        box['res'] = execute(op, root)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    if on_start:
        on_start()
    t.join(timeout)
    if t.is_alive():
        raise Failure(f'{op} did not return within {timeout}s')
    return box['res']


def sleep(seconds):
    """A deliberate pause in the workload (background flushes run), not a
    wait for a condition."""
    time.sleep(seconds)
