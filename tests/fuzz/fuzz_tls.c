// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer harness for bpf/tls.h: every parser entry point on hostile bytes, and
 * the record walker plus tls_hs_step over the input cut into two segments at a
 * point the fuzzer picks.
 *
 *   scripts/test.sh fuzz    (built against connscope's libraries)
 *   then, longer: .output/tests/fuzz_tls tests/fuzz/corpus_tls
 *
 * Input: byte 0 = where the second segment starts (as a fraction of the rest),
 * byte 1 = an offset for the *_at parsers and a seed for the initial sequence
 * number, then the payload. Every buffer a parser sees is an exactly-sized heap
 * copy, so any read past it is an ASan report. Besides memory safety, the harness
 * aborts on a broken promise: an unterminated or unprintable string, a record
 * reported outside its segment, _at results that differ from the plain parser's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

static void require(int ok)
{
	if (!ok)
		abort();
}

static unsigned char *copy(const uint8_t *p, size_t n)
{
	unsigned char *q = malloc(n ? n : 1);

	require(q != NULL);
	if (n)
		memcpy(q, p, n);
	return q;
}

/* A NUL within size, and only printable bytes (0x21..0x7e) before it. */
static void check_str(const char *s, size_t size)
{
	size_t i;

	for (i = 0; i < size && s[i]; i++)
		require(tls_printable((__u8)s[i]));
	require(i < size);
}

/* The length of the handshake message at b (header included); b holds at least 4. */
static __u32 msg_len(const unsigned char *b)
{
	return 4 + ((__u32)b[1] << 16 | (__u32)b[2] << 8 | b[3]);
}

static void check_ch(const unsigned char *b, size_t n)
{
	struct tls_client_hello ch, ch2;
	unsigned char *shifted;
	int r = tls_parse_client_hello(b, (__u32)n, &ch);

	require(r >= TLS_OK && r <= TLS_TOO_LONG);
	if (r == TLS_OK) {
		check_str(ch.sni, sizeof(ch.sni));
		check_str(ch.alpn, sizeof(ch.alpn));
		require(!(ch.flags & TLS_CH_SNI) || ch.sni[0]);
		require(!(ch.flags & TLS_CH_SNI_BAD) || !ch.sni[0]);
		require(tls_version_ok(ch.legacy_version));
		require(ch.n_ext <= TLS_EXT_MAX);
		/* A valid hello is a whole message: one byte short of it is TRUNCATED. */
		require(tls_parse_client_hello(b, msg_len(b) - 1, &ch2) == TLS_TRUNCATED);
	}
	/* The same bytes 7 bytes into a larger buffer: the same answer. */
	shifted = malloc(n + 7);
	require(shifted != NULL);
	memset(shifted, 0xa5, 7);
	memcpy(shifted + 7, b, n);
	require(tls_parse_client_hello_at(shifted, 7, (__u32)n + 7, &ch2) == r);
	if (r == TLS_OK)
		require(!memcmp(&ch, &ch2, sizeof(ch)));
	/* The ALPN-only walk (the kernel's quiet path): the same verdict and offer. */
	require(tls_client_hello_alpn_at(shifted, 7, (__u32)n + 7, &ch2) == r);
	if (r == TLS_OK) {
		const __u32 f = TLS_CH_ALPN | TLS_CH_ALPN_TRUNC | TLS_CH_ALPN_BAD;

		require(!strcmp(ch.alpn, ch2.alpn) && (ch.flags & f) == (ch2.flags & f));
	}
	free(shifted);
}

static void check_sh(const unsigned char *b, size_t n)
{
	struct tls_server_hello sh, sh2;
	int r = tls_parse_server_hello(b, (__u32)n, &sh);

	require(r >= TLS_OK && r <= TLS_TOO_LONG);
	if (r == TLS_OK) {
		check_str(sh.alpn, sizeof(sh.alpn));
		require(tls_version_ok(sh.version));
		require(!(sh.flags & TLS_SH_VERSIONS) || sh.version == sh.selected_version);
		require(tls_parse_server_hello(b, msg_len(b) - 1, &sh2) == TLS_TRUNCATED);
	}
}

/* Walk one segment (seq, bytes), feeding its records to tls_hs_step. */
static void walk_seg(struct tls_stream *st, struct tls_hs *hs, int from_client, __u32 seq,
		     const uint8_t *p, size_t n)
{
	struct tls_walk w;
	unsigned char *seg = copy(p, n);
	int r, rounds = 0;

	do {
		r = tls_walk(st, seq, seg, (__u32)n, &w);
		require(r >= TLS_WALK_OK && r <= TLS_WALK_DESYNC);
		require(w.n <= TLS_WALK_MAX);
		require(r != TLS_WALK_MORE || w.n == TLS_WALK_MAX);
		require(st->hdr_have < TLS_REC_HDR_LEN);
		for (__u32 i = 0; i < w.n; i++) {
			const struct tls_walk_rec *rr = &w.rec[i];
			int hr;

			require(rr->len <= TLS_REC_MAX_LEN);
			require(rr->type >= TLS_CT_CHANGE_CIPHER_SPEC && rr->type <= TLS_CT_HEARTBEAT);
			require(rr->body_here <= rr->len);
			require(rr->body_here == 0 ||
				(rr->body_off <= n && rr->body_here <= n - rr->body_off));
			hr = tls_hs_step(hs, from_client, rr->type, rr->len, seg, rr->body_off,
					 rr->body_here);
			require(hr == hs->state && hr >= TLS_HS_PROGRESS && hr <= TLS_HS_FAILED);
		}
		require(++rounds <= 1 + (int)(n / TLS_REC_HDR_LEN));
	} while (r == TLS_WALK_MORE);
	free(seg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tls_rec_hdr h;
	struct tls_stream st;
	struct tls_hs hs;
	const uint8_t *p;
	unsigned char *b;
	size_t n, cut;
	__u32 seq;
	__u8 lv = 0, d = 0, t = 0;
	__u32 hl = 0;

	if (size < 2)
		return 0;
	p = data + 2;
	n = size - 2;
	cut = n ? (size_t)data[0] * n / 255 : 0;
	seq = 0xffffff00u + data[1] * 3u; /* the walk may cross the 32-bit wrap */

	b = copy(p, n);
	if (tls_parse_record_header(b, (__u32)n, &h) == TLS_OK)
		require(n >= TLS_REC_HDR_LEN && h.len <= TLS_REC_MAX_LEN);
	(void)tls_looks_like_client_hello(b, (__u32)n);
	(void)tls_parse_hs_header(b, (__u32)n, &t, &hl);
	if (tls_parse_alert(b, (__u32)n, &lv, &d) == TLS_OK)
		require(lv == 1 || lv == 2);
	(void)tls_alert_name(d);
	(void)tls_version_name((__u16)hl);
	check_ch(b, n);
	check_sh(b, n);
	/* The hello as a record body, as the BPF side passes it. */
	if (n > TLS_REC_HDR_LEN) {
		struct tls_client_hello ch;
		struct tls_server_hello sh;

		(void)tls_parse_client_hello_at(b, TLS_REC_HDR_LEN, (__u32)n, &ch);
		(void)tls_parse_server_hello_at(b, TLS_REC_HDR_LEN, (__u32)n, &sh);
	}
	free(b);

	/* The walker: two segments of one direction, then the same bytes as the
	 * other direction with the segments swapped (a gap, then the late one). */
	tls_stream_init(&st, seq);
	tls_hs_init(&hs);
	walk_seg(&st, &hs, 1, seq, p, cut);
	walk_seg(&st, &hs, 0, seq + (__u32)cut, p + cut, n - cut);
	walk_seg(&st, &hs, 1, seq, p, n); /* a retransmission of it all */
	tls_stream_init(&st, seq);
	walk_seg(&st, &hs, 0, seq + (__u32)cut, p + cut, n - cut);
	walk_seg(&st, &hs, 0, seq, p, cut);
	return 0;
}
