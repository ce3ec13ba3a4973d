#!/usr/bin/env node
// selftest.mjs: runs the interop scripts of this folder on small trees and
// CARs it builds itself, so the reference side is known to work before
// blockfs produces anything. `npm test` runs it; so does
// tests/integration/test_interop_tools.py (through interop.py).
//
// Usage: node selftest.mjs [-v]
//
// Exit status: 0 every check passed; 1 one failed (named on stderr).
// Leaves nothing behind (its scratch directory is under os.tmpdir()).

import { spawnSync } from 'node:child_process'
import { chmod, lutimes, mkdir, mkdtemp, rm, symlink, utimes, writeFile, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CarWriter } from '@ipld/car/writer'
import { CarIndexedReader } from '@ipld/car/indexed-reader'
import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'

const HERE = dirname(fileURLToPath(import.meta.url))
const VERBOSE = process.argv.includes('-v')
// The empty UnixFS directory (Data 0x0801, no links) as a CIDv1: the root
// the importer wraps around nothing.
const EMPTY_DIR_CID = 'bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354'

let checks = 0
let failures = 0

function expect (cond, what) {
  checks++
  if (cond) {
    if (VERBOSE) process.stdout.write(`ok: ${what}\n`)
  } else {
    failures++
    process.stderr.write(`selftest: FAILED: ${what}\n`)
  }
}

/** Runs one of the scripts; returns { code, stdout, stderr }. */
function script (name, ...args) {
  const r = spawnSync(process.execPath, [join(HERE, name), ...args], {
    encoding: 'utf8', timeout: 120_000
  })
  if (r.error) throw r.error
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/**
 * The protobuf fields of `bytes`, in order: { num, bytes } with the bytes of
 * a length-delimited field, null for the others.
 */
function pbFields (bytes) {
  const fields = []
  let i = 0
  const varint = () => {
    let v = 0n
    let shift = 0n
    for (;;) {
      const b = bytes[i++]
      v |= BigInt(b & 0x7f) << shift
      if ((b & 0x80) === 0) return v
      shift += 7n
    }
  }
  while (i < bytes.length) {
    const key = Number(varint())
    const field = { num: key >> 3, bytes: null }
    switch (key & 7) {
      case 0: varint(); break
      case 1: i += 8; break
      case 2: {
        const n = Number(varint())
        field.bytes = bytes.subarray(i, i + n)
        i += n
        break
      }
      case 5: i += 4; break
      default: throw new Error(`wire type ${key & 7}`)
    }
    fields.push(field)
  }
  return fields
}

const hasField = (bytes, num) => pbFields(bytes).some((f) => f.num === num)

async function blockOf (reader, cid) {
  const b = await reader.get(typeof cid === 'string' ? CID.parse(cid) : cid)
  if (b == null) throw new Error(`block ${cid} missing from the CAR`)
  return b.bytes
}

async function unixfsOf (reader, cid) {
  const node = dagPb.decode(await blockOf(reader, cid))
  return { node, data: node.Data, unixfs: UnixFS.unmarshal(node.Data) }
}

async function writeCar (path, roots, blocks) {
  const { writer, out } = CarWriter.create(roots)
  const chunks = []
  const collect = (async () => { for await (const c of out) chunks.push(c) })()
  for (const b of blocks) await writer.put(b)
  await writer.close()
  await collect
  await writeFile(path, Buffer.concat(chunks))
}

function copyTree (from, to) {
  const r = spawnSync('cp', ['-a', from, to])
  if (r.status !== 0) throw new Error(`cp -a ${from} ${to}: ${r.stderr}`)
}

async function block (codec, bytes) {
  return { cid: CID.createV1(codec, await sha256.digest(bytes)), bytes }
}

/** A small tree with every kind of entry the importer handles. */
async function makeTree (t) {
  await mkdir(join(t, 'sub', 'deeper'), { recursive: true })
  await mkdir(join(t, 'empty'))
  await mkdir(join(t, 'many'))
  await writeFile(join(t, 'empty-file'), '')
  await writeFile(join(t, 'hello'), 'hello\n')
  await writeFile(join(t, 'sub', 'zero-ns'), 'zero nanoseconds\n')
  // 180 chunks of 1 KiB at --chunker fixed:1024: two levels of 174 links.
  const big = Buffer.alloc(180 * 1024 + 17)
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919 + (i >> 10)) & 0xff
  await writeFile(join(t, 'sub', 'deeper', 'big'), big)
  for (let i = 0; i < 60; i++) {
    await writeFile(join(t, 'many', `entry-with-a-long-name-${String(i).padStart(3, '0')}`), `${i}\n`)
  }
  await symlink('../hello', join(t, 'sub', 'link'))
  await chmod(join(t, 'hello'), 0o600)
  await chmod(join(t, 'sub'), 0o750)
  await utimes(join(t, 'hello'), 1_000_000_000.123, 1_000_000_000.123)
  await utimes(join(t, 'sub', 'zero-ns'), 1_500_000_000, 1_500_000_000)
  await lutimes(join(t, 'sub', 'link'), 1_600_000_000, 1_600_000_000)
  const fifo = spawnSync('mkfifo', [join(t, 'fifo')])
  return { big, hasFifo: fifo.status === 0 }
}

async function testImporter (s, tree) {
  const r1 = script('importer-cid.mjs', '--json', '--chunker', 'fixed:1024', '--car', join(s, 'tree.car'), tree)
  expect(r1.code === 0, `importer-cid --json exits 0 (${r1.stderr.trim()})`)
  const out = JSON.parse(r1.stdout)
  const byPath = new Map(out.entries.map((e) => [e.path, e]))
  expect(/^bafy/.test(out.root), `the root ${out.root} is a CIDv1 dag-pb`)
  expect(byPath.get('')?.cid === out.root, 'the root is the entry with path ""')
  for (const p of ['hello', 'empty-file', 'sub', 'sub/link', 'sub/deeper/big', 'empty', 'many', 'many/entry-with-a-long-name-059']) {
    expect(byPath.has(p), `importer-cid lists ${p}`)
  }
  expect(byPath.get('sub/link')?.type === 'symlink', 'a symlink is a UnixFS symlink')

  const r2 = script('importer-cid.mjs', '--chunker', 'fixed:1024', tree)
  expect(r2.code === 0 && r2.stdout.trim() === out.root, 'the plain output is the same root CID')
  const r3 = script('importer-cid.mjs', tree)
  expect(r3.code === 0 && /^bafy/.test(r3.stdout.trim()) && r3.stdout.trim() !== out.root,
    'the default 256 KiB chunker gives another root')

  const reader = await CarIndexedReader.fromFile(join(s, 'tree.car'))
  try {
    const hello = await unixfsOf(reader, byPath.get('hello').cid)
    expect(hello.unixfs.type === 'file' && hello.node.Links.length === 0 &&
      new TextDecoder().decode(hello.unixfs.data) === 'hello\n',
    'a one-chunk file with metadata is a dag-pb node holding its bytes')
    expect(hello.unixfs.mode === 0o600, 'mode 0600 is kept')
    expect(hello.unixfs.mtime?.secs === 1_000_000_000n && hello.unixfs.mtime?.nsecs > 0,
      'mtime keeps its nanoseconds')
    const zero = await unixfsOf(reader, byPath.get('sub/zero-ns').cid)
    const mtime = pbFields(zero.data).find((f) => f.num === 8)
    expect(mtime != null && hasField(mtime.bytes, 1) && !hasField(mtime.bytes, 2),
      'zero mtime nanoseconds are omitted')
    expect(!hasField(zero.data, 7), 'the default file mode 0644 is omitted')
    const sub = await unixfsOf(reader, byPath.get('sub').cid)
    expect(sub.unixfs.type === 'directory' && sub.unixfs.mode === 0o750, 'a directory keeps mode 0750')
    const deeper = await unixfsOf(reader, byPath.get('sub/deeper').cid)
    expect(!hasField(deeper.data, 7), 'the default directory mode 0755 is omitted')
    const big = await unixfsOf(reader, byPath.get('sub/deeper/big').cid)
    expect(big.node.Links.length === 2, `a 180-chunk file has 2 links at its root (${big.node.Links.length})`)
    const level1 = dagPb.decode(await blockOf(reader, big.node.Links[0].Hash))
    expect(level1.Links.length === 174 && level1.Links[0].Hash.code === raw.code,
      'the balanced layout fills 174 raw leaves under the first interior node')
    const root = await unixfsOf(reader, out.root)
    const emptyLink = root.node.Links.find((l) => l.Name === 'empty')
    expect(emptyLink != null && emptyLink.Hash.toString() === byPath.get('empty').cid,
      'an empty directory (which the importer does not yield) is listed with its CID')
    expect(root.node.Links.every((l, i, a) => i === 0 || a[i - 1].Name < l.Name) &&
      !root.node.Links.some((l) => l.Name === 'fifo'), 'the root links are sorted and hold no FIFO')
    const many = await unixfsOf(reader, byPath.get('many').cid)
    expect(many.unixfs.type === 'directory', 'a small directory is not sharded at 256 KiB')
  } finally {
    await reader.close()
  }

  const r4 = script('importer-cid.mjs', '--json', '--shard-bytes', '1000', '--car', join(s, 'shard.car'), tree)
  expect(r4.code === 0, `importer-cid --shard-bytes 1000 exits 0 (${r4.stderr.trim()})`)
  const sharded = JSON.parse(r4.stdout)
  const shardReader = await CarIndexedReader.fromFile(join(s, 'shard.car'))
  try {
    const many = await unixfsOf(shardReader, sharded.entries.find((e) => e.path === 'many').cid)
    expect(many.unixfs.type === 'hamt-sharded-directory' && many.unixfs.fanout === 256n,
      'past --shard-bytes a directory is a HAMT of fanout 256')
  } finally {
    await shardReader.close()
  }

  // The sharding rule the importer follows (see walk() in lib.mjs), pinned:
  // 22 links of 9 + 36 bytes = 990 <= 1000; an empty subdirectory adds 46
  // (1036: a HAMT), a non-empty one counts 0.
  for (const [name, sub, want] of [['flat-plain', null, 'directory'],
    ['flat-full-sub', 'full', 'directory'], ['hamt-empty-sub', 'empty', 'hamt-sharded-directory']]) {
    const d = join(s, name, 'D')
    await mkdir(d, { recursive: true })
    for (let i = 10; i < 32; i++) await writeFile(join(d, `file-00${i}`), `${i}\n`)
    if (sub != null) await mkdir(join(d, 'zzzzzzzzzz'))
    if (sub === 'full') await writeFile(join(d, 'zzzzzzzzzz', 'f'), 'f')
    const r = script('importer-cid.mjs', '--json', '--shard-bytes', '1000', join(s, name))
    const type = r.code === 0 ? JSON.parse(r.stdout).entries.find((e) => e.path === 'D')?.type : r.stderr
    expect(type === want, `shard rule: ${name} is a ${want} (${type})`)
  }

  await mkdir(join(s, 'nothing'))
  const r5 = script('importer-cid.mjs', '--wrap', join(s, 'nothing'))
  expect(r5.code === 0 && r5.stdout.trim() === EMPTY_DIR_CID, `--wrap of an empty directory is ${EMPTY_DIR_CID}`)

  const r6 = script('importer-cid.mjs', '--chunker', 'fastcdc', tree)
  expect(r6.code === 2 && /fixed:N/.test(r6.stderr), 'an unknown chunker is a usage error')
  const r7 = script('importer-cid.mjs', join(s, 'does-not-exist'))
  expect(r7.code === 2 && /ENOENT/.test(r7.stderr), 'a missing DIR exits 2 naming the error')
  const r8 = script('importer-cid.mjs', '--help')
  expect(r8.code === 0 && /usage:/.test(r8.stdout), '--help prints the usage')
  return out.root
}

async function testCarCheck (s, tree, hasFifo) {
  const ok = script('car-check.mjs', '--meta', '--json', join(s, 'tree.car'), tree)
  expect(ok.code === 0, `car-check of the importer's CAR passes (${ok.stderr.trim()})`)
  const sum = JSON.parse(ok.stdout || '{}')
  expect(sum.files === 64 && sum.symlinks === 1 && sum.dirs === 5, `car-check counted 64 files, 1 symlink, 5 directories (${ok.stdout})`)
  expect(!hasFifo || sum.skipped === 1, 'the FIFO is left out and counted')
  const shard = script('car-check.mjs', join(s, 'shard.car'), tree)
  expect(shard.code === 0, `car-check reads a HAMT-sharded directory (${shard.stderr.trim()})`)

  const other = join(s, 'other')
  copyTree(tree, other)
  const big = join(other, 'sub', 'deeper', 'big')
  const bytes = await readFile(big)
  bytes[100_000] ^= 1
  await writeFile(big, bytes)
  await rm(join(other, 'many', 'entry-with-a-long-name-007'))
  await writeFile(join(other, 'sub', 'extra'), 'x')
  const bad = script('car-check.mjs', join(s, 'tree.car'), other)
  expect(bad.code === 1, 'car-check of a changed tree exits 1')
  expect(/sub\/deeper\/big: bytes differ from offset 100000/.test(bad.stderr), 'a changed byte is found at its offset')
  expect(/many\/entry-with-a-long-name-007: in the CAR but not in DIR/.test(bad.stderr), 'a removed file is named')
  expect(/sub\/extra: missing from the CAR/.test(bad.stderr), 'an added file is named')

  const meta = join(s, 'meta')
  copyTree(tree, meta)
  await utimes(join(meta, 'hello'), 1_000_000_001, 1_000_000_001)
  const m1 = script('car-check.mjs', join(s, 'tree.car'), meta)
  expect(m1.code === 0, 'without --meta an mtime change is not a difference')
  const m2 = script('car-check.mjs', '--meta', join(s, 'tree.car'), meta)
  expect(m2.code === 1 && /hello: mtime/.test(m2.stderr), 'with --meta an mtime change is found')

  const car = await readFile(join(s, 'tree.car'))
  car[car.length - 3] ^= 0xff // inside the last block's bytes
  await writeFile(join(s, 'flipped.car'), car)
  const f = script('car-check.mjs', join(s, 'flipped.car'), tree)
  expect(f.code === 1 && /do not hash to the CID/.test(f.stderr), 'a flipped bit in a block is found')
  await writeFile(join(s, 'garbage.car'), 'not a car')
  const g = script('car-check.mjs', join(s, 'garbage.car'), tree)
  expect(g.code === 1 && /not a readable CAR/.test(g.stderr), 'a malformed CAR exits 1 saying so')
  const u = script('car-check.mjs', join(s, 'tree.car'))
  expect(u.code === 2 && /usage:/.test(u.stderr), 'a missing argument is a usage error')
}

async function testDagCbor (s) {
  const leaf = await block(raw.code, new TextEncoder().encode('leaf'))
  const head = await block(dagCbor.code, dagCbor.encode({
    v: 1,
    fs: new Uint8Array(16),
    seq: 1,
    time: 1_700_000_000_000_000_000n,
    root: leaf.cid,
    parent: null,
    sig: new Uint8Array(64).fill(7)
  }))
  const list = await block(dagCbor.code, dagCbor.encode([1, -1, 'x', { a: 1, bb: [true, false] }, 2 ** 40]))
  await writeCar(join(s, 'cbor.car'), [head.cid], [head, list, leaf])
  const ok = script('dagcbor-roundtrip.mjs', '--car', '--json', join(s, 'cbor.car'))
  const out = JSON.parse(ok.stdout || '{}')
  expect(ok.code === 0 && out.checked === 2 && out.blocks?.raw === 1, `canonical dag-cbor blocks pass (${ok.stderr.trim()})`)

  // {"b": 1, "a": 2}: decodes, but the keys are out of order.
  const unsorted = await block(dagCbor.code, Uint8Array.from([0xa2, 0x61, 0x62, 0x01, 0x61, 0x61, 0x02]))
  // 1 written in two bytes: strict decoding refuses it.
  const long = await block(dagCbor.code, Uint8Array.from([0x18, 0x01]))
  await writeCar(join(s, 'bad-cbor.car'), [head.cid], [head, unsorted, long])
  const bad = script('dagcbor-roundtrip.mjs', '--car', join(s, 'bad-cbor.car'))
  expect(bad.code === 1, 'non-canonical dag-cbor exits 1')
  expect(bad.stderr.includes(`${unsorted.cid}`) && /re-encodes to other bytes/.test(bad.stderr), 'unsorted keys are named by CID')
  expect(bad.stderr.includes(`${long.cid}`) && /does not decode/.test(bad.stderr), 'a long integer is named by CID')

  await writeFile(join(s, 'one.cbor'), head.bytes)
  const file = script('dagcbor-roundtrip.mjs', join(s, 'one.cbor'))
  expect(file.code === 0 && /1 dag-cbor blocks checked, 0 failed/.test(file.stdout), 'a single block file passes')
  const none = script('dagcbor-roundtrip.mjs', '--car', join(s, 'tree.car'))
  expect(none.code === 1 && /only 0 dag-cbor blocks/.test(none.stderr), 'a CAR without dag-cbor fails --min 1')
}

async function main () {
  const s = await mkdtemp(join(tmpdir(), 'blockfs-interop-selftest-'))
  try {
    const tree = join(s, 'tree')
    await mkdir(tree)
    const { hasFifo } = await makeTree(tree)
    await testImporter(s, tree)
    await testCarCheck(s, tree, hasFifo)
    await testDagCbor(s)
  } finally {
    await rm(s, { recursive: true, force: true })
  }
  if (failures > 0) {
    process.stderr.write(`selftest: ${failures} of ${checks} checks failed\n`)
    return 1
  }
  process.stdout.write(`selftest: all ${checks} checks passed\n`)
  return 0
}

main().then((code) => { process.exitCode = code }, (err) => {
  process.stderr.write(`selftest: ${err?.stack ?? err}\n`)
  process.exitCode = 1
})
