/* libFuzzer target for blocks/cid.c: binary CIDs, text CIDs and varints
 * parse without reading past their input, and whatever parses is written
 * back to exactly the bytes it came from (every form is canonical). */

#include "blocks/cid.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a binary CID: to_bytes(from_bytes(b)) == b, and its text
 * form parses back to the same CID. */
static void check_binary(const uint8_t *data, size_t size)
{
	struct blk_cid cid, again;
	uint8_t bin[BLK_CID_MAX_BYTES];
	char str[BLK_CID_STR_MAX];

	if (blk_cid_from_bytes(&cid, data, size) != 0)
		return;
	if (blk_cid_to_bytes(&cid, bin) != size || memcmp(bin, data, size) != 0)
		abort();
	blk_cid_to_string(&cid, str);
	if (blk_cid_from_string(&again, str) != 0 ||
	    !blk_cid_equal(&cid, &again))
		abort();
}

/* The input as text (up to its first NUL, as the parser reads a C
 * string): to_string(from_string(s)) == s. */
static void check_text(const uint8_t *data, size_t size)
{
	struct blk_cid cid;
	char str[BLK_CID_STR_MAX];
	char *text = malloc(size + 1);

	if (!text)
		return;
	memcpy(text, data, size);
	text[size] = '\0';
	if (blk_cid_from_string(&cid, text) == 0) {
		blk_cid_to_string(&cid, str);
		if (strcmp(str, text) != 0)
			abort();
	}
	free(text);
}

/* The input as a varint: put(get(b)) writes back the bytes get read. */
static void check_varint(const uint8_t *data, size_t size)
{
	uint8_t buf[16];
	uint64_t v;
	int n = blk_varint_get(data, size, &v);

	if (n < 0)
		return;
	if (blk_varint_put(buf, v) != (size_t)n || memcmp(buf, data, n) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_binary(data, size);
	check_text(data, size);
	check_varint(data, size);
	return 0;
}
