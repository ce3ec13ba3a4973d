/* Unit tests for blocks/cid.c: known answers from the multiformats reference
 * implementation, varint edge cases and a robustness loop over the parsers. */

#include "blocks/cid.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"

/* Inputs; keep in sync with vectors/gen-cid-vectors.mjs. */
enum input {
	INPUT_EMPTY,
	INPUT_HELLO,
	INPUT_ABC,
	INPUT_ZERO_BYTE,
	INPUT_PATTERN_128,
	INPUT_PATTERN_129,
	INPUT_ZEROS_64K,
	INPUT_PATTERN_1M,
};

/* Fill a new buffer with input @in; returns NULL only when out of memory. */
static uint8_t *make_input(enum input in, size_t *len)
{
	size_t i, n = 0;
	uint8_t *buf;
	int pattern = 0;

	switch (in) {
	case INPUT_EMPTY:
		n = 0;
		break;
	case INPUT_HELLO:
		n = strlen("hello world\n");
		break;
	case INPUT_ABC:
		n = 3;
		break;
	case INPUT_ZERO_BYTE:
		n = 1;
		break;
	case INPUT_PATTERN_128:
		n = 128;
		pattern = 1;
		break;
	case INPUT_PATTERN_129:
		n = 129;
		pattern = 1;
		break;
	case INPUT_ZEROS_64K:
		n = 65536;
		break;
	case INPUT_PATTERN_1M:
		n = 1 << 20;
		pattern = 1;
		break;
	}
	buf = calloc(1, n ? n : 1);
	if (!buf)
		return NULL;
	if (in == INPUT_HELLO)
		memcpy(buf, "hello world\n", n);
	else if (in == INPUT_ABC)
		memcpy(buf, "abc", n);
	for (i = 0; pattern && i < n; i++)
		buf[i] = (uint8_t)((i * 31 + 7) & 0xff);
	*len = n;
	return buf;
}

struct vector {
	enum input input;
	uint64_t codec;
	enum blk_hash hash;
	const char *text;
	const char *hex;
};

/* Output of vectors/gen-cid-vectors.mjs (multiformats 14.0.5,
 * @multiformats/blake2 2.0.3): blake2b-256 (what blockfs wrote before
 * sha2-256), then sha2-256. */
/* clang-format off */
static const struct vector vectors[] = {
	{ INPUT_EMPTY, BLK_CODEC_RAW, BLK_HASH_BLAKE2B_256,
	  "bafk2bzaceahfouoae3suhmxivmxlayez3kq5dzo7i53y654h7kvultprf7r2q",
	  "0155a0e402200e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8" },
	{ INPUT_EMPTY, BLK_CODEC_DAG_PB, BLK_HASH_BLAKE2B_256,
	  "bafykbzaceahfouoae3suhmxivmxlayez3kq5dzo7i53y654h7kvultprf7r2q",
	  "0170a0e402200e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8" },
	{ INPUT_EMPTY, BLK_CODEC_DAG_CBOR, BLK_HASH_BLAKE2B_256,
	  "bafy2bzaceahfouoae3suhmxivmxlayez3kq5dzo7i53y654h7kvultprf7r2q",
	  "0171a0e402200e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8" },
	{ INPUT_HELLO, BLK_CODEC_RAW, BLK_HASH_BLAKE2B_256,
	  "bafk2bzaceddrwbp5duohx57jfd7rrzmnwumt5eywifwme25jzsijjwua24ar4",
	  "0155a0e40220c71b05fd1d1c7bf7e928ff18e58db5193e9316416cc26ba9cc9094da80d7011e" },
	{ INPUT_HELLO, BLK_CODEC_DAG_PB, BLK_HASH_BLAKE2B_256,
	  "bafykbzaceddrwbp5duohx57jfd7rrzmnwumt5eywifwme25jzsijjwua24ar4",
	  "0170a0e40220c71b05fd1d1c7bf7e928ff18e58db5193e9316416cc26ba9cc9094da80d7011e" },
	{ INPUT_HELLO, BLK_CODEC_DAG_CBOR, BLK_HASH_BLAKE2B_256,
	  "bafy2bzaceddrwbp5duohx57jfd7rrzmnwumt5eywifwme25jzsijjwua24ar4",
	  "0171a0e40220c71b05fd1d1c7bf7e928ff18e58db5193e9316416cc26ba9cc9094da80d7011e" },
	{ INPUT_ABC, BLK_CODEC_RAW, BLK_HASH_BLAKE2B_256,
	  "bafk2bzacec653aj4mnbds4rrohxt73uyk6nzjfsohoy4wpscojrmrqdi2urrs",
	  "0155a0e40220bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319" },
	{ INPUT_ABC, BLK_CODEC_DAG_PB, BLK_HASH_BLAKE2B_256,
	  "bafykbzacec653aj4mnbds4rrohxt73uyk6nzjfsohoy4wpscojrmrqdi2urrs",
	  "0170a0e40220bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319" },
	{ INPUT_ABC, BLK_CODEC_DAG_CBOR, BLK_HASH_BLAKE2B_256,
	  "bafy2bzacec653aj4mnbds4rrohxt73uyk6nzjfsohoy4wpscojrmrqdi2urrs",
	  "0171a0e40220bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319" },
	{ INPUT_ZERO_BYTE, BLK_CODEC_RAW, BLK_HASH_BLAKE2B_256,
	  "bafk2bzaceabrocroowl3pn7d3bgakoi5congfmkx46dynwgaqlzj3t2mcejri",
	  "0155a0e4022003170a2e7597b7b7e3d84c05391d139a62b157e78786d8c082f29dcf4c111314" },
	{ INPUT_ZERO_BYTE, BLK_CODEC_DAG_PB, BLK_HASH_BLAKE2B_256,
	  "bafykbzaceabrocroowl3pn7d3bgakoi5congfmkx46dynwgaqlzj3t2mcejri",
	  "0170a0e4022003170a2e7597b7b7e3d84c05391d139a62b157e78786d8c082f29dcf4c111314" },
	{ INPUT_ZERO_BYTE, BLK_CODEC_DAG_CBOR, BLK_HASH_BLAKE2B_256,
	  "bafy2bzaceabrocroowl3pn7d3bgakoi5congfmkx46dynwgaqlzj3t2mcejri",
	  "0171a0e4022003170a2e7597b7b7e3d84c05391d139a62b157e78786d8c082f29dcf4c111314" },
	{ INPUT_PATTERN_128, BLK_CODEC_RAW, BLK_HASH_BLAKE2B_256,
	  "bafk2bzacecbhqpdjz3gusodoras4nmqphna2io2mty5cdnrh3cf7ajienzghe",
	  "0155a0e4022082783c69cecd49386e8825c6b20f3b41a43b4c9e3a21b627d88bf025046e4c72" },
	{ INPUT_PATTERN_128, BLK_CODEC_DAG_PB, BLK_HASH_BLAKE2B_256,
	  "bafykbzacecbhqpdjz3gusodoras4nmqphna2io2mty5cdnrh3cf7ajienzghe",
	  "0170a0e4022082783c69cecd49386e8825c6b20f3b41a43b4c9e3a21b627d88bf025046e4c72" },
	{ INPUT_PATTERN_128, BLK_CODEC_DAG_CBOR, BLK_HASH_BLAKE2B_256,
	  "bafy2bzacecbhqpdjz3gusodoras4nmqphna2io2mty5cdnrh3cf7ajienzghe",
	  "0171a0e4022082783c69cecd49386e8825c6b20f3b41a43b4c9e3a21b627d88bf025046e4c72" },
	{ INPUT_PATTERN_129, BLK_CODEC_RAW, BLK_HASH_BLAKE2B_256,
	  "bafk2bzacec3r4jgepqwvzruktfzsvoyfxh4a6lwn252e5hird5ctxmtpsf7gs",
	  "0155a0e40220b71e24c47c2d5cc68a99732abb05b9f80f2ecdd7744e9d111f453bb26f917e69" },
	{ INPUT_PATTERN_129, BLK_CODEC_DAG_PB, BLK_HASH_BLAKE2B_256,
	  "bafykbzacec3r4jgepqwvzruktfzsvoyfxh4a6lwn252e5hird5ctxmtpsf7gs",
	  "0170a0e40220b71e24c47c2d5cc68a99732abb05b9f80f2ecdd7744e9d111f453bb26f917e69" },
	{ INPUT_PATTERN_129, BLK_CODEC_DAG_CBOR, BLK_HASH_BLAKE2B_256,
	  "bafy2bzacec3r4jgepqwvzruktfzsvoyfxh4a6lwn252e5hird5ctxmtpsf7gs",
	  "0171a0e40220b71e24c47c2d5cc68a99732abb05b9f80f2ecdd7744e9d111f453bb26f917e69" },
	{ INPUT_ZEROS_64K, BLK_CODEC_RAW, BLK_HASH_BLAKE2B_256,
	  "bafk2bzacedps2c2ode744y3vtr4q42kw2x3vnbq7cxlnwzgmdcm27kc6cyt3s",
	  "0155a0e40220df2d0b4e193fce63759c790e6956d5f756861f15d6db64cc1899afa85e1627b9" },
	{ INPUT_ZEROS_64K, BLK_CODEC_DAG_PB, BLK_HASH_BLAKE2B_256,
	  "bafykbzacedps2c2ode744y3vtr4q42kw2x3vnbq7cxlnwzgmdcm27kc6cyt3s",
	  "0170a0e40220df2d0b4e193fce63759c790e6956d5f756861f15d6db64cc1899afa85e1627b9" },
	{ INPUT_ZEROS_64K, BLK_CODEC_DAG_CBOR, BLK_HASH_BLAKE2B_256,
	  "bafy2bzacedps2c2ode744y3vtr4q42kw2x3vnbq7cxlnwzgmdcm27kc6cyt3s",
	  "0171a0e40220df2d0b4e193fce63759c790e6956d5f756861f15d6db64cc1899afa85e1627b9" },
	{ INPUT_PATTERN_1M, BLK_CODEC_RAW, BLK_HASH_BLAKE2B_256,
	  "bafk2bzacebvngnjr2uhhpz5aruyh2dqtih4ts25j7en5nsggleillv5d47ok2",
	  "0155a0e402206ad33531d50e77e7a08d307d0e1341f9396ba9f91bd6c8c65910b5d7a3e7dcad" },
	{ INPUT_PATTERN_1M, BLK_CODEC_DAG_PB, BLK_HASH_BLAKE2B_256,
	  "bafykbzacebvngnjr2uhhpz5aruyh2dqtih4ts25j7en5nsggleillv5d47ok2",
	  "0170a0e402206ad33531d50e77e7a08d307d0e1341f9396ba9f91bd6c8c65910b5d7a3e7dcad" },
	{ INPUT_PATTERN_1M, BLK_CODEC_DAG_CBOR, BLK_HASH_BLAKE2B_256,
	  "bafy2bzacebvngnjr2uhhpz5aruyh2dqtih4ts25j7en5nsggleillv5d47ok2",
	  "0171a0e402206ad33531d50e77e7a08d307d0e1341f9396ba9f91bd6c8c65910b5d7a3e7dcad" },
	{ INPUT_EMPTY, BLK_CODEC_RAW, BLK_HASH_SHA2_256,
	  "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
	  "01551220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
	{ INPUT_EMPTY, BLK_CODEC_DAG_PB, BLK_HASH_SHA2_256,
	  "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
	  "01701220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
	{ INPUT_EMPTY, BLK_CODEC_DAG_CBOR, BLK_HASH_SHA2_256,
	  "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
	  "01711220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
	{ INPUT_HELLO, BLK_CODEC_RAW, BLK_HASH_SHA2_256,
	  "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
	  "01551220a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447" },
	{ INPUT_HELLO, BLK_CODEC_DAG_PB, BLK_HASH_SHA2_256,
	  "bafybeifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
	  "01701220a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447" },
	{ INPUT_HELLO, BLK_CODEC_DAG_CBOR, BLK_HASH_SHA2_256,
	  "bafyreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
	  "01711220a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447" },
	{ INPUT_ABC, BLK_CODEC_RAW, BLK_HASH_SHA2_256,
	  "bafkreif2pall7dybz7vecqka3zo24irdwabwdi4wc55jznaq75q7eaavvu",
	  "01551220ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
	{ INPUT_ABC, BLK_CODEC_DAG_PB, BLK_HASH_SHA2_256,
	  "bafybeif2pall7dybz7vecqka3zo24irdwabwdi4wc55jznaq75q7eaavvu",
	  "01701220ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
	{ INPUT_ABC, BLK_CODEC_DAG_CBOR, BLK_HASH_SHA2_256,
	  "bafyreif2pall7dybz7vecqka3zo24irdwabwdi4wc55jznaq75q7eaavvu",
	  "01711220ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
	{ INPUT_ZERO_BYTE, BLK_CODEC_RAW, BLK_HASH_SHA2_256,
	  "bafkreidogqfzz75tpkmjzjke425xqcrmpcib2p5tg44hnbirumdbpl5adu",
	  "015512206e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d" },
	{ INPUT_ZERO_BYTE, BLK_CODEC_DAG_PB, BLK_HASH_SHA2_256,
	  "bafybeidogqfzz75tpkmjzjke425xqcrmpcib2p5tg44hnbirumdbpl5adu",
	  "017012206e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d" },
	{ INPUT_ZERO_BYTE, BLK_CODEC_DAG_CBOR, BLK_HASH_SHA2_256,
	  "bafyreidogqfzz75tpkmjzjke425xqcrmpcib2p5tg44hnbirumdbpl5adu",
	  "017112206e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d" },
	{ INPUT_PATTERN_128, BLK_CODEC_RAW, BLK_HASH_SHA2_256,
	  "bafkreigmksgkfxwb637e6wfs4j5ktr2scyd56ejq2falkwsnvudgkmbdky",
	  "01551220cc548ca2dec1f6fe4f58b2e27aa9c7521607df1130d140b55a4dad0665302356" },
	{ INPUT_PATTERN_128, BLK_CODEC_DAG_PB, BLK_HASH_SHA2_256,
	  "bafybeigmksgkfxwb637e6wfs4j5ktr2scyd56ejq2falkwsnvudgkmbdky",
	  "01701220cc548ca2dec1f6fe4f58b2e27aa9c7521607df1130d140b55a4dad0665302356" },
	{ INPUT_PATTERN_128, BLK_CODEC_DAG_CBOR, BLK_HASH_SHA2_256,
	  "bafyreigmksgkfxwb637e6wfs4j5ktr2scyd56ejq2falkwsnvudgkmbdky",
	  "01711220cc548ca2dec1f6fe4f58b2e27aa9c7521607df1130d140b55a4dad0665302356" },
	{ INPUT_PATTERN_129, BLK_CODEC_RAW, BLK_HASH_SHA2_256,
	  "bafkreieb5cnhwkirvktxsx46hverbs2h23gswagyhobzssave4tbugtvde",
	  "0155122081e89a7b2911aaa7795f9e3d4910cb47d6cd2b00d83b8399481527261a1a7519" },
	{ INPUT_PATTERN_129, BLK_CODEC_DAG_PB, BLK_HASH_SHA2_256,
	  "bafybeieb5cnhwkirvktxsx46hverbs2h23gswagyhobzssave4tbugtvde",
	  "0170122081e89a7b2911aaa7795f9e3d4910cb47d6cd2b00d83b8399481527261a1a7519" },
	{ INPUT_PATTERN_129, BLK_CODEC_DAG_CBOR, BLK_HASH_SHA2_256,
	  "bafyreieb5cnhwkirvktxsx46hverbs2h23gswagyhobzssave4tbugtvde",
	  "0171122081e89a7b2911aaa7795f9e3d4910cb47d6cd2b00d83b8399481527261a1a7519" },
	{ INPUT_ZEROS_64K, BLK_CODEC_RAW, BLK_HASH_SHA2_256,
	  "bafkreig6f4swazfav54xor6cxf2qlxalt467bxspjcpky4y4eoxjzkomge",
	  "01551220de2f256064a0af797747c2b97505dc0b9f3df0de4f489eac731c23ae9ca9cc31" },
	{ INPUT_ZEROS_64K, BLK_CODEC_DAG_PB, BLK_HASH_SHA2_256,
	  "bafybeig6f4swazfav54xor6cxf2qlxalt467bxspjcpky4y4eoxjzkomge",
	  "01701220de2f256064a0af797747c2b97505dc0b9f3df0de4f489eac731c23ae9ca9cc31" },
	{ INPUT_ZEROS_64K, BLK_CODEC_DAG_CBOR, BLK_HASH_SHA2_256,
	  "bafyreig6f4swazfav54xor6cxf2qlxalt467bxspjcpky4y4eoxjzkomge",
	  "01711220de2f256064a0af797747c2b97505dc0b9f3df0de4f489eac731c23ae9ca9cc31" },
	{ INPUT_PATTERN_1M, BLK_CODEC_RAW, BLK_HASH_SHA2_256,
	  "bafkreiagw657w6bevibtqicrneldb2zg32crali3bcub5ed6yb2ezwfcqy",
	  "0155122006b7bbfb7824aa03382051691630eb26de85102d1b08a81e907ec0744cd8a286" },
	{ INPUT_PATTERN_1M, BLK_CODEC_DAG_PB, BLK_HASH_SHA2_256,
	  "bafybeiagw657w6bevibtqicrneldb2zg32crali3bcub5ed6yb2ezwfcqy",
	  "0170122006b7bbfb7824aa03382051691630eb26de85102d1b08a81e907ec0744cd8a286" },
	{ INPUT_PATTERN_1M, BLK_CODEC_DAG_CBOR, BLK_HASH_SHA2_256,
	  "bafyreiagw657w6bevibtqicrneldb2zg32crali3bcub5ed6yb2ezwfcqy",
	  "0171122006b7bbfb7824aa03382051691630eb26de85102d1b08a81e907ec0744cd8a286" },
};
/* clang-format on */

static int hex_decode(const char *hex, uint8_t *out, size_t max)
{
	size_t i, n = strlen(hex);

	if (n % 2 || n / 2 > max)
		return -EINVAL;
	for (i = 0; i < n / 2; i++) {
		unsigned int b;

		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return -EINVAL;
		out[i] = (uint8_t)b;
	}
	return (int)(n / 2);
}

static void test_vectors(void)
{
	size_t i;

	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const struct vector *v = &vectors[i];
		uint8_t want[BLK_CID_MAX_BYTES], got[BLK_CID_MAX_BYTES];
		char str[BLK_CID_STR_MAX];
		struct blk_cid cid, parsed;
		size_t len, n;
		uint8_t *data;
		int want_len;

		data = make_input(v->input, &len);
		CHECK(data != NULL);
		if (!data)
			continue;
		want_len = hex_decode(v->hex, want, sizeof(want));
		CHECK(want_len == (v->hash == BLK_HASH_SHA2_256 ? 36 : 38));

		/* compute -> text and bytes equal the reference */
		blk_cid_compute_hash(&cid, v->hash, v->codec, data, len);
		CHECK(cid.codec == v->codec && cid.hash == v->hash);
		if (v->hash == BLK_HASH_DEFAULT) {
			struct blk_cid dflt;

			blk_cid_compute(&dflt, v->codec, data, len);
			CHECK(blk_cid_equal(&dflt, &cid));
		}
		n = blk_cid_to_string(&cid, str);
		CHECK(n == strlen(v->text) && n < BLK_CID_STR_MAX);
		CHECK(strcmp(str, v->text) == 0);
		n = blk_cid_to_bytes(&cid, got);
		CHECK(n == (size_t)want_len && memcmp(got, want, n) == 0);

		/* text -> parse -> equal; bytes -> parse -> equal */
		memset(&parsed, 0xa5, sizeof(parsed));
		CHECK(blk_cid_from_string(&parsed, v->text) == 0);
		CHECK(blk_cid_equal(&parsed, &cid));
		memset(&parsed, 0xa5, sizeof(parsed));
		CHECK(blk_cid_from_bytes(&parsed, want, (size_t)want_len) == 0);
		CHECK(blk_cid_equal(&parsed, &cid));

		/* verification accepts the data, rejects a changed byte */
		CHECK(blk_cid_verify(&cid, data, len));
		if (len > 0) {
			data[len / 2] ^= 0x01;
			CHECK(!blk_cid_verify(&cid, data, len));
		} else {
			CHECK(!blk_cid_verify(&cid, "", 1));
		}
		free(data);
	}

	/* same data, different codec: same digest, different CID */
	{
		struct blk_cid a, b;

		blk_cid_compute(&a, BLK_CODEC_RAW, "abc", 3);
		blk_cid_compute(&b, BLK_CODEC_DAG_CBOR, "abc", 3);
		CHECK(!blk_cid_equal(&a, &b));
		CHECK(memcmp(a.digest, b.digest, BLK_DIGEST_LEN) == 0);
		CHECK(blk_cid_verify(&b, "abc", 3));
	}
	/* same data and codec, other hash: different CIDs, each verifies
	 * only with its own function */
	{
		struct blk_cid a, b;

		blk_cid_compute_hash(&a, BLK_HASH_SHA2_256, BLK_CODEC_RAW,
				     "abc", 3);
		blk_cid_compute_hash(&b, BLK_HASH_BLAKE2B_256, BLK_CODEC_RAW,
				     "abc", 3);
		CHECK(!blk_cid_equal(&a, &b));
		CHECK(blk_cid_verify(&a, "abc", 3) &&
		      blk_cid_verify(&b, "abc", 3));
		memcpy(b.digest, a.digest, BLK_DIGEST_LEN);
		CHECK(!blk_cid_verify(&b, "abc", 3));
		b.hash = (enum blk_hash)7;
		CHECK(!blk_cid_verify(&b, "abc", 3));
	}
}

/* The type word: codec and hash in, the same out; unknown hashes refused;
 * a bare multicodec (what nodes wrote before) is blake2b-256. */
static void test_type_word(void)
{
	struct blk_cid c = {.codec = BLK_CODEC_DAG_CBOR,
			    .hash = BLK_HASH_SHA2_256};
	struct blk_cid back;
	enum blk_hash h;

	CHECK(blk_cid_type(&c) == (0x71u | 1u << 16));
	CHECK(blk_cid_set_type(&back, blk_cid_type(&c)) == 0);
	CHECK(back.codec == c.codec && back.hash == c.hash);
	CHECK(blk_cid_set_type(&back, 0x55) == 0);
	CHECK(back.codec == 0x55 && back.hash == BLK_HASH_BLAKE2B_256);
	CHECK(blk_cid_set_type(&back, 0x55 | 2u << 16) == -EINVAL);
	CHECK(blk_cid_set_type(&back, 0xffff0055u) == -EINVAL);
	CHECK(blk_hash_from_name("sha2-256", &h) == 0 &&
	      h == BLK_HASH_SHA2_256);
	CHECK(blk_hash_from_name("blake2b-256", &h) == 0 &&
	      h == BLK_HASH_BLAKE2B_256);
	CHECK(blk_hash_from_name("sha1", &h) == -EINVAL);
	CHECK(strcmp(blk_hash_name(BLK_HASH_SHA2_256), "sha2-256") == 0);
	CHECK(strcmp(blk_hash_name(BLK_HASH_BLAKE2B_256), "blake2b-256") == 0);
}

static void check_put(uint64_t v, const char *hex)
{
	uint8_t want[16], buf[16], sentinel[16];
	int want_len = hex_decode(hex, want, sizeof(want));
	size_t n;
	uint64_t back = ~v;

	memset(buf, 0xee, sizeof(buf));
	memset(sentinel, 0xee, sizeof(sentinel));
	n = blk_varint_put(buf, v);
	CHECK(want_len > 0 && n == (size_t)want_len);
	CHECK(memcmp(buf, want, n) == 0);
	CHECK(memcmp(buf + n, sentinel, sizeof(buf) - n) == 0);
	/* exact length, and with a trailing byte that must not be consumed */
	CHECK(blk_varint_get(buf, n, &back) == (int)n && back == v);
	back = ~v;
	CHECK(blk_varint_get(buf, n + 1, &back) == (int)n && back == v);
	/* every shorter prefix is truncated */
	while (n-- > 0)
		CHECK(blk_varint_get(buf, n, &back) == -EINVAL);
}

static void check_get_fails(const char *hex)
{
	uint8_t buf[16];
	int n = hex_decode(hex, buf, sizeof(buf));
	uint64_t v = 42;

	CHECK(n >= 0);
	CHECK(blk_varint_get(buf, (size_t)n, &v) == -EINVAL);
	CHECK(v == 42);
}

static void test_varints(void)
{
	uint64_t v;

	check_put(0, "00");
	check_put(1, "01");
	check_put(127, "7f");
	check_put(128, "8001");
	check_put(255, "ff01");
	check_put(300, "ac02");
	check_put(16383, "ff7f");
	check_put(16384, "808001");
	check_put(BLK_MH_BLAKE2B_256, "a0e402");
	check_put(UINT32_MAX, "ffffffff0f");
	check_put((UINT64_C(1) << 56) - 1, "ffffffffffffff7f");
	check_put(UINT64_C(1) << 56, "808080808080808001");
	/* the largest value a 9-byte varint holds */
	check_put(UINT64_MAX >> 1, "ffffffffffffffff7f");

	/* 2^63 needs a tenth byte, beyond the multiformats limit */
	check_get_fails("80808080808080808001");
	check_get_fails("ffffffffffffffffff01");
	check_get_fails("ffffffffffffffffffff01");
	/* a continuation bit on the ninth byte even with nothing after */
	check_get_fails("ffffffffffffffff80");

	/* truncated */
	check_get_fails("");
	check_get_fails("80");
	check_get_fails("ff");
	check_get_fails("8080");
	check_get_fails("ffffffffffffffff");

	/* non-minimal: a zero final byte after the first */
	check_get_fails("8000");
	check_get_fails("8100");
	check_get_fails("ff00");
	check_get_fails("808000");
	check_get_fails("d500");
	check_get_fails("a0e48200");
	check_get_fails("ffffffffffffffff00");

	/* a zero first byte is the minimal encoding of 0 */
	CHECK(blk_varint_get((const uint8_t *)"\x00\x00", 2, &v) == 1 &&
	      v == 0);
}

/* A valid binary CID to mutate: raw, digest of "abc". */
static size_t sample_bytes(uint8_t *buf, struct blk_cid *cid)
{
	blk_cid_compute_hash(cid, BLK_HASH_BLAKE2B_256, BLK_CODEC_RAW, "abc",
			     3);
	return blk_cid_to_bytes(cid, buf);
}

/* Parse @hex, expecting -EINVAL and @out untouched. */
static void check_bytes_fail(const char *hex)
{
	uint8_t buf[128];
	int n = hex_decode(hex, buf, sizeof(buf));
	struct blk_cid out, before;
	uint8_t *exact;

	CHECK(n >= 0);
	if (n < 0)
		return;
	/* an exact-size heap copy so the sanitizer sees any over-read */
	exact = malloc(n ? (size_t)n : 1);
	CHECK(exact != NULL);
	if (!exact)
		return;
	memcpy(exact, buf, (size_t)n);
	memset(&out, 0x5a, sizeof(out));
	before = out;
	CHECK(blk_cid_from_bytes(&out, exact, (size_t)n) == -EINVAL);
	CHECK(memcmp(&out, &before, sizeof(out)) == 0);
	free(exact);
}

#define DIGEST_HEX                                                             \
	"bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
#define DIGEST_HEX_31                                                          \
	"bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d523"

static void test_bytes_rejects(void)
{
	uint8_t buf[BLK_CID_MAX_BYTES + 1];
	struct blk_cid cid, out;
	size_t n, i;

	n = sample_bytes(buf, &cid);
	CHECK(n == 38);
	/* the digest above is BLAKE2b-256("abc") */
	{
		char hex[2 * BLK_CID_MAX_BYTES + 1];

		for (i = 0; i < n; i++)
			snprintf(hex + 2 * i, 3, "%02x", buf[i]);
		CHECK(strcmp(hex, "0155a0e40220" DIGEST_HEX) == 0);
	}

	/* the sample parses; every shorter prefix and a trailing byte do not */
	CHECK(blk_cid_from_bytes(&out, buf, n) == 0 &&
	      blk_cid_equal(&out, &cid));
	for (i = 0; i < n; i++)
		CHECK(blk_cid_from_bytes(&out, buf, i) == -EINVAL);
	buf[n] = 0;
	CHECK(blk_cid_from_bytes(&out, buf, n + 1) == -EINVAL);

	/* any codec that fits in a varint is accepted */
	cid.codec = 0;
	n = blk_cid_to_bytes(&cid, buf);
	CHECK(n == 38 && blk_cid_from_bytes(&out, buf, n) == 0 &&
	      blk_cid_equal(&out, &cid));
	cid.codec = UINT64_MAX >> 1;
	n = blk_cid_to_bytes(&cid, buf);
	CHECK(n == 46 && n <= BLK_CID_MAX_BYTES);
	CHECK(blk_cid_from_bytes(&out, buf, n) == 0 &&
	      blk_cid_equal(&out, &cid));
	{
		char str[BLK_CID_STR_MAX];

		n = blk_cid_to_string(&cid, str);
		CHECK(n < BLK_CID_STR_MAX && strlen(str) == n);
		CHECK(blk_cid_from_string(&out, str) == 0 &&
		      blk_cid_equal(&out, &cid));
	}

	check_bytes_fail("");
	/* wrong version: 0, 2, and a CIDv0 (bare sha2-256 multihash) */
	check_bytes_fail("0055a0e40220" DIGEST_HEX);
	check_bytes_fail("0255a0e40220" DIGEST_HEX);
	check_bytes_fail("1220" DIGEST_HEX);
	/* wrong multihash: sha2-512, blake2b-512, identity; and sha2-256
	 * with a wrong length */
	check_bytes_fail("01551320" DIGEST_HEX);
	check_bytes_fail("0155c0e40220" DIGEST_HEX);
	check_bytes_fail("0155121f" DIGEST_HEX_31);
	check_bytes_fail("01550020" DIGEST_HEX);
	/* wrong digest length, declared or actual */
	check_bytes_fail("0155a0e4021f" DIGEST_HEX_31);
	check_bytes_fail("0155a0e4021f" DIGEST_HEX);
	check_bytes_fail("0155a0e40221" DIGEST_HEX "00");
	check_bytes_fail("0155a0e40220" DIGEST_HEX_31);
	check_bytes_fail("0155a0e40220" DIGEST_HEX "00");
	check_bytes_fail("0155a0e40220" DIGEST_HEX DIGEST_HEX);
	/* non-minimal varints in each field */
	check_bytes_fail("810055a0e40220" DIGEST_HEX);
	check_bytes_fail("01d500a0e40220" DIGEST_HEX);
	check_bytes_fail("0155a0e4820020" DIGEST_HEX);
	check_bytes_fail("0155a0e402a000" DIGEST_HEX);
	/* overlong and truncated varints */
	check_bytes_fail("01ffffffffffffffffff01a0e40220" DIGEST_HEX);
	check_bytes_fail("01");
	check_bytes_fail("0180");
	check_bytes_fail("0155a0e4");
	check_bytes_fail("0155a0e402");
	check_bytes_fail("0155a0e40280");
}

static void check_string_fail(const char *s)
{
	struct blk_cid out, before;
	size_t n = strlen(s);
	char *exact = malloc(n + 1);

	CHECK(exact != NULL);
	if (!exact)
		return;
	memcpy(exact, s, n + 1);
	memset(&out, 0x5a, sizeof(out));
	before = out;
	if (blk_cid_from_string(&out, exact) != -EINVAL) {
		fprintf(stderr, "accepted: \"%s\"\n", s);
		CHECK(0);
	} else {
		CHECK(memcmp(&out, &before, sizeof(out)) == 0);
	}
	free(exact);
}

#define ABC_RAW "bafk2bzacec653aj4mnbds4rrohxt73uyk6nzjfsohoy4wpscojrmrqdi2urrs"

static void test_string_rejects(void)
{
	char s[256];
	struct blk_cid cid, out;
	size_t i, n;

	blk_cid_compute_hash(&cid, BLK_HASH_BLAKE2B_256, BLK_CODEC_RAW, "abc",
			     3);
	n = blk_cid_to_string(&cid, s);
	CHECK(n == 62 && strcmp(s, ABC_RAW) == 0);
	CHECK(blk_cid_from_string(&out, ABC_RAW) == 0 &&
	      blk_cid_equal(&out, &cid));

	check_string_fail("");
	check_string_fail("b");
	check_string_fail("ba");
	check_string_fail("bafk2bz");
	/* CIDv0 and other multibases */
	check_string_fail("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o");
	check_string_fail("f0155a0e40220" DIGEST_HEX);
	strcpy(s, ABC_RAW);
	s[0] = 'z';
	check_string_fail(s);
	s[0] = 'B';
	check_string_fail(s);
	s[0] = 'c';
	check_string_fail(s);
	check_string_fail(s + 1); /* no prefix at all */
	/* upper case (base32upper is 'B'; we only accept lower case) */
	strcpy(s, ABC_RAW);
	for (i = 1; s[i]; i++)
		if (s[i] >= 'a' && s[i] <= 'z')
			s[i] = (char)(s[i] - 'a' + 'A');
	check_string_fail(s);
	strcpy(s, ABC_RAW);
	s[0] = 'B';
	for (i = 1; s[i]; i++)
		if (s[i] >= 'a' && s[i] <= 'z')
			s[i] = (char)(s[i] - 'a' + 'A');
	check_string_fail(s);
	strcpy(s, ABC_RAW);
	s[10] = 'Z';
	check_string_fail(s);
	/* padding, whitespace, characters outside the alphabet */
	check_string_fail(ABC_RAW "===");
	check_string_fail(ABC_RAW "=");
	check_string_fail(ABC_RAW " ");
	check_string_fail(ABC_RAW "\n");
	check_string_fail(" " ABC_RAW);
	strcpy(s, ABC_RAW);
	for (i = 0; i < 256; i++) {
		char c = (char)i;

		if (c == '\0' || (c >= 'a' && c <= 'z') ||
		    (c >= '2' && c <= '7'))
			continue;
		s[20] = c;
		check_string_fail(s);
	}
	/* 38 bytes are 60 characters and 4 bits: the last character holds
	 * 4 data bits and one spare bit, which must be zero */
	strcpy(s, ABC_RAW);
	CHECK(s[61] == 's'); /* 1001 0 */
	s[61] = 't';	     /* 1001 1 */
	check_string_fail(s);
	s[61] = 'q'; /* 1000 0: another valid digest */
	CHECK(blk_cid_from_string(&out, s) == 0 && !blk_cid_equal(&out, &cid));
	s[61] = 'r';
	check_string_fail(s);
	/* one character more or less */
	strcpy(s, ABC_RAW);
	s[61] = '\0';
	check_string_fail(s);
	strcpy(s, ABC_RAW "a");
	check_string_fail(s);
	strcpy(s, ABC_RAW "aa");
	check_string_fail(s);
	/* very long */
	memset(s, 'a', sizeof(s) - 1);
	s[0] = 'b';
	s[sizeof(s) - 1] = '\0';
	check_string_fail(s);
}

/* xorshift64*: a fixed-seed generator so failures reproduce. */
static uint64_t rng_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * UINT64_C(2685821657736338717);
}

/* Feed @len bytes to every binary parser from an exact-size heap copy.
 * Returns true if blk_cid_from_bytes accepted them. */
static bool fuzz_bytes(const uint8_t *data, size_t len)
{
	uint8_t *exact = malloc(len ? len : 1);
	uint8_t again[BLK_CID_MAX_BYTES];
	struct blk_cid cid;
	uint64_t v;
	bool ok;
	int n;

	if (!exact) {
		CHECK(0);
		return false;
	}
	memcpy(exact, data, len);

	n = blk_varint_get(exact, len, &v);
	if (n >= 0) {
		/* accepted only if it is the canonical encoding */
		CHECK(n >= 1 && n <= 9 && (size_t)n <= len);
		CHECK(blk_varint_put(again, v) == (size_t)n &&
		      memcmp(again, exact, (size_t)n) == 0);
	} else {
		CHECK(n == -EINVAL);
	}

	n = blk_cid_from_bytes(&cid, exact, len);
	ok = n == 0;
	if (ok) {
		CHECK(blk_cid_to_bytes(&cid, again) == len &&
		      memcmp(again, exact, len) == 0);
	} else {
		CHECK(n == -EINVAL);
	}
	free(exact);
	return ok;
}

/* Feed a NUL-terminated string to the text parser from an exact-size heap
 * copy. Returns true if it was accepted. */
static bool fuzz_string(const char *s)
{
	size_t len = strlen(s);
	char *exact = malloc(len + 1);
	char again[BLK_CID_STR_MAX];
	struct blk_cid cid;
	int n;

	if (!exact) {
		CHECK(0);
		return false;
	}
	memcpy(exact, s, len + 1);
	n = blk_cid_from_string(&cid, exact);
	if (n == 0) {
		CHECK(blk_cid_to_string(&cid, again) == len &&
		      strcmp(again, exact) == 0);
	} else {
		CHECK(n == -EINVAL);
	}
	free(exact);
	return n == 0;
}

#define FUZZ_ROUNDS 20000

static void test_robustness(void)
{
	static const char chars[] = "abcdefghijklmnopqrstuvwxyz234567"
				    "ABCXYZ0189=-_ bBfzQm\xff\x80\t";
	uint64_t rng = UINT64_C(0x9e3779b97f4a7c15);
	unsigned int round, accepted_bytes = 0, accepted_text = 0;
	unsigned int passed_before = passed;
	uint8_t base[BLK_CID_MAX_BYTES + 8], buf[96];
	char base_str[BLK_CID_STR_MAX], str[160];
	struct blk_cid cid;
	size_t base_len, base_str_len, len, i;

	for (round = 0; round < FUZZ_ROUNDS; round++) {
		uint64_t r = rng_next(&rng);
		unsigned int mutations, m;

		/* a fresh valid CID with a random codec now and then */
		blk_cid_compute(&cid, round % 7 ? BLK_CODEC_RAW : r >> 1,
				&round, sizeof(round));
		base_len = blk_cid_to_bytes(&cid, base);
		base_str_len = blk_cid_to_string(&cid, base_str);

		/* unmutated forms are accepted */
		CHECK(fuzz_bytes(base, base_len));
		CHECK(fuzz_string(base_str));

		/* random bytes of random length */
		len = rng_next(&rng) % sizeof(buf);
		for (i = 0; i < len; i++)
			buf[i] = (uint8_t)rng_next(&rng);
		if (len > 0 && rng_next(&rng) % 2)
			buf[0] = 0x01; /* get past the version check */
		accepted_bytes += fuzz_bytes(buf, len);

		/* mutated valid bytes: flips, truncation, extension */
		memcpy(buf, base, base_len);
		len = base_len;
		mutations = 1 + rng_next(&rng) % 3;
		for (m = 0; m < mutations; m++) {
			r = rng_next(&rng);
			switch (r % 4) {
			case 0:
				buf[(r >> 8) % len] ^=
				    (uint8_t)(1u << ((r >> 32) % 8));
				break;
			case 1:
				buf[(r >> 8) % len] = (uint8_t)(r >> 32);
				break;
			case 2:
				len = (r >> 8) % len + 1;
				break;
			case 3:
				if (len < sizeof(buf))
					buf[len++] = (uint8_t)(r >> 32);
				break;
			}
		}
		accepted_bytes += fuzz_bytes(buf, len);
		/* a flip inside the digest keeps the CID valid */
		memcpy(buf, base, base_len);
		buf[base_len - 1 - rng_next(&rng) % BLK_DIGEST_LEN] ^= 0x10;
		CHECK(fuzz_bytes(buf, base_len));

		/* random strings over a mostly-valid alphabet */
		len = rng_next(&rng) % (sizeof(str) - 1);
		for (i = 0; i < len; i++)
			str[i] = chars[rng_next(&rng) % (sizeof(chars) - 1)];
		if (len > 0 && rng_next(&rng) % 2)
			str[0] = 'b';
		str[len] = '\0';
		accepted_text += fuzz_string(str);

		/* mutated valid strings */
		memcpy(str, base_str, base_str_len + 1);
		len = base_str_len;
		mutations = 1 + rng_next(&rng) % 3;
		for (m = 0; m < mutations; m++) {
			r = rng_next(&rng);
			i = (r >> 8) % len;
			switch (r % 5) {
			case 0:
				str[i] = chars[(r >> 32) % (sizeof(chars) - 1)];
				break;
			case 1: /* delete */
				memmove(str + i, str + i + 1, len - i);
				len--;
				break;
			case 2: /* insert */
				if (len + 1 < sizeof(str)) {
					memmove(str + i + 1, str + i,
						len - i + 1);
					str[i] = chars[(r >> 32) %
						       (sizeof(chars) - 1)];
					len++;
				}
				break;
			case 3: /* truncate */
				len = i + 1;
				str[len] = '\0';
				break;
			case 4: /* upper case */
				if (str[i] >= 'a' && str[i] <= 'z')
					str[i] = (char)(str[i] - 'a' + 'A');
				break;
			}
			if (len == 0)
				break;
		}
		accepted_text += fuzz_string(str);
	}
	printf("robustness: %u rounds, %u checks; accepted %u random/mutated "
	       "binary and %u text inputs (each round-tripped exactly)\n",
	       FUZZ_ROUNDS, passed - passed_before, accepted_bytes,
	       accepted_text);
}

int main(void)
{
	test_vectors();
	test_type_word();
	test_varints();
	test_bytes_rejects();
	test_string_rejects();
	test_robustness();
	printf("cid: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
