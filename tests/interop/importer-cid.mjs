#!/usr/bin/env node
// importer-cid.mjs: the root CID that the reference IPFS importer
// (ipfs-unixfs-importer, pinned in package-lock.json) computes for a tree.
//
// Usage: node importer-cid.mjs [OPTIONS] DIR
//
//   --chunker fixed:N     fixed-size chunks of N bytes (default fixed:262144)
//   --shard-bytes N       shard a directory into a HAMT when the sum over its
//                         links of name bytes + CID bytes passes N
//                         (default 262144)
//   --max-children N      links per file node, balanced layout (default 174)
//   --wrap                the root is a bare wrapping directory (the
//                         importer's wrapWithDirectory: no mode, no mtime);
//                         by default the root is DIR itself, with DIR's mode
//                         and mtime, as the root of a blockfs snapshot is
//   --json                print {"root", "entries": [{path, cid, type}],
//                         "skipped": [{path, reason}]} instead of the root
//   --car FILE            also write every block to FILE as a CAR v1 whose
//                         root is the root CID (holds them all in memory)
//   -h, --help            this text
//
// The import follows DESIGN.md §3's acceptance test: CIDv1, raw leaves,
// balanced layout of at most 174 links, fixed 256 KiB chunks, links-first
// dag-pb, HAMT fanout 256 by the "links-bytes" estimate, and each entry's
// mode (lstat st_mode & 07777; UnixFS omits 0644 files and 0755
// directories) and mtime (seconds and nanoseconds; nanoseconds omitted when
// zero). Entries are given to the importer as paths "root/REL", so the
// importer builds DIR as the directory "root" and its CID is the root CID;
// with --wrap the paths are REL and wrapWithDirectory builds the root.
//
// Order matters to the importer (see walk() in lib.mjs): a directory comes
// before what it holds, and within a directory the non-empty
// subdirectories come first. The sharding rule the importer then follows,
// which blockfs must match: a directory is a HAMT when the sum over its
// links to files, symlinks and EMPTY directories of (UTF-8 name bytes + CID
// bytes) is greater than --shard-bytes; links to non-empty subdirectories
// count 0 (the importer counts a child only once it has a CID).
//
// Symlinks become UnixFS symlinks (the pinned importer supports them), with
// the link's own mode and mtime (lstat: Linux reports 0777). Hard links are
// imported once per path. FIFOs, sockets and device nodes have no UnixFS
// type: they are left out and listed under "skipped" (and on stderr without
// --json). Names and link targets must be UTF-8, and a name may not end in
// a backslash (the importer reads "\/" as an escaped slash); anything else
// is an error.
//
// Exit status: 0 the CID was printed; 2 usage error or unreadable DIR.

import { writeFile } from 'node:fs/promises'
import { CarWriter } from '@ipld/car/writer'
import * as dagPb from '@ipld/dag-pb'
import { exporter } from 'ipfs-unixfs-exporter'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import {
  ScriptError, fileBytes, linkTarget, parseCommandLine, positiveInt, run,
  unixfsMtime, walk
} from './lib.mjs'

const NAME = 'importer-cid'
const USAGE = `usage: node importer-cid.mjs [--chunker fixed:N] [--shard-bytes N]
                               [--max-children N] [--wrap] [--json]
                               [--car FILE] DIR
Prints the root CID that ipfs-unixfs-importer computes for the tree DIR
(CIDv1, raw leaves, balanced, 174 links, fixed 256 KiB chunks, mode and
mtime of every entry). See the top of importer-cid.mjs for the details.
`

const ROOT = 'root'

/** The import candidates for the tree under `dir`, and what was left out. */
async function * candidates (dir, wrap, skipped, walked) {
  for await (const e of walk(dir)) {
    if (e.rel.split('/').some((n) => n.endsWith('\\'))) {
      throw new ScriptError(`${e.abs}: a name ending in a backslash cannot be given to the importer as a path`)
    }
    if (e.rel === '' && wrap) continue
    const path = wrap ? e.rel : (e.rel === '' ? ROOT : `${ROOT}/${e.rel}`)
    const meta = { path, mode: Number(e.st.mode & 0o7777n), mtime: unixfsMtime(e.st) }
    if (e.kind !== 'special') walked.push({ path: e.rel, kind: e.kind })
    switch (e.kind) {
      case 'dir':
        yield meta
        break
      case 'file':
        yield { ...meta, content: fileBytes(e.abs) }
        break
      case 'symlink':
        yield { ...meta, link: await linkTarget(e.abs) }
        break
      default:
        skipped.push({ path: e.rel, reason: 'not a file, directory or symlink: UnixFS has no such type' })
    }
  }
}

function parseChunker (text) {
  const m = /^fixed:([0-9]+)$/.exec(text)
  if (m == null) {
    throw new ScriptError(`--chunker: '${text}' is not fixed:N (FastCDC has no reference implementation in JavaScript)`)
  }
  return fixedSize({ chunkSize: positiveInt('chunker', m[1]) })
}

/**
 * The importer's blockstore: keeps every block when a CAR is wanted, else
 * only the dag-pb ones (directories and file nodes, not file data), which
 * is what resolving a path needs.
 */
function blockSink (keepAll) {
  const blocks = new Map()
  return {
    blocks,
    put (cid, bytes) {
      if (keepAll || cid.code === dagPb.code) blocks.set(cid.toString(), { cid, bytes })
      return cid
    },
    async * get (cid) {
      const b = blocks.get(cid.toString())
      if (b == null) throw new Error(`block ${cid} was not kept`)
      yield b.bytes
    }
  }
}

/**
 * Every walked path's CID, resolved from the root with the reference
 * exporter over the kept dag-pb blocks. The importer's own yields are not
 * used: it yields no entry for an empty directory, and in a HAMT-sharded
 * directory it yields a subdirectory under its parent's path.
 */
async function entriesByPath (root, walked, sink) {
  const kinds = new Map(walked.map((w) => [w.path, w.kind]))
  const entries = []
  for (const w of walked) {
    if (w.kind !== 'dir') continue
    const dir = await exporter(w.path === '' ? root : `${root}/${w.path}`, sink)
    entries.push({ path: w.path, cid: dir.cid.toString(), type: dir.unixfs.type })
    for await (const child of dir.entries()) {
      const path = w.path === '' ? child.name : `${w.path}/${child.name}`
      const kind = kinds.get(path)
      if (kind === 'dir') continue // listed as a directory itself
      if (kind == null) throw new ScriptError(`the import has ${path}, which is not in the tree`)
      entries.push({ path, cid: child.cid.toString(), type: kind })
    }
  }
  if (entries.length !== walked.length) {
    throw new ScriptError(`the import has ${entries.length} entries for ${walked.length} paths`)
  }
  return entries
}

async function writeCar (path, root, blocks) {
  const { writer, out } = CarWriter.create([root])
  const chunks = []
  const collect = (async () => { for await (const c of out) chunks.push(c) })()
  for (const b of blocks.values()) await writer.put(b)
  await writer.close()
  await collect
  await writeFile(path, Buffer.concat(chunks))
}

async function main () {
  const { values, positionals } = parseCommandLine(USAGE, {
    chunker: { type: 'string', default: 'fixed:262144' },
    'shard-bytes': { type: 'string', default: '262144' },
    'max-children': { type: 'string', default: '174' },
    wrap: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    car: { type: 'string' }
  }, { min: 1, max: 1 })
  const dir = positionals[0]
  const wrap = values.wrap
  const skipped = []
  const sink = blockSink(values.car != null)

  const options = {
    cidVersion: 1,
    rawLeaves: true,
    reduceSingleLeafToSelf: true,
    chunker: parseChunker(values.chunker),
    layout: balanced({ maxChildrenPerNode: positiveInt('max-children', values['max-children']) }),
    shardSplitThresholdBytes: positiveInt('shard-bytes', values['shard-bytes']),
    shardSplitStrategy: 'links-bytes',
    shardFanoutBits: 8,
    fieldOrder: 'links-first',
    wrapWithDirectory: wrap
  }

  const walked = []
  let last = null
  for await (const r of importer(candidates(dir, wrap, skipped, walked), sink, options)) last = r
  const rootPath = wrap ? '' : ROOT
  if (last == null || (last.path ?? '') !== rootPath) {
    throw new ScriptError(`${dir}: the importer's last entry is '${last?.path}', not the root`)
  }
  const root = last.cid.toString()

  if (values.car != null) await writeCar(values.car, last.cid, sink.blocks)
  if (values.json) {
    const entries = await entriesByPath(root, walked, sink)
    process.stdout.write(JSON.stringify({ root, entries, skipped }, null, 1) + '\n')
  } else {
    for (const s of skipped) process.stderr.write(`${NAME}: left out ${s.path}: ${s.reason}\n`)
    process.stdout.write(root + '\n')
  }
}

run(NAME, USAGE, main)
