#!/usr/bin/env node
// car-check.mjs: whether a CAR v1 holds exactly the tree DIR, read the way
// IPFS reads it (@ipld/car and ipfs-unixfs-exporter, pinned in
// package-lock.json).
//
// Usage: node car-check.mjs [OPTIONS] CAR DIR
//
//   --root CID        the directory to compare (default: the CAR's only root)
//   --meta            also compare each entry's UnixFS mode and mtime with
//                     lstat (mode & 07777, mtime with nanoseconds)
//   --json            print the summary as JSON (differences included)
//   --max-report N    list at most N differences on stderr (default 100)
//   -h, --help        this text
//
// Checks, in order:
//   1. every block in the CAR hashes to its CID (sha2-256 or identity; a
//      block under another hash function is a difference: the reference
//      tools cannot verify it either), and every dag-pb block re-encodes to
//      the same bytes with @ipld/dag-pb (canonical: Links before Data, links
//      sorted by name);
//   2. the root, exported with ipfs-unixfs-exporter, is a directory, and
//      every directory below it has exactly the names DIR's directory has;
//      every regular file is byte-identical at its path, every symlink has
//      the same target. FIFOs, sockets and device nodes in DIR have no UnixFS
//      type: their names are left out of the comparison and counted.
//
// Prints a summary on stdout. Exit status: 0 identical; 1 different (each
// difference on stderr, one a line, or in the JSON); 2 usage error, or CAR
// or DIR cannot be read at all.

import { lstat, open, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { CarIndexedReader } from '@ipld/car/indexed-reader'
import * as dagPb from '@ipld/dag-pb'
import { exporter } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import {
  EXIT_DIFFERENT, EXIT_OK, ScriptError, blockMatchesCid, bytesEqual,
  linkTarget, parseCommandLine, positiveInt, run, unixfsMtime, utf8Name
} from './lib.mjs'

const NAME = 'car-check'
const USAGE = `usage: node car-check.mjs [--root CID] [--meta] [--json]
                            [--max-report N] CAR DIR
Checks that the CAR v1 file CAR, exported with ipfs-unixfs-exporter, is the
tree DIR: same names in every directory, every file byte-identical, every
block hashing to its CID. See the top of car-check.mjs for the details.
`

const CODEC_NAMES = { 0x55: 'raw', 0x70: 'dag-pb', 0x71: 'dag-cbor' }

class Check {
  constructor (meta) {
    this.meta = meta
    this.differences = []
    this.counts = { dirs: 0, files: 0, bytes: 0, symlinks: 0, skipped: 0 }
    this.blocks = { total: 0, raw: 0, 'dag-pb': 0, 'dag-cbor': 0, other: 0 }
  }

  differ (path, what) {
    this.differences.push(`${path === '' ? '/' : path}: ${what}`)
  }
}

/** Check 1: every block against its CID, every dag-pb block canonical. */
async function checkBlocks (reader, c) {
  for await (const { cid, bytes } of reader.blocks()) {
    c.blocks.total++
    c.blocks[CODEC_NAMES[cid.code] ?? 'other']++
    const ok = await blockMatchesCid(cid, bytes)
    if (ok === null) {
      c.differ(`block ${cid}`, `multihash 0x${cid.multihash.code.toString(16)} cannot be verified (sha2-256 or identity only)`)
    } else if (!ok) {
      c.differ(`block ${cid}`, 'bytes do not hash to the CID')
    }
    if (cid.code === dagPb.code) {
      try {
        if (!bytesEqual(dagPb.encode(dagPb.decode(bytes)), bytes)) {
          c.differ(`block ${cid}`, 'dag-pb does not re-encode to the same bytes')
        }
      } catch (err) {
        c.differ(`block ${cid}`, `dag-pb: ${err.message}`)
      }
    }
  }
}

/** The blockstore the exporter reads: the CAR's blocks, by CID. */
function carStore (reader) {
  return {
    async * get (cid) {
      const block = await reader.get(cid)
      if (block == null) throw new Error(`block ${cid} is not in the CAR`)
      yield block.bytes
    }
  }
}

/** DIR's entries by name, with their kind; special files counted aside. */
async function localEntries (abs, c) {
  const out = new Map()
  const names = await readdir(abs, { encoding: 'buffer' })
  for (const raw of names) {
    const name = utf8Name(raw, 'the name', abs)
    const path = join(abs, name)
    const st = await lstat(path, { bigint: true })
    let kind = null
    if (st.isDirectory()) kind = 'dir'
    else if (st.isFile()) kind = 'file'
    else if (st.isSymbolicLink()) kind = 'symlink'
    if (kind == null) {
      c.counts.skipped++
      continue
    }
    out.set(name, { abs: path, kind, st })
  }
  return out
}

function kindOf (entry) {
  if (entry.type === 'directory') return 'dir'
  if (entry.type === 'raw' || entry.type === 'identity') return 'file'
  if (entry.type === 'file') {
    return entry.unixfs?.type === 'symlink' ? 'symlink' : 'file'
  }
  return `${entry.type} node`
}

/** --meta: UnixFS mode and mtime against lstat. */
function checkMeta (rel, entry, local, c) {
  const unixfs = entry.unixfs
  const wantMode = Number(local.st.mode & 0o7777n)
  const gotMode = unixfs?.mode ?? (local.kind === 'dir' ? 0o755 : 0o644)
  if (gotMode !== wantMode) {
    c.differ(rel, `mode 0${gotMode.toString(8)}, want 0${wantMode.toString(8)}`)
  }
  const want = unixfsMtime(local.st)
  const got = unixfs?.mtime
  const show = (m) => `${m.secs}.${String(m.nsecs ?? 0).padStart(9, '0')}`
  if (got == null) {
    c.differ(rel, `no mtime, want ${show(want)}`)
  } else if (BigInt(got.secs) !== want.secs || (got.nsecs ?? 0) !== (want.nsecs ?? 0)) {
    c.differ(rel, `mtime ${show(got)}, want ${show(want)}`)
  }
}

/** A file's exported bytes against the local file, streamed. */
async function compareFile (rel, entry, abs, c) {
  const fh = await open(abs, 'r')
  try {
    let pos = 0
    for await (const chunk of entry.content()) {
      const local = Buffer.alloc(chunk.byteLength)
      const { bytesRead } = await fh.read(local, 0, chunk.byteLength, pos)
      if (bytesRead < chunk.byteLength || !bytesEqual(local, chunk)) {
        let at = 0
        while (at < bytesRead && local[at] === chunk[at]) at++
        c.differ(rel, bytesRead < chunk.byteLength && at === bytesRead
          ? `the CAR's file is longer than the local one (${(await fh.stat()).size} bytes)`
          : `bytes differ from offset ${pos + at}`)
        return
      }
      pos += chunk.byteLength
    }
    const size = (await fh.stat()).size
    if (size !== pos) {
      c.differ(rel, `the CAR's file has ${pos} bytes, the local one ${size}`)
      return
    }
    c.counts.files++
    c.counts.bytes += pos
  } finally {
    await fh.close()
  }
}

/** Check 2 for one entry, recursively for directories. */
async function compareEntry (rel, entry, local, store, c) {
  const kind = kindOf(entry)
  if (kind !== local.kind) {
    c.differ(rel, `a ${kind} in the CAR, a ${local.kind} in DIR`)
    return
  }
  if (c.meta) checkMeta(rel, entry, local, c)
  if (kind === 'file') {
    await compareFile(rel, entry, local.abs, c)
  } else if (kind === 'symlink') {
    const got = new TextDecoder().decode(entry.unixfs.data ?? new Uint8Array())
    const want = await linkTarget(local.abs)
    if (got !== want) c.differ(rel, `link target '${got}', want '${want}'`)
    else c.counts.symlinks++
  } else {
    await compareDir(rel, entry, local.abs, store, c)
  }
}

async function compareDir (rel, entry, abs, store, c) {
  c.counts.dirs++
  const carNames = new Map()
  for await (const child of entry.entries()) {
    if (carNames.has(child.name)) c.differ(join(rel, child.name), 'named twice in its directory in the CAR')
    carNames.set(child.name, child)
  }
  const local = await localEntries(abs, c)
  const names = [...new Set([...carNames.keys(), ...local.keys()])].sort()
  for (const name of names) {
    const childRel = rel === '' ? name : `${rel}/${name}`
    const inCar = carNames.get(name)
    const inDir = local.get(name)
    if (inCar == null) {
      c.differ(childRel, 'missing from the CAR')
      continue
    }
    if (inDir == null) {
      // A special file's name is left out of the comparison on both sides.
      let st = null
      try { st = await lstat(join(abs, name)) } catch { }
      if (st == null) c.differ(childRel, 'in the CAR but not in DIR')
      continue
    }
    let child
    try {
      child = await exporter(inCar.cid, store)
    } catch (err) {
      c.differ(childRel, `cannot export ${inCar.cid}: ${err.message}`)
      continue
    }
    await compareEntry(childRel, child, inDir, store, c)
  }
}

async function main () {
  const { values, positionals } = parseCommandLine(USAGE, {
    root: { type: 'string' },
    meta: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    'max-report': { type: 'string', default: '100' }
  }, { min: 2, max: 2 })
  const [carPath, dir] = positionals
  const maxReport = positiveInt('max-report', values['max-report'])
  const c = new Check(values.meta)

  const dirSt = await lstat(dir, { bigint: true })
  if (!dirSt.isDirectory()) throw new ScriptError(`${dir}: not a directory`)
  let reader
  try {
    reader = await CarIndexedReader.fromFile(carPath)
  } catch (err) {
    if (typeof err?.syscall === 'string') throw err
    throw new ScriptError(`${carPath}: not a readable CAR: ${err.message}`, EXIT_DIFFERENT)
  }
  try {
    if (reader.version !== 1) c.differ(`CAR ${carPath}`, `version ${reader.version}, want 1`)
    const roots = await reader.getRoots()
    let root
    if (values.root != null) {
      try {
        root = CID.parse(values.root)
      } catch (err) {
        throw new ScriptError(`--root: '${values.root}' is not a CID: ${err.message}`)
      }
    } else if (roots.length !== 1) {
      throw new ScriptError(`${carPath}: has ${roots.length} roots; say which with --root`, EXIT_DIFFERENT)
    } else {
      root = roots[0]
    }
    await checkBlocks(reader, c)
    const store = carStore(reader)
    let entry = null
    try {
      entry = await exporter(root, store)
    } catch (err) {
      c.differ('', `cannot export the root ${root}: ${err.message}`)
    }
    if (entry != null) {
      await compareEntry('', entry, { abs: dir, kind: 'dir', st: dirSt }, store, c)
    }
    const ok = c.differences.length === 0
    const summary = { ok, root: root.toString(), ...c.counts, blocks: c.blocks, differences: c.differences }
    if (values.json) {
      process.stdout.write(JSON.stringify(summary, null, 1) + '\n')
    } else {
      const b = c.blocks
      process.stdout.write(`${NAME}: ${ok ? 'identical' : `${c.differences.length} differences`}: ` +
        `${c.counts.dirs} directories, ${c.counts.files} files (${c.counts.bytes} bytes), ` +
        `${c.counts.symlinks} symlinks match; ${b.total} blocks (raw ${b.raw}, dag-pb ${b['dag-pb']}, ` +
        `dag-cbor ${b['dag-cbor']}, other ${b.other}); ${c.counts.skipped} special files in DIR left out\n`)
    }
    if (!ok) {
      for (const d of c.differences.slice(0, maxReport)) process.stderr.write(`${NAME}: ${d}\n`)
      if (c.differences.length > maxReport) {
        process.stderr.write(`${NAME}: ... and ${c.differences.length - maxReport} more\n`)
      }
      return EXIT_DIFFERENT
    }
    return EXIT_OK
  } finally {
    await reader.close()
  }
}

run(NAME, USAGE, main)
