// Generates the CAR vector hard-coded in tests/unit/test-car.c with the
// reference @ipld/car writer, and (given a path) reads a CAR written by
// blockfs with @ipld/car's reader, printing its roots and blocks.
//   node gen-car-vectors.mjs            prints the vector
//   node gen-car-vectors.mjs FILE.car   reads FILE.car
// FILE.car from blockfs: build/tests/test-car FILE.car (its 1 MiB archive).
// Run it outside the repository after
//   npm install @ipld/car@5 @ipld/dag-cbor@10 multiformats@14
// Versions used for the committed vector: @ipld/car 5.4.7, @ipld/dag-cbor
// 10.0.2, multiformats 14.0.5, node 20.
import { CarWriter, CarReader } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import * as raw from 'multiformats/codecs/raw'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import fs from 'node:fs'

const hex = (b) => Buffer.from(b).toString('hex')
const block = async (codec, bytes) => ({ cid: CID.create(1, codec, await sha256.digest(bytes)), bytes })

if (process.argv[2]) {
  const reader = await CarReader.fromBytes(fs.readFileSync(process.argv[2]))
  console.log('version', reader.version)
  console.log('roots', (await reader.getRoots()).map(String).join(' '))
  for await (const { cid, bytes } of reader.blocks()) {
    const got = await sha256.digest(bytes)
    console.log(cid.toString(), bytes.length, hex(got.digest) === hex(cid.multihash.digest) ? 'ok' : 'BAD')
  }
  process.exit(0)
}

const pattern = Uint8Array.from({ length: 200 }, (_, i) => (i * 31 + 7) & 0xff)
const b1 = await block(raw.code, new TextEncoder().encode('hello blockfs\n'))
const b2 = await block(raw.code, new Uint8Array(0))
const b4 = await block(raw.code, pattern)
const b3 = await block(dagCbor.code, dagCbor.encode({ a: [1, 2, b1.cid], b: null }))
const { writer, out } = CarWriter.create([b3.cid])
const chunks = []
const collect = (async () => { for await (const c of out) chunks.push(c) })()
for (const b of [b3, b1, b2, b4]) await writer.put(b)
await writer.close()
await collect
const car = Buffer.concat(chunks)
console.log('cbor_block', hex(b3.bytes))
console.log('root', b3.cid.toString())
console.log('car', car.length)
console.log(car.toString('hex'))
