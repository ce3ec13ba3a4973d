/* libFuzzer target: the head record decoder on any input. A head that
 * decodes re-encodes to the same bytes; an unsigned one, once signed,
 * decodes back to the same fields and verifies. */
#include <assert.h>
#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#include "blocks/dag/head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t pk[32], sk[64];
	static bool keyed;
	uint8_t buf[BLK_HEAD_MAX_BYTES];
	struct blk_head h, again;
	size_t len;
	int ret;

	if (!keyed) {
		uint8_t seed[32] = {1};

		assert(sodium_init() >= 0);
		crypto_sign_seed_keypair(pk, sk, seed);
		keyed = true;
	}
	ret = blk_head_decode(&h, data, size);
	assert(ret == 0 || ret == -ENOKEY || ret == -EBADMSG);
	if (ret == 0) {
		assert(blk_head_encode(&h, buf, sizeof(buf), &len) == 0);
		assert(len == size && memcmp(buf, data, size) == 0);
		/* Not signed by this key (but with odds nil). */
		(void)blk_head_verify(&h, pk);
	} else if (ret == -ENOKEY) {
		assert(blk_head_sign(&h, sk) == 0);
		assert(blk_head_encode(&h, buf, sizeof(buf), &len) == 0);
		assert(blk_head_decode(&again, buf, len) == 0);
		assert(memcmp(&again.sig, &h.sig, sizeof(h.sig)) == 0);
		assert(again.seq == h.seq && again.time_ns == h.time_ns &&
		       again.lease_ns == h.lease_ns);
		assert(blk_head_verify(&again, pk) == 0);
	}
	return 0;
}
