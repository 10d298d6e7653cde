// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Unit test of bpf/tls.h, the TLS wire parser shared by BPF and replay, on real
 * handshakes recorded from OpenSSL (tests/unit/tls_vectors.h, made by
 * tests/unit/tls_vectors.py) and on crafted edge cases.
 *
 *   scripts/test.sh unit    (built against connscope's libraries)
 *
 * Inputs are copied into exactly-sized heap buffers, so ASan catches any read past
 * the bytes a parser was given.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"
#include "tls_vectors.h"

#include "check.h"

static void check_str(const char *what, const char *got, const char *want)
{
	if (!strcmp(got, want))
		check(true, "%s = \"%s\"", what, want);
	else
		check(false, "%s = \"%s\", want \"%s\"", what, got, want);
}

static void check_int(const char *what, long got, long want)
{
	if (got == want)
		check(true, "%s = %ld (0x%lx)", what, want, want);
	else
		check(false, "%s = %ld (0x%lx), want %ld (0x%lx)", what, got, got, want, want);
}


static const struct vec_session *const sessions[] = {
	&tls13, &tls12, &tls12_resume, &tls13_resume, &reject13, &reject12, &nocipher12,
};
#define NSESS (sizeof(sessions) / sizeof(sessions[0]))

static const unsigned char *stream_of(const struct vec_session *s, int dir, unsigned *len)
{
	*len = dir ? s->s2c_len : s->c2s_len;
	return dir ? s->s2c : s->c2s;
}

/* The body of record i of a session (after its 5-byte header). */
static const unsigned char *rec_body(const struct vec_session *s, unsigned i, unsigned *len)
{
	unsigned n;
	const unsigned char *st = stream_of(s, s->recs[i].dir, &n);

	*len = s->recs[i].len - 5;
	return st + s->recs[i].off + 5;
}

/* The first record of a direction of the given type; its index or -1. */
static int first_rec(const struct vec_session *s, int dir, int type)
{
	for (unsigned i = 0; i < s->nrecs; i++)
		if (s->recs[i].dir == dir && s->recs[i].type == type)
			return (int)i;
	return -1;
}

/* ---- record layer --------------------------------------------------------------- */

static void test_record_header(void)
{
	struct tls_rec_hdr h;
	unsigned ok_all = 1;

	for (unsigned k = 0; k < NSESS; k++) {
		const struct vec_session *s = sessions[k];

		for (unsigned i = 0; i < s->nrecs; i++) {
			unsigned n;
			const unsigned char *st = stream_of(s, s->recs[i].dir, &n);
			unsigned char *b = dup_n(st + s->recs[i].off, 5);

			if (tls_parse_record_header(b, 5, &h) != TLS_OK || h.type != s->recs[i].type ||
			    h.len != s->recs[i].len - 5)
				ok_all = 0;
			for (unsigned p = 0; p < 5; p++)
				if (tls_parse_record_header(b, p, &h) != TLS_TRUNCATED)
					ok_all = 0;
			free(b);
		}
	}
	check(ok_all, "every recorded record header parses, with its type and length; "
		      "each of its prefixes is TRUNCATED");

	{
		const unsigned char bad_type[] = { 0x19, 3, 3, 0, 1 };
		const unsigned char bad_type2[] = { 0x47, 'E', 'T', ' ', '/' };
		const unsigned char bad_major[] = { 22, 2, 0, 0, 1 };
		const unsigned char bad_minor[] = { 22, 3, 5, 0, 1 };
		const unsigned char too_long[] = { 23, 3, 3, 0x48, 0x01 }; /* 2^14 + 2049 */
		const unsigned char max_len[] = { 23, 3, 3, 0x48, 0x00 };  /* 2^14 + 2048 */
		const unsigned char empty_hs[] = { 22, 3, 1, 0, 0 };
		const unsigned char empty_app[] = { 23, 3, 3, 0, 0 };
		const unsigned char ssl3[] = { 21, 3, 0, 0, 2 };
		const unsigned char hb[] = { 24, 3, 4, 0, 3 };

		check_int("type 0x19 is INVALID", tls_parse_record_header(bad_type, 5, &h),
			  TLS_INVALID);
		check_int("\"GET /\" is INVALID from its first byte",
			  tls_parse_record_header(bad_type2, 1, &h), TLS_INVALID);
		check_int("version 0x0200 is INVALID from its second byte",
			  tls_parse_record_header(bad_major, 2, &h), TLS_INVALID);
		check_int("version 0x0305 is INVALID", tls_parse_record_header(bad_minor, 5, &h),
			  TLS_INVALID);
		check_int("version 0x0305, length missing, is INVALID",
			  tls_parse_record_header(bad_minor, 4, &h), TLS_INVALID);
		check_int("length 2^14+2049 is INVALID", tls_parse_record_header(too_long, 5, &h),
			  TLS_INVALID);
		check_int("length 2^14+2048 is OK", tls_parse_record_header(max_len, 5, &h), TLS_OK);
		check_int("empty handshake record is INVALID",
			  tls_parse_record_header(empty_hs, 5, &h), TLS_INVALID);
		check_int("empty application_data record is OK",
			  tls_parse_record_header(empty_app, 5, &h), TLS_OK);
		check_int("SSL 3.0 alert header is OK", tls_parse_record_header(ssl3, 5, &h), TLS_OK);
		check(h.type == 21 && h.version == 0x0300 && h.len == 2, "... type 21 version 0x0300 length 2");
		check_int("heartbeat header is OK", tls_parse_record_header(hb, 5, &h), TLS_OK);
	}
}

static void test_looks_like_client_hello(void)
{
	int all = 1;

	for (unsigned k = 0; k < NSESS; k++) {
		const struct vec_session *s = sessions[k];

		if (!tls_looks_like_client_hello(s->c2s, s->c2s_len) ||
		    !tls_looks_like_client_hello(s->c2s, 6) ||
		    !tls_looks_like_client_hello(s->c2s, 5))
			all = 0;
		if (tls_looks_like_client_hello(s->s2c, s->s2c_len))
			all = 0;
	}
	check(all, "every recorded client stream looks like a ClientHello (5, 6, all bytes), "
		   "no server stream does");
	{
		const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
		const char *h2 = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
		const unsigned char sslv2[] = { 0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15 };
		const unsigned char sh[] = { 22, 3, 3, 0, 80, 2, 0, 0, 76, 3, 3 };
		const unsigned char big[] = { 22, 3, 1, 0x40, 0x01, 1 }; /* 2^14 + 1 */

		check(!tls_looks_like_client_hello((const __u8 *)http, strlen(http)), "HTTP/1.1 request is not a ClientHello");
		check(!tls_looks_like_client_hello((const __u8 *)h2, strlen(h2)), "HTTP/2 preface is not a ClientHello");
		check(!tls_looks_like_client_hello(sslv2, sizeof(sslv2)), "SSLv2-framed hello is not recognised");
		check(!tls_looks_like_client_hello(sh, sizeof(sh)), "a ServerHello record is not a ClientHello");
		check(!tls_looks_like_client_hello(big, sizeof(big)), "a handshake record over 2^14 is not a ClientHello");
		check(!tls_looks_like_client_hello(tls13.c2s, 4), "4 bytes are not enough to say");
	}
}

/* ---- ClientHello ------------------------------------------------------------------ */

/* Every ClientHello the tests parse is also read by the ALPN-only walk (the
 * kernel's quiet path): the same verdict, the same offer. */
static int parse_ch(const unsigned char *p, unsigned n, struct tls_client_hello *ch)
{
	const __u32 alpn_flags = TLS_CH_ALPN | TLS_CH_ALPN_TRUNC | TLS_CH_ALPN_BAD;
	unsigned char *b = dup_n(p, n);
	int r = tls_parse_client_hello(b, n, ch);
	struct tls_client_hello a;
	int ra = tls_client_hello_alpn_at(b, 0, n, &a);

	check(ra == r, "the ALPN-only walk gives the full parser's verdict");
	if (r == TLS_OK && ra == TLS_OK)
		check(!strcmp(a.alpn, ch->alpn) &&
			      (a.flags & alpn_flags) == (ch->flags & alpn_flags),
		      "the ALPN-only walk reads the full parser's ALPN");
	free(b);
	return r;
}

static int parse_sh(const unsigned char *p, unsigned n, struct tls_server_hello *sh)
{
	unsigned char *b = dup_n(p, n);
	int r = tls_parse_server_hello(b, n, sh);

	free(b);
	return r;
}

static void test_client_hello_real(void)
{
	struct tls_client_hello ch;

	for (unsigned k = 0; k < NSESS; k++) {
		const struct vec_session *s = sessions[k];
		unsigned n;
		const unsigned char *body = rec_body(s, 0, &n);
		char what[128];
		int r = parse_ch(body, n, &ch);

		snprintf(what, sizeof(what), "%s: ClientHello parses", s->name);
		check_int(what, r, TLS_OK);
		if (r != TLS_OK)
			continue;
		snprintf(what, sizeof(what), "%s: SNI", s->name);
		check_str(what, ch.sni, VEC_SNI);
		snprintf(what, sizeof(what), "%s: ALPN offered", s->name);
		check_str(what, ch.alpn, VEC_ALPN_OFFERED);
		snprintf(what, sizeof(what), "%s: legacy_version", s->name);
		check_int(what, ch.legacy_version, 0x0303);
		snprintf(what, sizeof(what), "%s: highest supported version", s->name);
		/* nocipher12's client is capped at TLS 1.2: OpenSSL sends no supported_versions. */
		check_int(what, ch.max_version, k == 6 ? 0x0303 : 0x0304);
		check((ch.flags & (TLS_CH_SNI | TLS_CH_ALPN)) == (TLS_CH_SNI | TLS_CH_ALPN) &&
			      !(ch.flags & (TLS_CH_SNI_BAD | TLS_CH_ALPN_BAD | TLS_CH_ALPN_TRUNC |
					    TLS_CH_EXT_MORE | TLS_CH_NO_EXT | TLS_CH_VERSIONS_BAD)),
		      "%s: flags 0x%x: SNI and ALPN, nothing bad", s->name, ch.flags);
		check(ch.n_ciphers >= 1 && ch.n_ext >= 5, "%s: %u cipher suites, %u extensions",
		      s->name, ch.n_ciphers, ch.n_ext);
	}
	parse_ch(rec_body(&tls13, 0, &(unsigned){ 0 }), tls13.recs[0].len - 5, &ch);
	check(!(ch.flags & (TLS_CH_PSK | TLS_CH_TICKET)), "tls13: a first connection offers no PSK, no ticket");
	parse_ch(rec_body(&tls13_resume, 0, &(unsigned){ 0 }), tls13_resume.recs[0].len - 5, &ch);
	check(ch.flags & TLS_CH_PSK, "tls13_resume: ClientHello carries pre_shared_key");
	parse_ch(rec_body(&tls12_resume, 0, &(unsigned){ 0 }), tls12_resume.recs[0].len - 5, &ch);
	check(ch.flags & TLS_CH_TICKET, "tls12_resume: ClientHello carries a session ticket");
}

/* The *_at forms, as BPF calls them: the hello inside the record, by offset. */
static void test_at_variants(void)
{
	struct tls_client_hello a, b;
	struct tls_server_hello sa, sb;
	unsigned len = tls13.recs[0].len, n;
	unsigned char *rec = dup_n(tls13.c2s, len);
	const unsigned char *body = rec_body(&tls13, 0, &n);

	check(parse_ch(body, n, &a) == TLS_OK && tls_parse_client_hello_at(rec, 5, len, &b) == TLS_OK &&
		      !memcmp(&a, &b, sizeof(a)),
	      "ClientHello at offset 5 of its record: same result as on its own");
	check_int("... one byte short", tls_parse_client_hello_at(rec, 5, len - 1, &b), TLS_TRUNCATED);
	check_int("... start past the end", tls_parse_client_hello_at(rec, len, len, &b), TLS_TRUNCATED);
	check_int("... start past TLS_BUF_MAX", tls_parse_client_hello_at(rec, TLS_BUF_MAX + 1, TLS_BUF_MAX + 9, &b),
		  TLS_TOO_LONG);
	free(rec);
	len = tls12.recs[1].len;
	rec = dup_n(tls12.s2c, len);
	body = rec_body(&tls12, 1, &n);
	check(parse_sh(body, n, &sa) == TLS_OK && tls_parse_server_hello_at(rec, 5, len, &sb) == TLS_OK &&
		      !memcmp(&sa, &sb, sizeof(sa)) && !strcmp(sb.alpn, "h2"),
	      "ServerHello at offset 5 of its record: same result as on its own");
	free(rec);
}

/* Every prefix of every real hello: TRUNCATED, never OK, never a crash. */
static void test_prefixes(void)
{
	struct tls_client_hello ch;
	struct tls_server_hello sh;
	int bad = 0;
	unsigned tried = 0;

	for (unsigned k = 0; k < NSESS; k++) {
		const struct vec_session *s = sessions[k];
		unsigned n;
		const unsigned char *body = rec_body(s, 0, &n);
		int si = first_rec(s, 1, 22);

		for (unsigned p = 0; p < n; p++, tried++)
			if (parse_ch(body, p, &ch) != TLS_TRUNCATED)
				bad++;
		if (si < 0)
			continue;
		body = rec_body(s, (unsigned)si, &n);
		/* The message ends before the record in TLS 1.2 (more messages follow). */
		n = 4 + ((unsigned)body[1] << 16 | (unsigned)body[2] << 8 | body[3]);
		for (unsigned p = 0; p < n; p++, tried++)
			if (parse_sh(body, p, &sh) != TLS_TRUNCATED)
				bad++;
		if (parse_sh(body, n, &sh) != TLS_OK)
			bad++;
	}
	check(bad == 0, "%u prefixes of real ClientHellos and ServerHellos: all TRUNCATED (%d not)",
	      tried, bad);

	/* And the alert. */
	{
		__u8 lv = 0, d = 0;
		const unsigned char al[] = { 2, 48 };
		unsigned char *b = dup_n(al, 2);

		check_int("alert prefix 0", tls_parse_alert(b, 0, &lv, &d), TLS_TRUNCATED);
		check_int("alert prefix 1", tls_parse_alert(b, 1, &lv, &d), TLS_TRUNCATED);
		check_int("alert 2 bytes", tls_parse_alert(b, 2, &lv, &d), TLS_OK);
		b[0] = 3;
		check_int("alert level 3 is INVALID", tls_parse_alert(b, 1, &lv, &d), TLS_INVALID);
		free(b);
	}
}

/* A tiny builder for crafted hellos. */
struct bld {
	unsigned char b[4096];
	unsigned n;
};

static void put8(struct bld *w, unsigned v) { w->b[w->n++] = (unsigned char)v; }
static void put16(struct bld *w, unsigned v) { put8(w, v >> 8); put8(w, v & 0xff); }
static void put24(struct bld *w, unsigned v) { put8(w, v >> 16); put16(w, v & 0xffff); }
static void putn(struct bld *w, const void *p, unsigned n) { memcpy(w->b + w->n, p, n); w->n += n; }
static void set16(struct bld *w, unsigned at, unsigned v)
{
	w->b[at] = (unsigned char)(v >> 8);
	w->b[at + 1] = (unsigned char)v;
}

/* ClientHello up to the extensions; returns the offset of the extensions length
 * (written as 0; fix with end_ch) or the full message if no_ext. */
static void begin_ch(struct bld *w, unsigned sid_len, unsigned suites_len)
{
	w->n = 0;
	put8(w, 1);
	put24(w, 0);
	put16(w, 0x0303);
	for (int i = 0; i < 32; i++)
		put8(w, i);
	put8(w, sid_len);
	for (unsigned i = 0; i < sid_len; i++)
		put8(w, 0xaa);
	put16(w, suites_len);
	for (unsigned i = 0; i < suites_len; i++)
		put8(w, i & 1 ? 0x2f : 0x00);
	put8(w, 1);
	put8(w, 0);
}

static void end_msg(struct bld *w)
{
	unsigned len = w->n - 4;

	w->b[1] = (unsigned char)(len >> 16);
	w->b[2] = (unsigned char)(len >> 8);
	w->b[3] = (unsigned char)len;
}

static void ext_sni(struct bld *w, const char *name, unsigned name_len)
{
	put16(w, 0);
	put16(w, name_len + 5);
	put16(w, name_len + 3);
	put8(w, 0);
	put16(w, name_len);
	putn(w, name, name_len);
}

/* ALPN list from a '|'-separated string. */
static void ext_alpn(struct bld *w, const char *names)
{
	unsigned at = w->n, list_at;
	char tmp[2048];

	put16(w, 16);
	put16(w, 0);
	list_at = w->n;
	put16(w, 0);
	snprintf(tmp, sizeof(tmp), "%s", names);
	for (char *save = NULL, *t = strtok_r(tmp, "|", &save); t; t = strtok_r(NULL, "|", &save)) {
		put8(w, (unsigned)strlen(t));
		putn(w, t, (unsigned)strlen(t));
	}
	set16(w, list_at, w->n - list_at - 2);
	set16(w, at + 2, w->n - at - 4);
}

static void ext_versions(struct bld *w, const unsigned *v, unsigned n)
{
	put16(w, 43);
	put16(w, 1 + 2 * n);
	put8(w, 2 * n);
	for (unsigned i = 0; i < n; i++)
		put16(w, v[i]);
}

static void ext_empty(struct bld *w, unsigned type)
{
	put16(w, type);
	put16(w, 0);
}

/* Extensions block: call ext_start, add, then ext_end. */
static unsigned ext_start(struct bld *w)
{
	unsigned at = w->n;

	put16(w, 0);
	return at;
}

static void ext_end(struct bld *w, unsigned at)
{
	set16(w, at, w->n - at - 2);
	end_msg(w);
}

static void test_client_hello_crafted(void)
{
	struct tls_client_hello ch;
	struct bld w;
	unsigned at;
	const unsigned grease_versions[] = { 0x1a1a, 0x7f1c, 0x0304, 0x0303, 0xfafa };

	/* No extensions at all. */
	begin_ch(&w, 0, 2);
	end_msg(&w);
	check_int("hello without extensions: OK", parse_ch(w.b, w.n, &ch), TLS_OK);
	check(ch.flags == TLS_CH_NO_EXT && ch.max_version == 0x0303 && !ch.sni[0] && !ch.alpn[0],
	      "... flags NO_EXT only, max_version 0x0303, empty strings");

	/* SNI with a NUL: SNI_BAD, the rest still parsed. */
	begin_ch(&w, 32, 4);
	at = ext_start(&w);
	ext_sni(&w, "bad\0name", 8);
	ext_alpn(&w, "h2");
	ext_versions(&w, grease_versions, 5);
	ext_empty(&w, 42);
	ext_end(&w, at);
	check_int("hello with NUL in SNI: OK", parse_ch(w.b, w.n, &ch), TLS_OK);
	check((ch.flags & TLS_CH_SNI_BAD) && !(ch.flags & TLS_CH_SNI) && !ch.sni[0],
	      "... SNI_BAD, sni empty");
	check_str("... ALPN still read", ch.alpn, "h2");
	check_int("... GREASE and drafts ignored: highest version", ch.max_version, 0x0304);
	check(ch.flags & TLS_CH_EARLY_DATA, "... early_data flag");

	/* SNI with a control character, and SNI of 255 and 256 bytes. */
	begin_ch(&w, 0, 2);
	at = ext_start(&w);
	ext_sni(&w, "a\x7f", 2);
	ext_end(&w, at);
	parse_ch(w.b, w.n, &ch);
	check(ch.flags & TLS_CH_SNI_BAD, "SNI with DEL is SNI_BAD");
	{
		char name[300];

		memset(name, 'a', sizeof(name));
		begin_ch(&w, 0, 2);
		at = ext_start(&w);
		ext_sni(&w, name, 255);
		ext_end(&w, at);
		check_int("255-byte SNI: OK", parse_ch(w.b, w.n, &ch), TLS_OK);
		check(strlen(ch.sni) == 255 && (ch.flags & TLS_CH_SNI), "... copied whole, NUL-terminated");
		begin_ch(&w, 0, 2);
		at = ext_start(&w);
		ext_sni(&w, name, 256);
		ext_end(&w, at);
		check_int("256-byte SNI: OK", parse_ch(w.b, w.n, &ch), TLS_OK);
		check(!ch.sni[0] && (ch.flags & TLS_CH_SNI_BAD), "... SNI_BAD, not cut");
	}

	/* SNI list whose length disagrees with the extension's. */
	begin_ch(&w, 0, 2);
	at = ext_start(&w);
	ext_sni(&w, "host", 4);
	w.b[w.n - 8] ^= 1; /* list length low byte */
	ext_end(&w, at);
	check_int("SNI list length off by one: OK", parse_ch(w.b, w.n, &ch), TLS_OK);
	check(ch.flags & TLS_CH_SNI_BAD, "... SNI_BAD");

	/* ALPN: 17 names (over the entry bound), and names that overflow 127 bytes. */
	begin_ch(&w, 0, 2);
	at = ext_start(&w);
	ext_alpn(&w, "a|b|c|d|e|f|g|h|i|j|k|l|m|n|o|p|q");
	ext_end(&w, at);
	parse_ch(w.b, w.n, &ch);
	check_str("17 ALPN names: the first 16", ch.alpn, "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p");
	check(ch.flags & TLS_CH_ALPN_TRUNC, "... ALPN_TRUNC");
	{
		char names[1024];
		/* 10 names of 15 'x' + 1 digit: 16*k + (k-1) commas: 7 fit in 127 (118 bytes). */
		names[0] = 0;
		for (int i = 0; i < 10; i++)
			snprintf(names + strlen(names), sizeof(names) - strlen(names), "%sxxxxxxxxxxxxxxx%d",
				 i ? "|" : "", i);
		begin_ch(&w, 0, 2);
		at = ext_start(&w);
		ext_alpn(&w, names);
		ext_end(&w, at);
		parse_ch(w.b, w.n, &ch);
		check(strlen(ch.alpn) == 118 && ch.alpn[117] == '6' && (ch.flags & TLS_CH_ALPN_TRUNC),
		      "ALPN over 127 bytes cut after a whole name (len %zu, flags 0x%x)", strlen(ch.alpn),
		      ch.flags);
		/* Exactly 127 bytes: one name of 127 fits; one of 128 does not. */
		memset(names, 'y', 127);
		names[127] = 0;
		begin_ch(&w, 0, 2);
		at = ext_start(&w);
		ext_alpn(&w, names);
		ext_end(&w, at);
		parse_ch(w.b, w.n, &ch);
		check(strlen(ch.alpn) == 127 && !(ch.flags & TLS_CH_ALPN_TRUNC),
		      "one 127-byte ALPN name fits exactly");
		names[127] = 'y';
		names[128] = 0;
		begin_ch(&w, 0, 2);
		at = ext_start(&w);
		ext_alpn(&w, names);
		ext_end(&w, at);
		parse_ch(w.b, w.n, &ch);
		check(!ch.alpn[0] && (ch.flags & TLS_CH_ALPN_TRUNC), "one 128-byte ALPN name: empty, ALPN_TRUNC");
	}
	begin_ch(&w, 0, 2);
	at = ext_start(&w);
	ext_alpn(&w, "h2|a,b|\x01x");
	ext_end(&w, at);
	parse_ch(w.b, w.n, &ch);
	check_str("ALPN commas and control bytes shown as '?'", ch.alpn, "h2,a?b,?x");
	/* An empty ALPN name is malformed. */
	begin_ch(&w, 0, 2);
	at = ext_start(&w);
	put16(&w, 16);
	put16(&w, 5);
	put16(&w, 3);
	put8(&w, 2);
	putn(&w, "h2", 2);
	w.b[w.n - 3] = 0; /* first name length 0 */
	ext_end(&w, at);
	check_int("empty ALPN name: hello still OK", parse_ch(w.b, w.n, &ch), TLS_OK);
	check((ch.flags & TLS_CH_ALPN_BAD) && !ch.alpn[0], "... ALPN_BAD");

	/* supported_versions with an odd length. */
	begin_ch(&w, 0, 2);
	at = ext_start(&w);
	put16(&w, 43);
	put16(&w, 4);
	put8(&w, 3);
	put16(&w, 0x0304);
	put8(&w, 3);
	ext_end(&w, at);
	parse_ch(w.b, w.n, &ch);
	check((ch.flags & TLS_CH_VERSIONS_BAD) && ch.max_version == 0x0303,
	      "odd supported_versions: VERSIONS_BAD, max_version stays legacy");

	/* 65 extensions: the 65th is not read. */
	begin_ch(&w, 0, 2);
	at = ext_start(&w);
	for (int i = 0; i < 64; i++)
		ext_empty(&w, 1000 + i);
	ext_sni(&w, "late", 4);
	ext_end(&w, at);
	check_int("65 extensions: OK", parse_ch(w.b, w.n, &ch), TLS_OK);
	check((ch.flags & TLS_CH_EXT_MORE) && !ch.sni[0] && ch.n_ext == 64,
	      "... EXT_MORE, the 65th (SNI) not read, n_ext 64");

	/* Structural errors. */
	begin_ch(&w, 33, 2);
	end_msg(&w);
	check_int("session_id of 33 bytes: INVALID", parse_ch(w.b, w.n, &ch), TLS_INVALID);
	begin_ch(&w, 0, 3);
	end_msg(&w);
	check_int("odd cipher_suites length: INVALID", parse_ch(w.b, w.n, &ch), TLS_INVALID);
	begin_ch(&w, 0, 0);
	end_msg(&w);
	check_int("no cipher suites: INVALID", parse_ch(w.b, w.n, &ch), TLS_INVALID);
	begin_ch(&w, 0, 2);
	w.b[w.n - 2] = 0; /* compression methods length 0 */
	w.n--;
	end_msg(&w);
	check_int("no compression method: INVALID", parse_ch(w.b, w.n, &ch), TLS_INVALID);
	begin_ch(&w, 0, 2);
	at = ext_start(&w);
	ext_sni(&w, "host", 4);
	ext_end(&w, at);
	set16(&w, at, w.n - at - 1);
	check_int("extensions length one more than present: INVALID", parse_ch(w.b, w.n, &ch),
		  TLS_INVALID);
	set16(&w, at, w.n - at - 3);
	check_int("extensions length one less than present: INVALID", parse_ch(w.b, w.n, &ch),
		  TLS_INVALID);
	begin_ch(&w, 0, 2);
	put8(&w, 0);
	end_msg(&w);
	check_int("one stray byte after compression: INVALID", parse_ch(w.b, w.n, &ch), TLS_INVALID);
	begin_ch(&w, 0, 2);
	end_msg(&w);
	w.b[0] = 2;
	check_int("message type 2 to the ClientHello parser: INVALID", parse_ch(w.b, w.n, &ch),
		  TLS_INVALID);
	{
		unsigned char big[8] = { 1, 0, 0x40, 0x00, 3, 3 }; /* body 16384: +4 > TLS_BUF_MAX */

		check_int("ClientHello longer than TLS_BUF_MAX: TOO_LONG", parse_ch(big, 8, &ch),
			  TLS_TOO_LONG);
	}
}

/* ---- ServerHello ------------------------------------------------------------------ */

static void test_server_hello(void)
{
	struct tls_server_hello sh;

	for (unsigned k = 0; k < NSESS; k++) {
		const struct vec_session *s = sessions[k];
		int si = first_rec(s, 1, 22);
		unsigned n;
		const unsigned char *body;
		char what[128];
		int r;

		if (!s->version)
			continue; /* failed handshakes: checked below */
		body = rec_body(s, (unsigned)si, &n);
		r = parse_sh(body, n, &sh);
		snprintf(what, sizeof(what), "%s: ServerHello parses", s->name);
		check_int(what, r, TLS_OK);
		snprintf(what, sizeof(what), "%s: negotiated version (OpenSSL says)", s->name);
		check_int(what, sh.version, s->version);
		check(!(sh.flags & TLS_SH_HRR), "%s: not a HelloRetryRequest", s->name);
		snprintf(what, sizeof(what), "%s: legacy_version", s->name);
		check_int(what, sh.legacy_version, 0x0303);
		if (s->version == 0x0304) {
			check(sh.selected_version == 0x0304 && (sh.flags & TLS_SH_VERSIONS),
			      "%s: supported_versions selects 0x0304", s->name);
			check(!(sh.flags & TLS_SH_ALPN) && !sh.alpn[0],
			      "%s: no ALPN in the clear (it is in EncryptedExtensions)", s->name);
		} else {
			check(sh.selected_version == 0 && !(sh.flags & TLS_SH_VERSIONS),
			      "%s: no supported_versions in a TLS 1.2 ServerHello", s->name);
			snprintf(what, sizeof(what), "%s: ALPN selected (OpenSSL says \"%s\")", s->name,
				 s->alpn);
			check_str(what, sh.alpn, s->alpn);
			check_str("... and it is", sh.alpn, "h2");
		}
		check(sh.cipher_suite != 0 && sh.compression == 0, "%s: cipher suite 0x%04x", s->name,
		      sh.cipher_suite);
	}

	/* HelloRetryRequest: the TLS 1.3 ServerHello with the special random. */
	{
		static const unsigned char hrr_random[32] = {
			0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C,
			0x02, 0x1E, 0x65, 0xB8, 0x91, 0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB,
			0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
		};
		unsigned n;
		const unsigned char *body = rec_body(&tls13, 1, &n);
		unsigned char *b = dup_n(body, n);

		memcpy(b + 6, hrr_random, 32);
		check_int("patched HelloRetryRequest parses", tls_parse_server_hello(b, n, &sh), TLS_OK);
		check(sh.flags & TLS_SH_HRR, "... HRR detected");
		check_int("... version", sh.version, 0x0304);
		b[6 + 31] ^= 1;
		tls_parse_server_hello(b, n, &sh);
		check(!(sh.flags & TLS_SH_HRR), "last random byte changed: not HRR");
		free(b);
	}
	/* Crafted: TLS 1.2 ServerHello without extensions, and a bad selected version. */
	{
		struct bld w;

		w.n = 0;
		put8(&w, 2);
		put24(&w, 0);
		put16(&w, 0x0301);
		for (int i = 0; i < 32; i++)
			put8(&w, 0x11);
		put8(&w, 0);
		put16(&w, 0x002f);
		put8(&w, 0);
		end_msg(&w);
		check_int("ServerHello without extensions: OK", parse_sh(w.b, w.n, &sh), TLS_OK);
		check(sh.version == 0x0301 && (sh.flags & TLS_SH_NO_EXT) && sh.cipher_suite == 0x2f,
		      "... TLS 1.0, NO_EXT, suite 0x002f");
		put16(&w, 6);
		put16(&w, 43);
		put16(&w, 2);
		put16(&w, 0x7f1c);
		end_msg(&w);
		check_int("ServerHello selecting version 0x7f1c: INVALID", parse_sh(w.b, w.n, &sh),
			  TLS_INVALID);
		set16(&w, w.n - 2, 0x0304);
		check_int("... selecting 0x0304: OK", parse_sh(w.b, w.n, &sh), TLS_OK);
		check_int("... version", sh.version, 0x0304);
		set16(&w, w.n - 4, 3);
		check_int("supported_versions of 3 bytes in a ServerHello: INVALID",
			  parse_sh(w.b, w.n, &sh), TLS_INVALID);
	}
}

/* ---- alerts and names ------------------------------------------------------------- */

static void test_alerts(void)
{
	__u8 lv = 0, d = 0;
	unsigned n;
	const unsigned char *b;

	b = rec_body(&reject12, reject12.nrecs - 1, &n);
	check_int("reject12: client's alert parses", tls_parse_alert(b, n, &lv, &d), TLS_OK);
	check(lv == 2, "... fatal");
	check_str("... description", tls_alert_name(d), "unknown_ca");
	b = rec_body(&nocipher12, 1, &n);
	tls_parse_alert(b, n, &lv, &d);
	check(lv == 2, "nocipher12: server's alert is fatal");
	check_str("... description", tls_alert_name(d), "handshake_failure");

	{
		static const struct { int d; const char *n; } names[] = {
			{ 0, "close_notify" }, { 10, "unexpected_message" }, { 20, "bad_record_mac" },
			{ 22, "record_overflow" }, { 40, "handshake_failure" },
			{ 42, "bad_certificate" }, { 43, "unsupported_certificate" },
			{ 44, "certificate_revoked" }, { 45, "certificate_expired" },
			{ 46, "certificate_unknown" }, { 47, "illegal_parameter" },
			{ 48, "unknown_ca" }, { 49, "access_denied" }, { 50, "decode_error" },
			{ 51, "decrypt_error" }, { 70, "protocol_version" },
			{ 71, "insufficient_security" }, { 80, "internal_error" },
			{ 86, "inappropriate_fallback" }, { 90, "user_canceled" },
			{ 109, "missing_extension" }, { 110, "unsupported_extension" },
			{ 112, "unrecognized_name" }, { 113, "bad_certificate_status_response" },
			{ 115, "unknown_psk_identity" }, { 116, "certificate_required" },
			{ 120, "no_application_protocol" }, { 1, "unknown" }, { 255, "unknown" },
		};
		int bad = 0;

		for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strcmp(tls_alert_name((__u8)names[i].d), names[i].n)) {
				bad++;
				printf("  alert %d: %s\n", names[i].d, tls_alert_name((__u8)names[i].d));
			}
		check(bad == 0, "tls_alert_name: %zu names", sizeof(names) / sizeof(names[0]));
	}
	check_str("version 0x0300", tls_version_name(0x0300), "SSL3.0");
	check_str("version 0x0301", tls_version_name(0x0301), "TLS1.0");
	check_str("version 0x0302", tls_version_name(0x0302), "TLS1.1");
	check_str("version 0x0303", tls_version_name(0x0303), "TLS1.2");
	check_str("version 0x0304", tls_version_name(0x0304), "TLS1.3");
	check_str("version 0x7f1c", tls_version_name(0x7f1c), "unknown");
}

/* ---- the record walker -------------------------------------------------------------- */

struct found {
	unsigned off, len, type; /* as in struct vec_rec: header offset, total length */
};

/*
 * Walk a stream cut at the given cut points (sorted, in (0, len)); ISN chosen near
 * the 32-bit wrap. Collect every record reported; check each body_off/body_here
 * against the stream. Returns the number of records, or -1 on an unexpected status.
 */
static int walk_cuts(const unsigned char *stream, unsigned len, const unsigned *cuts,
		     unsigned ncuts, __u32 isn, struct found *out, unsigned max, int *body_bad)
{
	struct tls_stream st;
	struct tls_walk w;
	unsigned nf = 0, start = 0;

	tls_stream_init(&st, isn);
	for (unsigned k = 0; k <= ncuts; k++) {
		unsigned end = k < ncuts ? cuts[k] : len;
		unsigned char *seg = dup_n(stream + start, end - start);
		int r;

		do {
			r = tls_walk(&st, isn + start, seg, end - start, &w);
			if (r != TLS_WALK_OK && r != TLS_WALK_MORE) {
				free(seg);
				return -1;
			}
			for (unsigned i = 0; i < w.n; i++) {
				const struct tls_walk_rec *rr = &w.rec[i];
				unsigned body = rr->body_seq - isn; /* stream offset */

				if (nf < max) {
					out[nf].off = body - 5;
					out[nf].len = rr->len + 5u;
					out[nf].type = rr->type;
				}
				nf++;
				if (rr->body_here) {
					unsigned want = body - start;
					unsigned here = end - body < rr->len ? end - body : rr->len;

					if (rr->body_off != want || rr->body_here != here ||
					    memcmp(seg + rr->body_off, stream + body, rr->body_here))
						(*body_bad)++;
				} else if (body < end && rr->len) {
					(*body_bad)++; /* body starts here but was not reported */
				}
			}
		} while (r == TLS_WALK_MORE);
		free(seg);
		start = end;
	}
	return (int)nf;
}

static int same_records(const struct vec_session *s, int dir, const struct found *f, int nf)
{
	int k = 0;

	for (unsigned i = 0; i < s->nrecs; i++) {
		if (s->recs[i].dir != dir)
			continue;
		if (k >= nf || f[k].off != s->recs[i].off || f[k].len != s->recs[i].len ||
		    (int)f[k].type != s->recs[i].type)
			return 0;
		k++;
	}
	return k == nf;
}

static void test_walker_splits(void)
{
	struct found f[64];
	unsigned cuts[4096];
	const __u32 isn = 0xfffffe00u; /* sequence numbers wrap inside the streams */

	for (unsigned k = 0; k < NSESS; k++) {
		const struct vec_session *s = sessions[k];

		for (int dir = 0; dir < 2; dir++) {
			unsigned len;
			const unsigned char *st = stream_of(s, dir, &len);
			int bad = 0, body_bad = 0, nf;

			/* One segment. */
			nf = walk_cuts(st, len, cuts, 0, isn, f, 64, &body_bad);
			if (!same_records(s, dir, f, nf))
				bad++;
			/* Every two-way split. */
			for (unsigned c = 1; c < len; c++) {
				cuts[0] = c;
				nf = walk_cuts(st, len, cuts, 1, isn, f, 64, &body_bad);
				if (!same_records(s, dir, f, nf))
					bad++;
			}
			/* Every segment size from 1 to 40 bytes (1: every header split at
			 * every place), and 1000, 1448. */
			for (unsigned sz = 1; sz <= 42; sz++) {
				unsigned step = sz <= 40 ? sz : sz == 41 ? 1000 : 1448, nc = 0;

				for (unsigned c = step; c < len && nc < 4096; c += step)
					cuts[nc++] = c;
				nf = walk_cuts(st, len, cuts, nc, isn, f, 64, &body_bad);
				if (!same_records(s, dir, f, nf))
					bad++;
			}
			check(bad == 0 && body_bad == 0,
			      "%s %s: %u bytes walked whole, at every 2-way split and in 1..40, "
			      "1000, 1448-byte segments: same records (%d bad, %d body errors)",
			      s->name, dir ? "s2c" : "c2s", len, bad, body_bad);
		}
	}
}

static void test_walker_cases(void)
{
	struct tls_stream st, saved;
	struct tls_walk w;
	unsigned len = tls13.s2c_len;
	const unsigned char *s2c = tls13.s2c;
	const __u32 isn = 1000;
	int r;

	/* One buffer with more than TLS_WALK_MAX records: MORE, then the rest. */
	{
		unsigned nrec = 0;

		for (unsigned i = 0; i < tls13.nrecs; i++)
			nrec += tls13.recs[i].dir == 1;
		tls_stream_init(&st, isn);
		r = tls_walk(&st, isn, s2c, len, &w);
		check(nrec > TLS_WALK_MAX && r == TLS_WALK_MORE && w.n == TLS_WALK_MAX,
		      "tls13 s2c in one buffer (%u records): MORE after %u", nrec, w.n);
		r = tls_walk(&st, isn, s2c, len, &w);
		check(r == TLS_WALK_OK && w.n == nrec - TLS_WALK_MAX && st.next_seq == isn + len,
		      "... called again: the other %u, next_seq at the end", w.n);
	}

	/* Retransmissions. Segments: [0,100) [100,300) [300,len). */
	tls_stream_init(&st, isn);
	tls_walk(&st, isn, s2c, 100, &w);
	tls_walk(&st, isn + 100, s2c + 100, 200, &w);
	saved = st;
	r = tls_walk(&st, isn, s2c, 100, &w);
	check(r == TLS_WALK_OK && w.n == 0 && !memcmp(&st, &saved, sizeof(st)),
	      "retransmitted segment: OK, nothing reported, state unchanged");
	r = tls_walk(&st, isn + 100, s2c + 100, 200, &w);
	check(r == TLS_WALK_OK && w.n == 0 && !memcmp(&st, &saved, sizeof(st)),
	      "retransmitted segment ending at next byte wanted: ignored");
	/* An overlapping retransmission that carries new bytes: read from the new part. */
	r = tls_walk(&st, isn + 200, s2c + 200, len - 200, &w);
	check(r == TLS_WALK_OK && w.n > 0 && w.rec[0].body_seq == isn + tls13.recs[5].off + 5,
	      "overlapping segment: new records only, from the first unseen header (%u)", w.n);

	/* Gap: the segment holding a header is lost. */
	tls_stream_init(&st, isn);
	tls_walk(&st, isn, s2c, 127, &w); /* exactly the ServerHello record */
	saved = st;
	r = tls_walk(&st, isn + 130, s2c + 130, 100, &w);
	check(r == TLS_WALK_GAP && w.n == 0 && !memcmp(&st, &saved, sizeof(st)),
	      "segment after a lost one: GAP, state unchanged");
	r = tls_walk(&st, isn + 127, s2c + 127, 3, &w);
	check(r == TLS_WALK_OK && st.hdr_have == 3, "the lost segment arrives: 3 header bytes kept");
	r = tls_walk(&st, isn + 130, s2c + 130, 100, &w);
	check(r == TLS_WALK_OK && w.n == 3 && w.rec[0].type == 20 && w.rec[1].type == 23 &&
		      w.rec[2].type == 23 && w.rec[0].body_off == 2 && w.rec[0].body_here == 1,
	      "... then the later one walks: CCS (its header's last 2 bytes here), 2 x "
	      "application_data");

	/* Gap inside a body we skip anyway: not a gap. */
	tls_stream_init(&st, isn);
	tls_walk(&st, isn, s2c, 176, &w); /* up to into the 806-byte record */
	r = tls_walk(&st, isn + 400, s2c + 400, 100, &w);
	check(r == TLS_WALK_OK && w.n == 0, "a segment inside a body after a lost one: OK, nothing");

	/* Desync: garbage, and a corrupted header in the middle of a stream. */
	{
		const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

		tls_stream_init(&st, isn);
		r = tls_walk(&st, isn, (const __u8 *)http, (__u32)strlen(http), &w);
		check(r == TLS_WALK_DESYNC && w.n == 0, "plain HTTP: DESYNC");
		r = tls_walk(&st, isn + 27, (const __u8 *)http, (__u32)strlen(http), &w);
		check(r == TLS_WALK_DESYNC, "... and DESYNC from then on");
	}
	{
		unsigned char *b = dup_n(s2c, len);

		b[tls13.recs[3].off + 1] = 2; /* version major of the 3rd s2c record */
		tls_stream_init(&st, isn);
		r = tls_walk(&st, isn, b, len, &w);
		check(r == TLS_WALK_DESYNC && w.n == 2, "corrupted 3rd header: DESYNC after 2 records");
		free(b);
		b = dup_n(s2c, len);
		b[tls13.recs[3].off + 3] = 0x50; /* length 0x50xx > 2^14 + 2048 */
		tls_stream_init(&st, isn);
		r = tls_walk(&st, isn, b, len, &w);
		check(r == TLS_WALK_DESYNC && w.n == 2, "oversized 3rd record: DESYNC after 2 records");
		free(b);
	}
	/* A header split 2+3 whose second part is invalid: DESYNC, never a guess. */
	{
		const unsigned char part1[] = { 22, 3 };
		const unsigned char part2[] = { 9, 0, 5 };

		tls_stream_init(&st, isn);
		tls_walk(&st, isn, part1, 2, &w);
		r = tls_walk(&st, isn + 2, part2, 3, &w);
		check(r == TLS_WALK_DESYNC, "split header completing as version 0x0309: DESYNC");
	}
	/* Corrupt state is refused. */
	tls_stream_init(&st, isn);
	st.hdr_have = 7;
	check_int("hdr_have 7: DESYNC", tls_walk(&st, isn, s2c, len, &w), TLS_WALK_DESYNC);
	/* Empty buffer. */
	tls_stream_init(&st, isn);
	check(tls_walk(&st, isn, s2c, 0, &w) == TLS_WALK_OK && w.n == 0, "empty buffer: OK, nothing");
}

/* ---- handshake progress ------------------------------------------------------------- */

/* Feed a session's records to tls_hs_step in wire order. body_mode: 0 whole body,
 * 1 no body at all, 2 the first 10 bytes. Returns first complete and first failed
 * indices. */
static void run_hs(const struct vec_session *s, int body_mode, int *complete, int *failedi,
		   struct tls_hs *hs)
{
	*complete = *failedi = -1;
	tls_hs_init(hs);
	for (unsigned i = 0; i < s->nrecs; i++) {
		unsigned n;
		const unsigned char *body = rec_body(s, i, &n);
		unsigned char *b;
		int r;

		if (body_mode == 1)
			n = 0;
		else if (body_mode == 2 && n > 10)
			n = 10;
		b = dup_n(body, n);
		r = tls_hs_step(hs, s->recs[i].dir == 0, (__u8)s->recs[i].type,
				(__u16)(s->recs[i].len - 5), b, 0, n);
		free(b);
		if (r == TLS_HS_COMPLETE && *complete < 0)
			*complete = (int)i;
		if (r == TLS_HS_FAILED && *failedi < 0)
			*failedi = (int)i;
	}
}

static void test_hs_step(void)
{
	static const char *const modes[] = { "whole bodies", "no bodies", "10-byte bodies" };
	struct tls_hs hs;
	int c, f;

	for (unsigned k = 0; k < NSESS; k++) {
		const struct vec_session *s = sessions[k];

		for (int m = 0; m < 3; m++) {
			run_hs(s, m, &c, &f, &hs);
			if (s->complete_rec >= 0)
				check(c == s->complete_rec && f < 0,
				      "%s, %s: complete at record %d (OpenSSL: %d)", s->name, modes[m], c,
				      s->complete_rec);
			else
				check(f == s->failed_rec && c < 0,
				      "%s, %s: failed at record %d (OpenSSL: %d)", s->name, modes[m], f,
				      s->failed_rec);
			if (m == 0 && s->version)
				check_int("... version from the ServerHello", hs.version, s->version);
			if (m == 1 && s->version == 0x0304)
				check(hs.version == 0x0304 && (hs.flags & TLS_HSF_V13_SEEN),
				      "... TLS 1.3 inferred from the records");
		}
	}
	run_hs(&reject12, 0, &c, &f, &hs);
	check(hs.alert_level == 2 && hs.alert_desc == 48, "reject12: failed by fatal unknown_ca");
	run_hs(&reject13, 0, &c, &f, &hs);
	check(hs.alert_level == 2 && hs.alert_desc == 48,
	      "reject13: OpenSSL's client alerts in clear: fatal unknown_ca");
	run_hs(&nocipher12, 0, &c, &f, &hs);
	check(hs.alert_level == 2 && hs.alert_desc == 40, "nocipher12: failed by fatal handshake_failure");
	run_hs(&reject12, 1, &c, &f, &hs);
	check(hs.alert_desc == TLS_ALERT_DESC_UNKNOWN, "reject12 without bodies: failed, cause unknown");

	/* TLS 1.3, a 19-byte encrypted alert from the client after the server's flight. */
	{
		int r = 0;

		tls_hs_init(&hs);
		for (unsigned i = 0; i < 7; i++) { /* CH .. the server's Finished */
			unsigned n;
			const unsigned char *body = rec_body(&tls13, i, &n);

			r = tls_hs_step(&hs, tls13.recs[i].dir == 0, (__u8)tls13.recs[i].type,
					(__u16)n, body, 0, n);
		}
		check(r == TLS_HS_PROGRESS, "tls13 up to the server's Finished: in progress");
		r = tls_hs_step(&hs, 1, 23, 19, NULL, 0, 0);
		check(r == TLS_HS_FAILED && hs.alert_desc == TLS_ALERT_DESC_UNKNOWN,
		      "... a 19-byte application_data record from the client: failed (encrypted alert)");
		r = tls_hs_step(&hs, 1, 23, 74, NULL, 0, 0);
		check(r == TLS_HS_FAILED, "... and stays failed");
	}
	/* HelloRetryRequest: CH, HRR, CCS(s), CCS(c), CH2, SH, server flight, client Finished. */
	{
		static const unsigned char hrr_random[32] = {
			0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C,
			0x02, 0x1E, 0x65, 0xB8, 0x91, 0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB,
			0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
		};
		unsigned nch, nsh;
		const unsigned char *ch = rec_body(&tls13, 0, &nch);
		const unsigned char *shb = rec_body(&tls13, 1, &nsh);
		unsigned char hrr[512], ccs[1] = { 1 };
		int r, at = -1, step = 0;

		for (int avail = 0; avail < 2; avail++) {
			unsigned hn = avail ? 40 : nsh; /* whole HRR, or only its start */

			memcpy(hrr, shb, nsh);
			memcpy(hrr + 6, hrr_random, 32);
			tls_hs_init(&hs);
			step = 0;
			at = -1;
#define STEP(fc, t, body, n)                                                              \
	do {                                                                              \
		r = tls_hs_step(&hs, fc, t, (__u16)(n), body, 0, n);                          \
		if (r == TLS_HS_COMPLETE && at < 0)                                       \
			at = step;                                                        \
		step++;                                                                   \
	} while (0)
			STEP(1, 22, ch, nch);
			STEP(0, 22, hrr, hn);
			STEP(0, 20, ccs, 1);
			STEP(1, 20, ccs, 1);
			STEP(1, 22, ch, nch);
			STEP(0, 22, shb, nsh);
			for (unsigned i = 3; i < 7; i++)
				STEP(0, 23, NULL, tls13.recs[i].len - 5);
			STEP(1, 23, NULL, 69);
#undef STEP
			check(at == 10 && (hs.flags & TLS_HSF_HRR) && hs.version == 0x0304,
			      "HelloRetryRequest (%s): seen, then complete at the client's Finished "
			      "(step %d)", avail ? "first 40 bytes" : "whole", at);
		}
	}
	/* Clear warning alerts before completion. */
	{
		const unsigned char unrec[2] = { 1, 112 }, cn[2] = { 1, 0 };
		int r;

		tls_hs_init(&hs);
		tls_hs_step(&hs, 1, 22, 100, NULL, 0, 0);
		r = tls_hs_step(&hs, 0, 21, 2, unrec, 0, 2);
		check(r == TLS_HS_PROGRESS, "warning unrecognized_name before completion: in progress");
		r = tls_hs_step(&hs, 0, 21, 2, cn, 0, 2);
		check(r == TLS_HS_FAILED && hs.alert_level == 1 && hs.alert_desc == 0,
		      "warning close_notify before completion: failed");
	}
	/* An encrypted TLS 1.2 alert (type 21, longer than 2) after CCS. */
	{
		int r, c2 = -1;

		tls_hs_init(&hs);
		for (unsigned i = 0; i < 10; i++) { /* tls12 up to the server's CCS */
			unsigned n;
			const unsigned char *body = rec_body(&tls12, i, &n);

			r = tls_hs_step(&hs, tls12.recs[i].dir == 0, (__u8)tls12.recs[i].type, (__u16)n,
					body, 0, n);
			if (r != TLS_HS_PROGRESS)
				c2 = (int)i;
		}
		r = tls_hs_step(&hs, 0, 21, 26, NULL, 0, 0);
		check(c2 < 0 && r == TLS_HS_FAILED && hs.alert_desc == TLS_ALERT_DESC_UNKNOWN,
		      "tls12: an encrypted alert instead of the server's Finished: failed, cause unknown");
	}
}

/*
 * The whole pipeline, as BPF and replay run it: each direction's bytes cut into
 * segments, walked, and every record fed to tls_hs_step with the body bytes the
 * segment holds, in wire order (a segment is one chunk of the recording, cut again
 * at `mss`).
 */
static void test_pipeline(void)
{
	static const unsigned mss_list[] = { 1, 7, 100, 536, 1448, 65535 };

	for (unsigned k = 0; k < NSESS; k++) {
		const struct vec_session *s = sessions[k];

		for (unsigned mi = 0; mi < sizeof(mss_list) / sizeof(mss_list[0]); mi++) {
			unsigned mss = mss_list[mi];
			struct tls_stream st[2];
			struct tls_hs hs;
			struct tls_walk w;
			unsigned pos[2] = { 0, 0 }, nrec = 0;
			int complete = -1, fail = -1, bad = 0;
			__u32 isn[2] = { 0x7ffffff0u, 0xfffffffbu };

			tls_stream_init(&st[0], isn[0]);
			tls_stream_init(&st[1], isn[1]);
			tls_hs_init(&hs);
			/* Records of the same direction that follow each other form a flight. */
			for (unsigned i = 0; i < s->nrecs;) {
				int dir = s->recs[i].dir;
				unsigned end = s->recs[i].off, slen;
				const unsigned char *stream = stream_of(s, dir, &slen);

				while (i < s->nrecs && s->recs[i].dir == dir)
					end = s->recs[i].off + s->recs[i].len, i++;
				while (pos[dir] < end) {
					unsigned n = end - pos[dir] < mss ? end - pos[dir] : mss;
					unsigned char *seg = dup_n(stream + pos[dir], n);
					int r;

					do {
						r = tls_walk(&st[dir], isn[dir] + pos[dir], seg, n, &w);
						if (r == TLS_WALK_GAP || r == TLS_WALK_DESYNC)
							bad++;
						for (unsigned j = 0; j < w.n; j++) {
							int hr = tls_hs_step(&hs, dir == 0, w.rec[j].type,
									     w.rec[j].len,
									     seg, w.rec[j].body_off,
									     w.rec[j].body_here);

							if (hr == TLS_HS_COMPLETE && complete < 0)
								complete = (int)nrec;
							if (hr == TLS_HS_FAILED && fail < 0)
								fail = (int)nrec;
							nrec++;
						}
					} while (r == TLS_WALK_MORE);
					free(seg);
					pos[dir] += n;
				}
			}
			check(!bad && nrec == s->nrecs && complete == s->complete_rec &&
				      fail == s->failed_rec,
			      "%s, %u-byte segments: walker + tls_hs_step: %u records, complete at %d, "
			      "failed at %d", s->name, mss, nrec, complete, fail);
		}
	}
}

int main(void)
{
	test_record_header();
	test_looks_like_client_hello();
	test_client_hello_real();
	test_at_variants();
	test_prefixes();
	test_client_hello_crafted();
	test_server_hello();
	test_alerts();
	test_walker_splits();
	test_walker_cases();
	test_hs_step();
	test_pipeline();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
