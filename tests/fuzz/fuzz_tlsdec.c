// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer harness for user/replay/tlsdec.c: the key log parser, the hello parser and
 * the record decryptor on hostile bytes.
 *
 *   scripts/test.sh fuzz    (built against connscope's libraries)
 *   then, longer: .output/tests/fuzz_tlsdec tests/fuzz/corpus_tlsdec
 *
 * Input: key log length (2 bytes, big endian), the key log text, client-to-server
 * length (4 bytes, big endian), the client's bytes, then the server's bytes (the
 * seeds are real connections, written by tests/unit/data/tlsdec/gen.py --corpus).
 * When the key log has nothing for the hellos' client random, fixed secrets are
 * added for it, so that made-up records reach the AEAD and the key schedule.
 * Each direction is cut into records by their headers and handed over in turn,
 * the last partial one too; every record is an exactly-sized heap copy. Besides
 * memory safety, the harness aborts on a broken promise: a status out of range,
 * a plaintext longer than the output buffer, a failure without a reason, or a
 * broken direction that comes back.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tlsdec.h"

#define OUT_MAX (16384 + 256)

static void require_(int ok, int line)
{
	if (!ok) {
		fprintf(stderr, "fuzz_tlsdec.c:%d: a promise broken\n", line);
		abort();
	}
}

#define require(ok) require_(ok, __LINE__)

static unsigned char *copy(const uint8_t *p, size_t n)
{
	unsigned char *q = malloc(n ? n : 1);

	require(q != NULL);
	if (n)
		memcpy(q, p, n);
	return q;
}

static void feed(struct tlsdec *d, int dir, const uint8_t *s, size_t n)
{
	static unsigned char out[OUT_MAX];
	size_t off = 0;
	int stuck = 0;

	while (off < n) {
		size_t len = n - off, ol = 0;
		unsigned char *b, type = 0;
		int st;

		if (len >= 5 && 5 + ((size_t)s[off + 3] << 8 | s[off + 4]) < len)
			len = 5 + ((size_t)s[off + 3] << 8 | s[off + 4]);
		b = copy(s + off, len);
		st = tlsdec_record(d, dir, b, len, out, &ol, &type);
		free(b);
		require(st >= TLSDEC_OK && st <= TLSDEC_ERROR);
		require(ol <= OUT_MAX);
		require(st == TLSDEC_OK || tlsdec_why(d)[0]);
		require(!stuck || st == stuck);
		if (st)
			stuck = st;
		off += len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tls_hello_params hp;
	struct keylog *kl;
	struct tlsdec *d;
	size_t kl_len, c_len;
	const uint8_t *c2s, *s2c;
	size_t s_len;
	unsigned char *c, *s;
	char why[160], text[1200], crh[65];
	int st;

	if (size < 6)
		return 0;
	kl_len = (size_t)data[0] << 8 | data[1];
	if (kl_len > size - 6)
		kl_len = size - 6;
	c_len = (size_t)data[2 + kl_len] << 24 | (size_t)data[3 + kl_len] << 16 |
		(size_t)data[4 + kl_len] << 8 | data[5 + kl_len];
	c2s = data + 6 + kl_len;
	if (c_len > size - 6 - kl_len)
		c_len = size - 6 - kl_len;
	s2c = c2s + c_len;
	s_len = size - 6 - kl_len - c_len;

	kl = keylog_parse((const char *)data + 2, kl_len, "fuzz");
	require(kl != NULL);
	c = copy(c2s, c_len);
	s = copy(s2c, s_len);
	tlsdec_hello_params(c, c_len, s, s_len, &hp);
	free(c);
	free(s);
	if (!keylog_has(kl, hp.client_random)) {
		keylog_free(kl);
		for (int i = 0; i < 32; i++)
			sprintf(crh + 2 * i, "%02x", hp.client_random[i]);
		/* SHA-256 suites take 32-byte secrets, SHA-384 ones 48. */
		snprintf(text, sizeof(text),
			 "CLIENT_RANDOM %s %096d\n"
			 "CLIENT_HANDSHAKE_TRAFFIC_SECRET %s %0*d\n"
			 "SERVER_HANDSHAKE_TRAFFIC_SECRET %s %0*d\n"
			 "CLIENT_TRAFFIC_SECRET_0 %s %0*d\n"
			 "SERVER_TRAFFIC_SECRET_0 %s %0*d\n",
			 crh, 1, crh, hp.cipher_suite == 0x1302 ? 96 : 64, 2,
			 crh, hp.cipher_suite == 0x1302 ? 96 : 64, 3,
			 crh, hp.cipher_suite == 0x1302 ? 96 : 64, 4,
			 crh, hp.cipher_suite == 0x1302 ? 96 : 64, 5);
		kl = keylog_parse(text, strlen(text), "fixed");
		require(kl != NULL && keylog_bad_lines(kl) == 0);
	}
	d = tlsdec_new(kl, &hp, &st, why, sizeof(why));
	require(st >= TLSDEC_OK && st <= TLSDEC_ERROR);
	require((d != NULL) == (st == TLSDEC_OK));
	if (d) {
		feed(d, 0, c2s, c_len);
		feed(d, 1, s2c, s_len);
		tlsdec_free(d);
	}
	keylog_free(kl);
	return 0;
}
