// Generates the CID test vectors hard-coded in tests/unit/test-cid.c, using
// the reference JavaScript implementation (multiformats + @multiformats/blake2).
//
// Run it outside the repository, e.g.:
//   mkdir /tmp/cidvec && cd /tmp/cidvec && npm init -y
//   npm install multiformats@14 @multiformats/blake2@2
//   cp /path/to/blockfs/tests/unit/vectors/gen-cid-vectors.mjs . && node gen-cid-vectors.mjs
// and paste its output into the vectors[] table of test-cid.c.
// Versions used for the committed vectors: multiformats 14.0.5,
// @multiformats/blake2 2.0.3, node 20.

import { CID } from 'multiformats/cid'
import { blake2b256 } from '@multiformats/blake2/blake2b'
import { sha256 } from 'multiformats/hashes/sha2'

// Inputs; keep in sync with make_input() in test-cid.c.
function pattern(n) {
	const b = new Uint8Array(n)
	for (let i = 0; i < n; i++)
		b[i] = (i * 31 + 7) & 0xff
	return b
}
const text = (s) => new TextEncoder().encode(s)

const inputs = [
	['INPUT_EMPTY', new Uint8Array(0)],
	['INPUT_HELLO', text('hello world\n')],
	['INPUT_ABC', text('abc')],
	['INPUT_ZERO_BYTE', new Uint8Array(1)],
	['INPUT_PATTERN_128', pattern(128)], // exactly one BLAKE2b block
	['INPUT_PATTERN_129', pattern(129)],
	['INPUT_ZEROS_64K', new Uint8Array(65536)],
	['INPUT_PATTERN_1M', pattern(1 << 20)],
]
const codecs = [['BLK_CODEC_RAW', 0x55], ['BLK_CODEC_DAG_PB', 0x70],
		['BLK_CODEC_DAG_CBOR', 0x71]]

const hex = (b) => Buffer.from(b).toString('hex')

// One table per hash function: BLK_HASH_BLAKE2B_256, then BLK_HASH_SHA2_256.
for (const [hname, hasher] of [['BLK_HASH_BLAKE2B_256', blake2b256],
			       ['BLK_HASH_SHA2_256', sha256]]) {
	for (const [name, data] of inputs) {
		const mh = await hasher.digest(data)
		for (const [cname, code] of codecs) {
			const cid = CID.createV1(code, mh)
			console.log(`\t{ ${name}, ${cname}, ${hname},\n\t  "${cid.toString()}",\n\t  "${hex(cid.bytes)}" },`)
		}
	}
}
