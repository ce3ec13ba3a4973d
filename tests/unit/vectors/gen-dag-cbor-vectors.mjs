// Generates the DAG-CBOR and head record vectors hard-coded in
// tests/unit/test-cbor.c and tests/unit/test-head.c, using the reference
// JavaScript implementation (@ipld/dag-cbor, multiformats) and Node's
// Ed25519 for the head's signature (the key of the seed a0 a1 ... bf).
//
// Run it outside the repository, e.g.:
//   mkdir /tmp/cborvec && cd /tmp/cborvec && npm init -y
//   npm install @ipld/dag-cbor@10 multiformats@14
//   cp /path/to/blockfs/tests/unit/vectors/gen-dag-cbor-vectors.mjs .
//   node gen-dag-cbor-vectors.mjs
// Versions used for the committed vectors: @ipld/dag-cbor 10.0.2,
// multiformats 14.0.5, node 20.

import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import crypto from 'node:crypto'

const hex = (b) => Buffer.from(b).toString('hex')
const te = new TextEncoder()
const cidOf = async (codec, s) => CID.create(1, codec, await sha256.digest(te.encode(s)))
const seq = (start, n) => Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff)

const root = await cidOf(0x70, 'root')
const attrs = await cidOf(0x71, 'attrs')
const parent = await cidOf(0x71, 'parent')
console.log('root', hex(root.bytes), root.toString())
console.log('attrs', hex(attrs.bytes), attrs.toString())
console.log('parent', hex(parent.bytes), parent.toString())

// Ed25519 key from a fixed seed 0xa0..0xbf
const seed = seq(0xa0, 32)
const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed])
const priv = crypto.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })
const pub = crypto.createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(12)
console.log('pk', hex(pub))

const head = {
  v: 1, fs: seq(0, 16), seq: 2, time: 1700000000123456789n,
  root, attrs, parent, writer: seq(0x20, 32), lease: 1700000030123456789n,
}
const unsigned = dagCbor.encode(head)
console.log('head_unsigned', hex(unsigned))
const msg = Buffer.concat([Buffer.from('blockfs-head-v1\0'), unsigned])
const sig = crypto.sign(null, msg, priv)
const signed = dagCbor.encode({ ...head, sig })
console.log('head_signed', hex(signed))
console.log('head_cid', CID.create(1, 0x71, await sha256.digest(signed)).toString())
const first = { ...head, seq: 1, parent: null }
console.log('head1_unsigned', hex(dagCbor.encode(first)))

console.log('nested', hex(dagCbor.encode([[], [1, [2, [3]]], { a: [null, true, false] }, {}])))
console.log('negints', hex(dagCbor.encode([-1, -24, -25, -256, -257, -65536, -65537,
  -4294967296, -4294967297, -9223372036854775808n, -18446744073709551616n])))
console.log('uints', hex(dagCbor.encode([0, 23, 24, 255, 256, 65535, 65536,
  4294967295, 4294967296, 18446744073709551615n])))
console.log('keys', hex(dagCbor.encode({ z: 1, aa: 2, a: 3, '': 4, b: 5, ab: 6, bb: 7, aaa: 8, 'é': 9 })))
console.log('text', hex(dagCbor.encode(['héllo ✓ 𝄞', '', seq(0, 0)])))
console.log('cids', hex(dagCbor.encode({ l: [root, attrs], p: parent, n: null })))
