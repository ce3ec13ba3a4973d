#!/usr/bin/env node
// dagcbor-roundtrip.mjs: whether DAG-CBOR blocks are what the reference
// codec (@ipld/dag-cbor, pinned in package-lock.json) writes: each decodes
// and re-encodes to the same bytes.
//
// Usage: node dagcbor-roundtrip.mjs [OPTIONS] FILE...
//        node dagcbor-roundtrip.mjs [OPTIONS] --car CAR...
//
//   --car         each FILE is a CAR v1: every dag-cbor (0x71) block in it
//                 is checked, and every block against its CID (sha2-256 or
//                 identity; other hash functions are a failure); without
//                 --car each FILE is one dag-cbor block
//   --min N       fail unless at least N dag-cbor blocks were checked in all
//                 (default 1: a CAR without one checks nothing)
//   --json        print {"checked", "blocks": {codec: count}, "failed":
//                 [{cid, file, error}]} on stdout
//   -h, --help    this text
//
// Decoding is @ipld/dag-cbor's default: strict (shortest integers, definite
// lengths, no duplicate map keys, only tag 42, no undefined, no NaN or
// infinities); re-encoding sorts map keys length-first then bytewise, so a
// block with keys out of order decodes but does not round-trip.
//
// Exit status: 0 every block round-trips; 1 one does not (its CID and file
// named on stderr); 2 usage error or a FILE that cannot be read.

import { createReadStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { CarBlockIterator } from '@ipld/car/iterator'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import {
  EXIT_DIFFERENT, EXIT_OK, ScriptError, blockMatchesCid, bytesEqual,
  parseCommandLine, run
} from './lib.mjs'

const NAME = 'dagcbor-roundtrip'
const USAGE = `usage: node dagcbor-roundtrip.mjs [--min N] [--json] FILE...
       node dagcbor-roundtrip.mjs --car [--min N] [--json] CAR...
Checks that every DAG-CBOR block (each FILE, or every 0x71 block of each
CAR) decodes with @ipld/dag-cbor and re-encodes to the same bytes.
`

const CODEC_NAMES = { 0x55: 'raw', 0x70: 'dag-pb', 0x71: 'dag-cbor' }

/** Why `bytes` are not canonical DAG-CBOR, or null when they are. */
function roundTripError (bytes) {
  let value
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    return `does not decode: ${err.message}`
  }
  let again
  try {
    again = dagCbor.encode(value)
  } catch (err) {
    return `decodes but does not re-encode: ${err.message}`
  }
  if (!bytesEqual(again, bytes)) {
    let at = 0
    while (at < again.length && at < bytes.length && again[at] === bytes[at]) at++
    return `re-encodes to other bytes (${again.length} against ${bytes.length}, first difference at byte ${at})`
  }
  return null
}

async function * carBlocks (path) {
  let iter
  try {
    iter = await CarBlockIterator.fromIterable(createReadStream(path))
  } catch (err) {
    if (typeof err?.syscall === 'string') throw err
    throw new ScriptError(`${path}: not a readable CAR: ${err.message}`, EXIT_DIFFERENT)
  }
  try {
    yield * iter
  } catch (err) {
    throw new ScriptError(`${path}: not a readable CAR: ${err.message}`, EXIT_DIFFERENT)
  }
}

async function main () {
  const { values, positionals } = parseCommandLine(USAGE, {
    car: { type: 'boolean', default: false },
    min: { type: 'string', default: '1' },
    json: { type: 'boolean', default: false }
  }, { min: 1 })
  if (!/^[0-9]+$/.test(values.min)) throw new ScriptError(`--min wants a count, not '${values.min}'`)
  const min = Number(values.min)
  const failed = []
  const blocks = {}
  let checked = 0

  const check = async (file, cid, bytes) => {
    checked++
    const why = roundTripError(bytes)
    if (why != null) failed.push({ cid: cid.toString(), file, error: why })
  }

  for (const file of positionals) {
    if (!values.car) {
      const bytes = await readFile(file)
      const cid = CID.createV1(dagCbor.code, await sha256.digest(bytes))
      blocks['dag-cbor'] = (blocks['dag-cbor'] ?? 0) + 1
      await check(file, cid, bytes)
      continue
    }
    for await (const { cid, bytes } of carBlocks(file)) {
      const codec = CODEC_NAMES[cid.code] ?? `0x${cid.code.toString(16)}`
      blocks[codec] = (blocks[codec] ?? 0) + 1
      const ok = await blockMatchesCid(cid, bytes)
      if (ok !== true) {
        failed.push({
          cid: cid.toString(),
          file,
          error: ok === null ? `multihash 0x${cid.multihash.code.toString(16)} cannot be verified` : 'bytes do not hash to the CID'
        })
      }
      if (cid.code === dagCbor.code) await check(file, cid, bytes)
    }
  }

  const short = checked < min
  if (values.json) {
    process.stdout.write(JSON.stringify({ checked, blocks, failed }, null, 1) + '\n')
  } else {
    process.stdout.write(`${NAME}: ${checked} dag-cbor blocks checked, ${failed.length} failed\n`)
  }
  for (const f of failed) process.stderr.write(`${NAME}: ${f.cid} (${f.file}): ${f.error}\n`)
  if (short) process.stderr.write(`${NAME}: only ${checked} dag-cbor blocks, --min is ${min}\n`)
  return failed.length > 0 || short ? EXIT_DIFFERENT : EXIT_OK
}

run(NAME, USAGE, main)
