// Generates the murmur3 vectors hard-coded in tests/unit/test-hamt.c
// (mm_vectors[]): murmur3-x64-128 as @multiformats/murmur3 returns it (h1
// then h2, big-endian), and the first 8 bucket indices hamt-sharding takes
// from the hash ipfs-unixfs-importer's dir-sharded.ts gives it (the first
// 8 bytes, reversed).
//
// Run it outside the repository, e.g.:
//   mkdir /tmp/mmvec && cd /tmp/mmvec && npm init -y
//   npm install @multiformats/murmur3@2.2.8 hamt-sharding@3.0.8
//   cp /path/to/blockfs/tests/unit/vectors/dir/gen-murmur3.mjs .
//   node gen-murmur3.mjs
import { murmur3128 } from '@multiformats/murmur3'
import { wrapHash } from './node_modules/hamt-sharding/dist/src/consumable-hash.js'

const enc = new TextEncoder()
// As the importer's hamtHashFn.
async function hamtHashFn (buf) {
  return (await murmur3128.encode(buf)).slice(0, 8).reverse()
}
const inputs = ['', 'a', 'ab', 'abc', 'hello', '0123456', '01234567',
  '012345678', '0123456789abcde', '0123456789abcdef', '0123456789abcdef0',
  '0123456789abcdef0123456789abcdef0123', 'file-00000', 'file-19999',
  '\u00e9t\u00e9']
for (const s of inputs) {
  const b = enc.encode(s)
  const h = await murmur3128.encode(b)
  const ih = wrapHash(hamtHashFn)(b)
  const slots = []
  for (let i = 0; i < 8; i++) slots.push((await ih.take(8)).toString(16).padStart(2, '0'))
  console.log(`\t{${JSON.stringify(s)}, "${Buffer.from(h).toString('hex')}", "${slots.join('')}"},`)
}
