// Generates the directory vectors hard-coded in tests/unit/test-dir.c (the
// cases[] table) with the reference importer: each case imports a tree
// whose directory "d" is the one under test, and prints the CID and Tsize
// of the link to "d" in the wrapping root.
//
// Run it outside the repository, e.g.:
//   mkdir /tmp/dirvec && cd /tmp/dirvec && npm init -y
//   npm install ipfs-unixfs-importer@17.1.1 blockstore-core@7.0.1 \
//     @ipld/dag-pb@4.2.0 ipfs-unixfs@13.1.1
//   cp /path/to/blockfs/tests/unit/vectors/dir/gen-dir-vectors.mjs .
//   node gen-dir-vectors.mjs
// Versions used for the committed vectors: the ones above (hamt-sharding
// 3.0.8, @multiformats/murmur3 2.2.8, multiformats 14.0.5), node 20.
// Keep the inputs in sync with the make_* functions of test-dir.c.
import { importer } from 'ipfs-unixfs-importer'
import { MemoryBlockstore } from 'blockstore-core/memory'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'

const enc = new TextEncoder()
const pad = (i) => String(i).padStart(5, '0')
// Entry i of a flat directory: "file-%05d" holding "file-%05d\n" (one raw
// leaf). prefix lets the same names sit in a sub-directory.
function files (n, fmt = (i) => `file-${pad(i)}`, prefix = '') {
  const out = []
  for (let i = 0; i < n; i++) out.push({ path: prefix + fmt(i), content: enc.encode(fmt(i) + '\n') })
  return out
}
const MT = { secs: 1700000000n, nsecs: 123456789 }

async function bytes (x) {
  if (x instanceof Uint8Array) return x
  const parts = []
  for await (const p of x) parts.push(p)
  return Buffer.concat(parts)
}

async function dirCase (name, entries, meta) {
  const ents = [{ path: 'd', ...(meta ?? {}) }, ...entries.map(e => ({ ...e, path: 'd/' + e.path }))]
  const bs = new MemoryBlockstore()
  let root
  for await (const e of importer(ents, bs, { wrapWithDirectory: true })) if (e.path === '') root = e
  const rn = dagPb.decode(await bytes(await bs.get(root.cid)))
  const l = rn.Links.find(l => l.Name === 'd')
  const node = dagPb.decode(await bytes(await bs.get(l.Hash)))
  const type = UnixFS.unmarshal(node.Data).type === 'directory' ? 'PLAIN' : 'HAMT'
  console.log(`\t{"${name}", "${l.Hash}", ${l.Tsize}, ${type}},`)
}

const sub = (i) => `dir-${pad(i)}`
const subdirs = (n, listed) => {
  const out = []
  for (let i = 0; i < n; i++) {
    if (listed) out.push({ path: sub(i) })
    out.push({ path: sub(i) + '/f', content: enc.encode('x') })
  }
  return out
}
const emptydirs = (n) => Array.from({ length: n }, (_, i) => ({ path: sub(i) }))

for (const n of [0, 1, 10, 5000, 5698, 5699, 20000, 200000]) await dirCase(`flat${n}`, files(n))
await dirCase('flat10_meta', files(10), { mode: 0o700, mtime: MT })
await dirCase('flat10_mode755_mtime_s', files(10), { mode: 0o755, mtime: { secs: 1700000000n } })
await dirCase('flat0_meta', [], { mode: 0o1777, mtime: MT })
await dirCase('hamt20000_meta', files(20000), { mode: 0o750, mtime: MT })
await dirCase('nested', [
  { path: 'a.txt', content: enc.encode('a\n') },
  { path: 'sub', mode: 0o711 },
  ...files(3, undefined, 'sub/'),
  { path: 'empty', mode: 0o700, mtime: { secs: 5n } },
  { path: 'z', content: enc.encode('') }
])
// Non-empty sub-directories count 0 in the estimate; empty ones count.
await dirCase('subdirs6000', subdirs(6000, true))
await dirCase('emptydirs6000', emptydirs(6000))
// The estimate passes the threshold only while dir-00000 is still empty:
// the decision depends on the order of the input.
const near = files(5698)
await dirCase('near_listed_subdir_last', [...near, ...subdirs(1, true)])
await dirCase('near_implicit_subdir_last', [...near, ...subdirs(1, false)])
await dirCase('near_listed_subdir_first', [...subdirs(1, true), ...near])
// UTF-8 bytes, not UTF-16 code units: 5000 * (17 + 36) passes 262144,
// 5000 * (13 + 36) would not.
await dirCase('utf8_5000', files(5000, (i) => `\u00fcn\u00efc\u00f6d\u00e9-${pad(i)}`))
// Pseudo-random names (keep in sync with random_names() in test-dir.c):
// an LCG, lengths 1..40, letters, '-', '.', and two 2-byte UTF-8 letters;
// "." and ".." and repeats skipped.
function randomNames (n, seed) {
  const alphabet = [...'abcdefghijklmnopqrstuvwxyz', '\u00e9', '-', '.', '\u03a9']
  let x = seed
  const next = () => { x = (Math.imul(x, 1103515245) + 12345) & 0x7fffffff; return x }
  const seen = new Set()
  const out = []
  while (out.length < n) {
    let name = ''
    const len = 1 + next() % 40
    for (let i = 0; i < len; i++) name += alphabet[next() % alphabet.length]
    if (name === '.' || name === '..' || seen.has(name)) continue
    seen.add(name)
    out.push(name)
  }
  return out
}
const randomFiles = (n, seed) => randomNames(n, seed).map(name => ({ path: name, content: enc.encode(name + '\n') }))
await dirCase('random2000_meta', randomFiles(2000, 1), { mode: 0o4755, mtime: { secs: 1n, nsecs: 1 } })
await dirCase('random6000', randomFiles(6000, 2))
