#!/usr/bin/env node
// car-diff.mjs: where two UnixFS trees in CAR v1 files differ, node by node
// (for example blockfs's export against importer-cid.mjs --car of the same
// tree, when the root CIDs differ and the question is why).
//
// Usage: node car-diff.mjs [OPTIONS] CAR_A CAR_B
//
//   --max-report N  list at most N differences (default 20)
//   --json          print {"same", "differences": [{path, why, a, b}]}
//   -h, --help      this text
//
// Walks both roots by path (ipfs-unixfs-exporter), skipping every subtree
// whose CID is equal on both sides. A difference is reported where it
// starts: a name only on one side, a different kind, a file or symlink with
// another CID, or a directory whose entries all match but whose own node
// differs (mode, mtime, sharding, link order, Tsize). Each side is
// described by its decoded node: codec, UnixFS type, mode, mtime, fanout,
// data length, links (count and first names).
//
// Exit status: 0 the roots are equal; 1 they differ; 2 usage error or a CAR
// that cannot be read.

import { CarIndexedReader } from '@ipld/car/indexed-reader'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { exporter } from 'ipfs-unixfs-exporter'
import {
  EXIT_DIFFERENT, EXIT_OK, ScriptError, parseCommandLine, positiveInt, run
} from './lib.mjs'

const NAME = 'car-diff'
const USAGE = `usage: node car-diff.mjs [--max-report N] [--json] CAR_A CAR_B
Shows where the UnixFS trees at the roots of two CAR files differ, with the
decoded nodes on each side.
`

async function openCar (path) {
  let reader
  try {
    reader = await CarIndexedReader.fromFile(path)
  } catch (err) {
    if (typeof err?.syscall === 'string') throw err
    throw new ScriptError(`${path}: not a readable CAR: ${err.message}`)
  }
  const roots = await reader.getRoots()
  if (roots.length !== 1) throw new ScriptError(`${path}: has ${roots.length} roots, not 1`)
  const store = {
    async * get (cid) {
      const b = await reader.get(cid)
      if (b == null) throw new Error(`block ${cid} is not in ${path}`)
      yield b.bytes
    }
  }
  return { reader, root: roots[0], store }
}

/** A one-line account of the block at `cid`, for a report. */
async function describe (car, cid) {
  const b = await car.reader.get(cid)
  if (b == null) return `${cid}: not in the CAR`
  if (cid.code !== dagPb.code) return `${cid}: codec 0x${cid.code.toString(16)}, ${b.bytes.length} bytes`
  let node
  try {
    node = dagPb.decode(b.bytes)
  } catch (err) {
    return `${cid}: dag-pb that does not decode: ${err.message}`
  }
  const parts = [`${cid}: dag-pb ${b.bytes.length} bytes`]
  if (node.Data != null) {
    try {
      const u = UnixFS.unmarshal(node.Data)
      parts.push(`unixfs ${u.type}`)
      // ipfs-unixfs fills in the default mode; say whether it was written.
      parts.push(`mode 0${u.mode.toString(8)}${u._originalMode === 0 ? ' (default, not written)' : ''}`)
      if (u.mtime != null) parts.push(`mtime ${u.mtime.secs}.${String(u.mtime.nsecs ?? 0).padStart(9, '0')}${u.mtime.nsecs == null ? ' (no nsecs field)' : ''}`)
      if (u.fanout != null) parts.push(`fanout ${u.fanout}`)
      if (u.data != null && u.data.length > 0) parts.push(`data ${u.data.length} bytes`)
      if (u.blockSizes?.length > 0) parts.push(`blocksizes ${u.blockSizes.length}`)
      parts.push(`Data field ${Buffer.from(node.Data).toString('hex').slice(0, 64)}${node.Data.length > 32 ? '...' : ''}`)
    } catch (err) {
      parts.push(`Data is not UnixFS: ${err.message}`)
    }
  }
  const names = node.Links.slice(0, 3).map((l) => `${JSON.stringify(l.Name ?? null)} tsize ${l.Tsize}`)
  parts.push(`${node.Links.length} links${names.length > 0 ? ` (${names.join(', ')}${node.Links.length > 3 ? ', ...' : ''})` : ''}`)
  return parts.join(', ')
}

function kindOf (entry) {
  if (entry.type === 'directory') return 'directory'
  if (entry.type === 'file' && entry.unixfs?.type === 'symlink') return 'symlink'
  return 'file'
}

async function diff (path, a, b, cidA, cidB, out) {
  if (cidA.equals(cidB)) return
  const ea = await exporter(cidA, a.store)
  const eb = await exporter(cidB, b.store)
  const ka = kindOf(ea)
  const kb = kindOf(eb)
  const report = async (why) => out.push({
    path: path === '' ? '/' : path,
    why,
    a: await describe(a, cidA),
    b: await describe(b, cidB)
  })
  if (ka !== kb) return report(`a ${ka} in A, a ${kb} in B`)
  if (ka !== 'directory') return report(`the ${ka}s differ`)
  const list = async (e) => {
    const m = new Map()
    for await (const c of e.entries()) m.set(c.name, c.cid)
    return m
  }
  const la = await list(ea)
  const lb = await list(eb)
  let childDiffers = false
  for (const name of [...new Set([...la.keys(), ...lb.keys()])].sort()) {
    const p = path === '' ? name : `${path}/${name}`
    const ca = la.get(name)
    const cb = lb.get(name)
    if (ca == null || cb == null) {
      childDiffers = true
      out.push({ path: p, why: `only in ${ca == null ? 'B' : 'A'}`, a: ca?.toString() ?? null, b: cb?.toString() ?? null })
      continue
    }
    if (!ca.equals(cb)) {
      childDiffers = true
      await diff(p, a, b, ca, cb, out)
    }
  }
  if (!childDiffers) await report('the directory node differs, its entries do not')
}

async function main () {
  const { values, positionals } = parseCommandLine(USAGE, {
    'max-report': { type: 'string', default: '20' },
    json: { type: 'boolean', default: false }
  }, { min: 2, max: 2 })
  const max = positiveInt('max-report', values['max-report'])
  const a = await openCar(positionals[0])
  const b = await openCar(positionals[1])
  try {
    const out = []
    await diff('', a, b, a.root, b.root, out)
    if (values.json) {
      process.stdout.write(JSON.stringify({ same: out.length === 0, differences: out }, null, 1) + '\n')
    } else if (out.length === 0) {
      process.stdout.write(`${NAME}: the same tree (${a.root})\n`)
    } else {
      process.stdout.write(`${NAME}: ${a.root} and ${b.root} differ in ${out.length} places\n`)
      for (const d of out.slice(0, max)) {
        process.stdout.write(`${d.path}: ${d.why}\n  A ${d.a}\n  B ${d.b}\n`)
      }
      if (out.length > max) process.stdout.write(`... and ${out.length - max} more\n`)
    }
    return out.length === 0 ? EXIT_OK : EXIT_DIFFERENT
  } finally {
    await a.reader.close()
    await b.reader.close()
  }
}

run(NAME, USAGE, main)
