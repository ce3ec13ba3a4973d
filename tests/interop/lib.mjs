// Shared by the interop scripts in this folder: argument handling, the
// walk of a local tree as the importer sees it, block hash checks.
//
// Not a script. The scripts (importer-cid.mjs, car-check.mjs,
// dagcbor-roundtrip.mjs) exit 0 on success, 1 when the thing checked differs
// from the reference, 2 on a usage error or input they cannot read.

import { createReadStream } from 'node:fs'
import { lstat, readdir, readlink } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { sha256 } from 'multiformats/hashes/sha2'

export const EXIT_OK = 0
export const EXIT_DIFFERENT = 1
export const EXIT_USAGE = 2

/** An error that ends the script with exit status `code` and `message`. */
export class ScriptError extends Error {
  constructor (message, code = EXIT_USAGE) {
    super(message)
    this.code = code
  }
}

/**
 * Runs `main` and turns what it throws into a message on stderr and an exit
 * status: ScriptError carries its own, anything else is 2.
 */
export function run (name, usage, main) {
  main().then((code) => {
    process.exitCode = code ?? EXIT_OK
  }, (err) => {
    if (err instanceof ScriptError) {
      process.stderr.write(`${name}: ${err.message}\n`)
      if (err.code === EXIT_USAGE && err.showUsage) process.stderr.write(usage)
      process.exitCode = err.code
    } else if (typeof err?.syscall === 'string') { // fs errors say enough
      process.stderr.write(`${name}: ${err.message}\n`)
      process.exitCode = EXIT_USAGE
    } else {
      process.stderr.write(`${name}: ${err?.stack ?? err}\n`)
      process.exitCode = EXIT_USAGE
    }
  })
}

/** node:util parseArgs, with usage errors as ScriptError and --help. */
export function parseCommandLine (usage, options, { min = 0, max = Infinity } = {}) {
  let parsed
  try {
    parsed = parseArgs({
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true
    })
  } catch (err) {
    const e = new ScriptError(err.message)
    e.showUsage = true
    throw e
  }
  if (parsed.values.help) {
    process.stdout.write(usage)
    process.exit(EXIT_OK)
  }
  const n = parsed.positionals.length
  if (n < min || n > max) {
    const e = new ScriptError(n < min ? 'missing arguments' : 'too many arguments')
    e.showUsage = true
    throw e
  }
  return parsed
}

/** A positive integer option, or the error that names it. */
export function positiveInt (name, text) {
  if (!/^[0-9]+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new ScriptError(`--${name} wants a positive integer, not '${text}'`)
  }
  return Number(text)
}

const NS = 1_000_000_000n

/**
 * UnixFS 1.5 mtime of an lstat result taken with { bigint: true }. Zero
 * nanoseconds are left out of the object: given `nsecs: 0` the pinned
 * ipfs-unixfs writes the field (FractionalNanoseconds = 0), which DESIGN
 * §3 and the UnixFS spec omit.
 */
export function unixfsMtime (st) {
  let secs = st.mtimeNs / NS
  let nsecs = st.mtimeNs - secs * NS
  if (nsecs < 0n) { // BigInt division truncates; UnixFS wants floor
    secs -= 1n
    nsecs += NS
  }
  return nsecs === 0n ? { secs } : { secs, nsecs: Number(nsecs) }
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** A file name or link target as UnixFS holds it (UTF-8), or an error. */
export function utf8Name (buf, what, where) {
  try {
    return utf8.decode(buf)
  } catch {
    throw new ScriptError(`${where}: ${what} is not valid UTF-8; UnixFS names and link targets are UTF-8 strings`)
  }
}

/**
 * Walks `root` in the order importer-cid gives entries to the importer,
 * yielding { rel, abs, kind, st } with kind 'dir', 'file', 'symlink' or
 * 'special' (FIFOs, sockets, devices: UnixFS has no such type). `rel` is ''
 * for the root itself; lstat: links are not followed.
 *
 * The order, and why (ipfs-unixfs-importer 17.1.1, dir-flat.js): a
 * directory is yielded before what it holds (its entry carries its mode and
 * mtime; an entry given after its children would replace them). Within a
 * directory, the subdirectories that hold something come first, then the
 * rest, each group by name bytewise. The importer's shard estimate counts a
 * child only while it has a CID: a directory entry has one from when it is
 * added until its first child arrives, so a non-empty subdirectory counts
 * for one step. Putting those first makes that step harmless (nothing else
 * is counted yet, and one link is far below the threshold), so the rule the
 * importer then follows is exact and order-free: a directory is a HAMT when
 * the sum over its links to files, symlinks and EMPTY directories of (name
 * bytes + CID bytes) passes the threshold; non-empty subdirectories count 0.
 */
export async function * walk (root) {
  const st = await lstat(root, { bigint: true })
  if (!st.isDirectory()) throw new ScriptError(`${root}: not a directory`)
  yield { rel: '', abs: root, kind: 'dir', st }
  yield * walkDir(root, '', await listDir(root))
}

const importable = (e) => e.kind !== 'special'

/** A directory's entries with their lstat, sorted by name bytes. */
export async function listDir (abs) {
  const names = await readdir(abs, { encoding: 'buffer' })
  names.sort(Buffer.compare)
  const out = []
  for (const raw of names) {
    const name = utf8Name(raw, 'the name', abs)
    const path = join(abs, name)
    const st = await lstat(path, { bigint: true })
    let kind = 'special'
    if (st.isDirectory()) kind = 'dir'
    else if (st.isFile()) kind = 'file'
    else if (st.isSymbolicLink()) kind = 'symlink'
    out.push({ name, abs: path, kind, st })
  }
  return out
}

async function * walkDir (abs, rel, listing) {
  const full = []
  const rest = []
  const below = new Map()
  for (const e of listing) {
    if (e.kind === 'dir') {
      const l = await listDir(e.abs)
      below.set(e.name, l)
      if (l.some(importable)) {
        full.push(e)
        continue
      }
    }
    rest.push(e)
  }
  for (const e of [...full, ...rest]) {
    const childRel = rel === '' ? e.name : `${rel}/${e.name}`
    yield { rel: childRel, abs: e.abs, kind: e.kind, st: e.st }
    if (e.kind === 'dir') {
      const l = below.get(e.name)
      below.delete(e.name)
      yield * walkDir(e.abs, childRel, l)
    }
  }
}

/** A symlink's target as UnixFS holds it. */
export async function linkTarget (abs) {
  return utf8Name(await readlink(abs, { encoding: 'buffer' }), 'the link target', abs)
}

/** The bytes of a file, lazily: opened only when the importer reads it. */
export async function * fileBytes (abs) {
  yield * createReadStream(abs, { highWaterMark: 1 << 20 })
}

const SHA2_256 = 0x12
const IDENTITY = 0x00

/**
 * Whether `bytes` hash to `cid`'s multihash: true, false, or null when the
 * hash function is one these tools do not have (anything but sha2-256 and
 * identity; the reference tools read only those by default either).
 */
export async function blockMatchesCid (cid, bytes) {
  const mh = cid.multihash
  if (mh.code === SHA2_256) {
    const d = await sha256.digest(bytes)
    return Buffer.compare(Buffer.from(d.digest), Buffer.from(mh.digest)) === 0
  }
  if (mh.code === IDENTITY) {
    return Buffer.compare(Buffer.from(bytes), Buffer.from(mh.digest)) === 0
  }
  return null
}

export function bytesEqual (a, b) {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength),
    Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0
}
