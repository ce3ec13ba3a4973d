// Generates FORMAT.md §3.3's example attribute block, hard-coded in
// tests/unit/test-attrs.c: the file `a` (0640, "abc", mtime
// 1765100000.123456789) through ipfs-unixfs-importer, then the directory
// block through @ipld/dag-cbor (which sorts the keys itself).
//
// Run it from tests/interop (after `npm ci` there):
//   cd tests/interop && node ../unit/vectors/gen-attrs-example.mjs
// Versions used: ipfs-unixfs-importer 17.1.1, @ipld/dag-cbor 10.0.2,
// multiformats 14.0.5, node 20.

import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'

const req = createRequire(pathToFileURL(process.cwd() + '/'))
const load = (m) => import(pathToFileURL(req.resolve(m)).href)
const dagCbor = await load('@ipld/dag-cbor')
const { CID } = await load('multiformats/cid')
const { sha256 } = await load('multiformats/hashes/sha2')
const { importer } = await load('ipfs-unixfs-importer')

const blocks = new Map()
const blockstore = {
  put: async (cid, bytes) => { blocks.set(cid.toString(), bytes); return cid },
  get: async (cid) => blocks.get(cid.toString()),
  has: async (cid) => blocks.has(cid.toString())
}
const T1 = 1765100000123456789n
const T0 = 1765100000000000000n
const TB = 1765000000000000000n
let node
for await (const e of importer([{
  path: 'a',
  content: new TextEncoder().encode('abc'),
  mode: 0o640,
  mtime: { secs: T1 / 1000000000n, nsecs: Number(T1 % 1000000000n) }
}], blockstore, { cidVersion: 1, rawLeaves: true, wrapWithDirectory: false })) {
  node = e.cid
}
const tsize = blocks.get(node.toString()).length
const block = dagCbor.encode({
  v: 1,
  ents: [{
    gid: 1000, ino: 7, uid: 1000, mode: 0o100640, name: Uint8Array.of(0x61),
    node, size: 3, atime: T1, btime: TB, ctime: T1, mtime: T1, nlink: 1,
    tsize, xattrs: [[new TextEncoder().encode('user.k'), Uint8Array.of(0x76)]]
  }],
  self: {
    gid: 1000, uid: 1000, mode: 0o40755, size: 0,
    atime: T0, btime: TB, ctime: T0, mtime: T0, nlink: 2
  }
})
const cid = CID.create(1, 0x71, await sha256.digest(block))
console.log('node', node.toString(), 'tsize', tsize)
console.log('block', Buffer.from(block).toString('hex'))
console.log('cid', cid.toString())
