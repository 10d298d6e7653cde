// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Unit test of user/replay/tlsdec.c, the key log and the TLS 1.2 / 1.3 record
 * decryptor, on real connections between openssl s_client and s_server
 * (tests/unit/data/tlsdec/tlsdec_vectors.h, made by gen.py there from tcpdump
 * captures and s_client's key log) and on key logs and records made by hand.
 *
 *   scripts/test.sh unit    (built against connscope's libraries)
 *
 * The expected plaintexts are what was typed into s_client (and what s_server
 * -rev sent back), never the output of a decryptor. Every record handed over is
 * an exactly-sized heap copy, so ASan catches a read past it.
 */
#define _GNU_SOURCE /* memmem */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tlsdec.h"
#include "data/tlsdec/tlsdec_vectors.h"

#include "check.h"

#define NVEC (sizeof(tlsdec_vecs) / sizeof(tlsdec_vecs[0]))
#define OUT_MAX (16384 + 256)

/* A small deterministic PRNG (xorshift32), so a failure reproduces. */
static unsigned rng_state = 0x6b43a9b5;

static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return n ? rng_state % n : 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- helpers ------------------------------------------------------------------------ */

struct rec {
	unsigned off, len;
};

/* The whole records of a stream (a trailing partial one is left out). */
static unsigned split(const unsigned char *s, unsigned len, struct rec *r, unsigned max)
{
	unsigned off = 0, n = 0;

	while (len - off >= 5 && n < max) {
		unsigned l = 5 + (s[off + 3] << 8 | s[off + 4]);

		if (l > len - off)
			break;
		r[n].off = off;
		r[n++].len = l;
		off += l;
	}
	return n;
}

static struct keylog *kl_text(const char *s)
{
	return keylog_parse(s, strlen(s), "test");
}

static void hex(const unsigned char *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

/* A copy of a key log whose client random is changed to another's. */
static char *swap_random(const char *text, const unsigned char *from, const unsigned char *to)
{
	char hf[65], ht[65], *s = strdup(text), *p;

	if (!s)
		abort();
	hex(from, 32, hf);
	hex(to, 32, ht);
	for (p = s; (p = strstr(p, hf)); p += 64)
		memcpy(p, ht, 64);
	return s;
}

static struct tls_hello_params params_of(const struct tlsdec_vec *v)
{
	struct tls_hello_params hp;

	memset(&hp, 0, sizeof(hp));
	memcpy(hp.client_random, v->cr, 32);
	memcpy(hp.server_random, v->sr, 32);
	hp.version = (uint16_t)v->version;
	hp.cipher_suite = (uint16_t)v->suite;
	hp.have_client = hp.have_server = true;
	return hp;
}

/* What one direction gave: the application data, and the statuses. */
struct run {
	unsigned char *app;
	size_t app_len;
	unsigned nrec, nok, nenc;  /* records given, OK, with type 23 out */
	int first_bad;             /* status of the first non-OK record, or 0 */
	unsigned first_bad_at;     /* its index */
	bool sticky_ok;            /* every call after it gave the same status */
};

/* Hand records [from, n) of one direction (and those before `from` up to
 * `keep`, the cleartext hellos) to d. */
static void run_dir(struct tlsdec *d, int dir, const unsigned char *s, const struct rec *r,
		    unsigned n, unsigned keep, unsigned from, struct run *out)
{
	static unsigned char buf[OUT_MAX];

	memset(out, 0, sizeof(*out));
	out->app = malloc(1 << 16);
	out->sticky_ok = true;
	for (unsigned i = 0; i < n; i++) {
		unsigned char *b, type = 0;
		size_t ol = 0;
		int st;

		if (i >= keep && i < from)
			continue;
		b = dup_n(s + r[i].off, r[i].len);
		st = tlsdec_record(d, dir, b, r[i].len, buf, &ol, &type);
		free(b);
		out->nrec++;
		if (st == TLSDEC_OK && !out->first_bad) {
			out->nok++;
			if (type == 23 && out->app_len + ol <= 1 << 16) {
				memcpy(out->app + out->app_len, buf, ol);
				out->app_len += ol;
			}
		} else if (!out->first_bad) {
			out->first_bad = st;
			out->first_bad_at = i;
		} else if (st != out->first_bad) {
			out->sticky_ok = false;
		}
	}
}

static unsigned first_protected(const struct tlsdec_vec *v, const unsigned char *s,
				const struct rec *r, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (v->version == 0x0304 && s[r[i].off] == 23)
			return i;
		if (v->version == 0x0303 && s[r[i].off] == 20)
			return i + 1;
	}
	return n;
}

/* ---- the key log -------------------------------------------------------------------- */

static void test_keylog(void)
{
	const char *text =
		"# SSL/TLS secrets log file\r\n"
		"\r\n"
		"CLIENT_RANDOM 0101010101010101010101010101010101010101010101010101010101010101 "
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f\r\n"
		"CLIENT_HANDSHAKE_TRAFFIC_SECRET 0202020202020202020202020202020202020202020202020202020202020202 "
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
		"SERVER_TRAFFIC_SECRET_0\t0202020202020202020202020202020202020202020202020202020202020202  "
		"000102030405060708090A0B0C0D0E0F101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f\n"
		"   # an indented comment\n"
		"EXPORTER_SECRET 0303030303030303030303030303030303030303030303030303030303030303 00\n"
		"CLIENT_EARLY_TRAFFIC_SECRET 0303030303030303030303030303030303030303030303030303030303030303 00\n"
		"EARLY_EXPORTER_SECRET 0303030303030303030303030303030303030303030303030303030303030303 00\n"
		/* malformed from here: 7 lines */
		"BOGUS_LABEL 0404040404040404040404040404040404040404040404040404040404040404 00\n"
		"CLIENT_RANDOM 04040404 000102\n"
		"CLIENT_RANDOM 0404040404040404040404040404040404040404040404040404040404040404 0001\n"
		"CLIENT_TRAFFIC_SECRET_0 0404040404040404040404040404040404040404040404040404040404040404 0011\n"
		"CLIENT_TRAFFIC_SECRET_0 04040404040404040404040404040404040404040404040404040404040404zz "
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
		"CLIENT_TRAFFIC_SECRET_0 0404040404040404040404040404040404040404040404040404040404040404\n"
		"CLIENT_TRAFFIC_SECRET_0 0404040404040404040404040404040404040404040404040404040404040404 "
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f extra\n"
		/* the last line has no end of line */
		"SERVER_HANDSHAKE_TRAFFIC_SECRET 0505050505050505050505050505050505050505050505050505050505050505 "
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
	unsigned char r[32];
	struct keylog *kl;
	char path[] = "/tmp/test_tlsdec_XXXXXX", err[256] = "";
	int fd;

	fprintf(stderr, "(5 of 7 malformed lines named below, as they should be)\n");
	kl = kl_text(text);
	check(kl != NULL, "keylog_parse: parsed");
	if (!kl)
		return;
	check(keylog_randoms(kl) == 3, "keylog: 3 client randoms with secrets (got %zu)",
	      keylog_randoms(kl));
	check(keylog_bad_lines(kl) == 7, "keylog: 7 malformed lines (got %zu)", keylog_bad_lines(kl));
	for (int i = 1; i <= 5; i++) {
		memset(r, i, sizeof(r));
		check(keylog_has(kl, r) == (i != 3 && i != 4), "keylog_has random %02x..: %s", i,
		      i != 3 && i != 4 ? "yes" : "no");
	}
	keylog_free(kl);

	kl = keylog_parse("", 0, "empty");
	check(kl && keylog_randoms(kl) == 0 && keylog_bad_lines(kl) == 0, "keylog: empty text");
	keylog_free(kl);
	keylog_free(NULL);

	fd = mkstemp(path);
	if (fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text)) {
		close(fd);
		fprintf(stderr, "(and again from %s)\n", path);
		kl = keylog_load(path, err, sizeof(err));
		check(kl && keylog_randoms(kl) == 3 && keylog_bad_lines(kl) == 7,
		      "keylog_load: the same from a file");
		keylog_free(kl);
		unlink(path);
	} else {
		check(false, "temp file %s", path);
	}
	kl = keylog_load("/nonexistent/keylog.txt", err, sizeof(err));
	check(!kl && strstr(err, "/nonexistent/keylog.txt"),
	      "keylog_load: a missing file is NULL with a message (\"%s\")", err);
}

/* 200k randoms: the table is a hash table, lookups are O(1). */
static void test_keylog_big(void)
{
	enum { N = 200000 };
	char *text = malloc((size_t)N * 180), *p = text;
	unsigned char r[32];
	struct keylog *kl;
	unsigned found = 0, absent = 0;
	double t0, t1, t2;

	if (!text)
		abort();
	rng_state = 12345;
	for (int i = 0; i < N; i++) {
		for (int k = 0; k < 32; k++)
			r[k] = (unsigned char)rnd(256);
		p += sprintf(p, "CLIENT_RANDOM ");
		hex(r, 32, p);
		p += 64;
		p += sprintf(p, " %096d\n", i);
	}
	t0 = now_s();
	kl = keylog_parse(text, (size_t)(p - text), "big");
	t1 = now_s();
	rng_state = 12345;
	for (int i = 0; i < N; i++) {
		for (int k = 0; k < 32; k++)
			r[k] = (unsigned char)rnd(256);
		found += keylog_has(kl, r);
		r[31] ^= 0x80;
		absent += !keylog_has(kl, r);
	}
	t2 = now_s();
	check(kl && keylog_randoms(kl) == N && keylog_bad_lines(kl) == 0,
	      "keylog: %d randoms parsed in %.0f ms", N, (t1 - t0) * 1e3);
	check(found == N && absent == N, "keylog: %d found, %d others absent, %.0f ns a lookup",
	      found, absent, (t2 - t1) * 1e9 / (2.0 * N));
	keylog_free(kl);
	free(text);
}

/* ---- the hellos ------------------------------------------------------------------ */

/* The handshake bytes of a stream's first records of type 22, reframed into
 * records of at most `piece` bytes (CCS records kept where they were). */
static unsigned char *reframe(const unsigned char *s, unsigned len, unsigned piece, unsigned *outlen)
{
	struct rec r[64];
	unsigned n = split(s, len, r, 64), o = 0;
	unsigned char *out = malloc(len * 6 + 16);

	for (unsigned i = 0; i < n; i++) {
		const unsigned char *b = s + r[i].off;

		if (b[0] != 22) {
			if (b[0] == 20) {
				memcpy(out + o, b, r[i].len);
				o += r[i].len;
				continue;
			}
			break;
		}
		for (unsigned k = 5; k < r[i].len; k += piece) {
			unsigned m = r[i].len - k < piece ? r[i].len - k : piece;

			memcpy(out + o, b, 3);
			out[o + 3] = (unsigned char)(m >> 8);
			out[o + 4] = (unsigned char)m;
			memcpy(out + o + 5, b + k, m);
			o += 5 + m;
		}
	}
	*outlen = o;
	return out;
}

static bool hp_matches(const struct tls_hello_params *hp, const struct tlsdec_vec *v)
{
	return hp->have_client && hp->have_server && !memcmp(hp->client_random, v->cr, 32) &&
	       !memcmp(hp->server_random, v->sr, 32) && hp->version == v->version &&
	       hp->cipher_suite == v->suite;
}

static void test_hellos(const struct tlsdec_vec *v)
{
	static const unsigned char hrr[8] = { 0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11 };
	struct tls_hello_params hp;
	unsigned char *c, *s, *rc, *rs;
	unsigned rcl, rsl, bad = 0, cuts = 0;
	bool ok;

	c = dup_n(v->c2s, v->c2s_len);
	s = dup_n(v->s2c, v->s2c_len);
	ok = tlsdec_hello_params(c, v->c2s_len, s, v->s2c_len, &hp);
	check(ok && hp_matches(&hp, v), "%s: hello params: version 0x%04x, suite 0x%04x%s", v->name,
	      hp.version, hp.cipher_suite, v->hrr ? ", after a HelloRetryRequest" : "");
	if (v->hrr)
		check(memcmp(hp.server_random, hrr, 8) != 0,
		      "%s: the server random is not the HelloRetryRequest's", v->name);
	check(!hp.early_data, "%s: no 0-RTT offered", v->name);
	free(c);
	free(s);

	/* Handshake messages spread over many small records. */
	rc = reframe(v->c2s, v->c2s_len, 7, &rcl);
	rs = reframe(v->s2c, v->s2c_len, 5, &rsl);
	c = dup_n(rc, rcl);
	s = dup_n(rs, rsl);
	ok = tlsdec_hello_params(c, rcl, s, rsl, &hp);
	check(ok && hp_matches(&hp, v), "%s: hello params from 7- and 5-byte records", v->name);
	free(c);
	free(s);
	free(rc);
	free(rs);

	/* Every prefix of each flight: no crash, and nothing made up. */
	for (unsigned cut = 0; cut <= v->c2s_len; cut++) {
		c = dup_n(v->c2s, cut);
		tlsdec_hello_params(c, cut, NULL, 0, &hp);
		if (hp.have_client && memcmp(hp.client_random, v->cr, 32))
			bad++;
		if (cut >= 43 && !hp.have_client)
			bad++;
		free(c);
		cuts++;
	}
	for (unsigned cut = 0; cut <= v->s2c_len; cut++) {
		s = dup_n(v->s2c, cut);
		tlsdec_hello_params(NULL, 0, s, cut, &hp);
		if (hp.have_server && (memcmp(hp.server_random, v->sr, 32) ||
				       hp.cipher_suite != v->suite || hp.version != v->version))
			bad++;
		free(s);
		cuts++;
	}
	check(!bad, "%s: hello params from %u prefixes: none wrong (%u)", v->name, cuts, bad);
}

/* ---- decryption ------------------------------------------------------------------- */

static bool has(const unsigned char *h, size_t hl, const char *needle)
{
	return memmem(h, hl, needle, strlen(needle)) != NULL;
}

static void test_decrypt(const struct tlsdec_vec *v)
{
	struct tls_hello_params hp = params_of(v);
	struct rec rc[64], rs[64];
	unsigned nc = split(v->c2s, v->c2s_len, rc, 64), ns = split(v->s2c, v->s2c_len, rs, 64);
	struct keylog *kl = kl_text(v->keylog);
	struct tlsdec *d;
	struct run c, s;
	char why[200];
	int st;
	bool back = true;

	d = tlsdec_new(kl, &hp, &st, why, sizeof(why));
	check(d && st == TLSDEC_OK, "%s: tlsdec_new: %s %s", v->name, tlsdec_status_name(st), why);
	if (!d)
		goto out;
	run_dir(d, 0, v->c2s, rc, nc, 0, 0, &c);
	run_dir(d, 1, v->s2c, rs, ns, 0, 0, &s);
	check(c.nok == nc && s.nok == ns, "%s: all %u + %u records decrypted (%s)", v->name, nc, ns,
	      c.first_bad || s.first_bad ? tlsdec_why(d) : "");
	check(c.app_len == strlen(v->sent) && !memcmp(c.app, v->sent, c.app_len),
	      "%s: client application data = what s_client sent (%zu bytes)", v->name, c.app_len);
	for (const char *const *b = v->back; *b; b++)
		back &= has(s.app, s.app_len, *b);
	check(back, "%s: server application data has the reversed lines (%zu bytes)", v->name,
	      s.app_len);
	check(tlsdec_guessed_key_changes(d) == 0,
	      "%s: every key change was read from the handshake messages", v->name);
	free(c.app);
	free(s.app);
	tlsdec_free(d);
out:
	keylog_free(kl);
}

/* Keys that do not fit: another connection's secrets under this random. The
 * decryptor is made (the lengths fit) and the first protected record of each
 * direction fails authentication, or, for TLS 1.3 secrets of another length,
 * tlsdec_new says so. The direction stays broken. */
static void test_wrong_keys(const struct tlsdec_vec *v, const struct tlsdec_vec *other)
{
	struct tls_hello_params hp = params_of(v);
	struct rec rc[64], rs[64];
	unsigned nc = split(v->c2s, v->c2s_len, rc, 64), ns = split(v->s2c, v->s2c_len, rs, 64);
	char *text = swap_random(other->keylog, other->cr, v->cr), why[200];
	struct keylog *kl = kl_text(text);
	struct tlsdec *d;
	struct run c, s;
	int st;

	d = tlsdec_new(kl, &hp, &st, why, sizeof(why));
	if (!d) {
		check(st == TLSDEC_BAD_KEYS, "%s with %s's secrets: tlsdec_new %s (%s)", v->name,
		      other->name, tlsdec_status_name(st), why);
		goto out;
	}
	run_dir(d, 0, v->c2s, rc, nc, 0, 0, &c);
	run_dir(d, 1, v->s2c, rs, ns, 0, 0, &s);
	check(c.first_bad == TLSDEC_BAD_KEYS && s.first_bad == TLSDEC_BAD_KEYS &&
	      c.first_bad_at == first_protected(v, v->c2s, rc, nc) &&
	      s.first_bad_at == first_protected(v, v->s2c, rs, ns) && c.app_len == 0 &&
	      s.app_len == 0,
	      "%s with %s's secrets: BAD_KEYS at the first protected record of each direction "
	      "(%u, %u): %s", v->name, other->name, c.first_bad_at, s.first_bad_at, tlsdec_why(d));
	check(c.sticky_ok && s.sticky_ok, "%s: a broken direction stays broken", v->name);
	free(c.app);
	free(s.app);
	tlsdec_free(d);
out:
	free(text);
	keylog_free(kl);
}

static void test_no_keys(const struct tlsdec_vec *v)
{
	struct tls_hello_params hp = params_of(v);
	struct keylog *kl = kl_text("# nothing\n");
	struct tlsdec *d;
	char why[200], line[300], crh[65];
	int st;

	d = tlsdec_new(kl, &hp, &st, why, sizeof(why));
	check(!d && st == TLSDEC_NO_KEYS && why[0], "%s: empty key log: %s (%s)", v->name,
	      tlsdec_status_name(st), why);
	keylog_free(kl);
	/* A secret of the other version only. */
	hex(v->cr, 32, crh);
	if (v->version == 0x0304)
		snprintf(line, sizeof(line), "CLIENT_RANDOM %s %096d\n", crh, 7);
	else
		snprintf(line, sizeof(line), "CLIENT_TRAFFIC_SECRET_0 %s %064d\n", crh, 7);
	kl = kl_text(line);
	d = tlsdec_new(kl, &hp, &st, why, sizeof(why));
	check(!d && st == TLSDEC_NO_KEYS, "%s: only the other version's secret: %s (%s)", v->name,
	      tlsdec_status_name(st), why);
	keylog_free(kl);
}

/* Every protected record with one byte of its body flipped (and each record
 * cut short): a status, never a crash, and a flipped protected record is
 * BAD_KEYS; the records before it still decrypt. */
static void test_damage(const struct tlsdec_vec *v)
{
	static unsigned char buf[OUT_MAX];
	struct tls_hello_params hp = params_of(v);
	struct rec rc[64], rs[64];
	unsigned nc = split(v->c2s, v->c2s_len, rc, 64), ns = split(v->s2c, v->s2c_len, rs, 64);
	struct keylog *kl = kl_text(v->keylog);
	unsigned flips = 0, flip_bad = 0, cuts = 0, cut_bad = 0;

	for (int dir = 0; dir < 2; dir++) {
		const unsigned char *str = dir ? v->s2c : v->c2s;
		const struct rec *r = dir ? rs : rc;
		unsigned n = dir ? ns : nc, fp = first_protected(v, str, r, n);

		for (unsigned i = 0; i < n; i++) {
			struct tlsdec *d;
			unsigned char *b, type;
			size_t ol;
			int st;
			bool prot = i >= fp && (v->version == 0x0303 || str[r[i].off] == 23);

			/* One fresh decryptor per damaged record, brought to it with
			 * the records before it. */
			for (unsigned cut = 0; cut <= r[i].len; cut++) {
				bool flip = cut == r[i].len;

				d = tlsdec_new(kl, &hp, &st, NULL, 0);
				if (!d)
					abort();
				for (unsigned k = 0; k < i; k++) {
					b = dup_n(str + r[k].off, r[k].len);
					st = tlsdec_record(d, dir, b, r[k].len, buf, &ol, &type);
					free(b);
					if (st)
						cut_bad++;
				}
				b = dup_n(str + r[i].off, r[i].len);
				if (flip) {
					b[5 + rnd(r[i].len - 5)] ^= (unsigned char)(1 + rnd(255));
					st = tlsdec_record(d, dir, b, r[i].len, buf, &ol, &type);
					flips += prot;
					if (prot && st != TLSDEC_BAD_KEYS)
						flip_bad++;
				} else {
					st = tlsdec_record(d, dir, b, cut, buf, &ol, &type);
					cuts++;
					if (st != TLSDEC_ERROR)
						cut_bad++;
				}
				free(b);
				tlsdec_free(d);
			}
		}
	}
	check(!cut_bad, "%s: %u records cut short: all TLSDEC_ERROR, and the records before "
	      "them OK (%u not)", v->name, cuts, cut_bad);
	check(flips && !flip_bad, "%s: %u protected records with a byte flipped: all BAD_KEYS (%u not)",
	      v->name, flips, flip_bad);
	keylog_free(kl);
}

/* TLS 1.3: the server's encrypted handshake flight left out (as if it had not
 * been parsed); the records after it still decrypt, from traffic secret 0. */
static void test_skip_flight(const struct tlsdec_vec *v)
{
	struct tls_hello_params hp = params_of(v);
	struct rec rs[64];
	unsigned ns = split(v->s2c, v->s2c_len, rs, 64), fp = first_protected(v, v->s2c, rs, ns);
	struct keylog *kl = kl_text(v->keylog);
	bool done = false;

	for (unsigned from = fp + 1; from < ns && !done; from++) {
		struct tlsdec *d = tlsdec_new(kl, &hp, &(int){ 0 }, NULL, 0);
		struct run s;
		bool back = true;

		run_dir(d, 1, v->s2c, rs, ns, fp, from, &s);
		for (const char *const *b = v->back; *b; b++)
			back &= has(s.app, s.app_len, *b);
		if (!s.first_bad && back && tlsdec_guessed_key_changes(d) == 1) {
			check(true, "%s: server records %u..%u left out, the rest decrypt from "
			      "traffic secret 0", v->name, fp, from - 1);
			done = true;
		}
		free(s.app);
		tlsdec_free(d);
	}
	if (!done)
		check(false, "%s: no cut of the server's flight decrypts after it", v->name);
	keylog_free(kl);
}

/* Made-up records: framing, limits, cleartext before keys, unknown types,
 * random bytes; and the cipher suites and versions that are not handled. */
static void test_made_up(void)
{
	static unsigned char buf[OUT_MAX], rec[5 + OUT_MAX + 8];
	const struct tlsdec_vec *v = NULL;
	struct tls_hello_params hp;
	struct keylog *kl;
	struct tlsdec *d;
	unsigned char *b, type;
	unsigned bad = 0, tries = 0;
	size_t ol;
	char why[200];
	int st;

	for (unsigned i = 0; i < NVEC; i++)
		if (tlsdec_vecs[i].version == 0x0303 && !v)
			v = &tlsdec_vecs[i];
	if (!v)
		abort();
	hp = params_of(v);
	kl = kl_text(v->keylog);

	/* A cleartext record of the largest size passes; one byte more is an error. */
	d = tlsdec_new(kl, &hp, &st, why, sizeof(why));
	memset(rec, 'a', sizeof(rec));
	rec[0] = 23, rec[1] = 3, rec[2] = 3, rec[3] = OUT_MAX >> 8, rec[4] = OUT_MAX & 0xff;
	b = dup_n(rec, 5 + OUT_MAX);
	st = tlsdec_record(d, 0, b, 5 + OUT_MAX, buf, &ol, &type);
	check(st == TLSDEC_OK && ol == OUT_MAX && type == 23 && buf[OUT_MAX - 1] == 'a',
	      "a cleartext record of %d bytes before ChangeCipherSpec passes as it is", OUT_MAX);
	free(b);
	rec[3] = (OUT_MAX + 1) >> 8, rec[4] = (OUT_MAX + 1) & 0xff;
	b = dup_n(rec, 5 + OUT_MAX + 1);
	st = tlsdec_record(d, 1, b, 5 + OUT_MAX + 1, buf, &ol, &type);
	check(st == TLSDEC_ERROR, "a record of %d bytes: %s (%s)", OUT_MAX + 1,
	      tlsdec_status_name(st), tlsdec_why(d));
	free(b);
	st = tlsdec_record(d, 2, rec, 5, buf, &ol, &type);
	check(st == TLSDEC_ERROR, "direction 2: %s (%s)", tlsdec_status_name(st), tlsdec_why(d));
	st = tlsdec_record(d, 0, rec, 5, buf, &ol, &type);
	check(st == TLSDEC_ERROR, "a header that says more than given: %s (%s)",
	      tlsdec_status_name(st), tlsdec_why(d));
	tlsdec_free(d);

	d = tlsdec_new(kl, &hp, &st, why, sizeof(why));
	memcpy(rec, "\x14\x03\x03\x00\x02\x01\x01", 7);
	st = tlsdec_record(d, 0, rec, 7, buf, &ol, &type);
	check(st == TLSDEC_ERROR, "a ChangeCipherSpec of 2 bytes: %s", tlsdec_status_name(st));
	memcpy(rec, "\x19\x03\x03\x00\x01\x01", 6);
	st = tlsdec_record(d, 1, rec, 6, buf, &ol, &type);
	check(st == TLSDEC_ERROR, "content type 25: %s (%s)", tlsdec_status_name(st), tlsdec_why(d));
	tlsdec_free(d);

	/* Random records, each direction switched on at a random point. */
	for (int round = 0; round < 400; round++) {
		const struct tlsdec_vec *w = &tlsdec_vecs[round % NVEC];
		struct keylog *kw = kl_text(w->keylog);
		struct tls_hello_params hw = params_of(w);

		d = tlsdec_new(kw, &hw, &st, NULL, 0);
		for (int k = 0; k < 12 && d; k++) {
			unsigned len = rnd(4) ? rnd(64) : rnd(sizeof(rec) - 5);
			int dir = (int)rnd(2);

			for (unsigned j = 0; j < len + 5; j++)
				rec[j] = (unsigned char)rnd(256);
			if (rnd(8)) {
				rec[0] = (unsigned char)(20 + rnd(5));
				rec[1] = 3;
				rec[3] = (unsigned char)(len >> 8);
				rec[4] = (unsigned char)len;
				if (!rnd(4))
					memcpy(rec, "\x14\x03\x03\x00\x01\x01", 6), len = 1;
			}
			b = dup_n(rec, len + 5);
			st = tlsdec_record(d, dir, b, len + 5, buf, &ol, &type);
			free(b);
			tries++;
			if (st < TLSDEC_OK || st > TLSDEC_ERROR || ol > OUT_MAX ||
			    (st && !tlsdec_why(d)[0]))
				bad++;
		}
		tlsdec_free(d);
		keylog_free(kw);
	}
	check(!bad, "%u random records: statuses in range, a reason for each failure (%u not)",
	      tries, bad);

	hp.version = 0x0302;
	d = tlsdec_new(kl, &hp, &st, why, sizeof(why));
	check(!d && st == TLSDEC_UNSUPPORTED, "TLS 1.1: %s (%s)", tlsdec_status_name(st), why);
	hp.version = 0x0303;
	hp.cipher_suite = 0xc027;
	d = tlsdec_new(kl, &hp, &st, why, sizeof(why));
	check(!d && st == TLSDEC_UNSUPPORTED, "a CBC suite: %s (%s)", tlsdec_status_name(st), why);
	hp.cipher_suite = 0x1301;
	d = tlsdec_new(kl, &hp, &st, why, sizeof(why));
	check(!d && st == TLSDEC_UNSUPPORTED, "a TLS 1.3 suite in TLS 1.2: %s", tlsdec_status_name(st));
	hp.version = 0x0304;
	hp.cipher_suite = 0x1304;
	d = tlsdec_new(kl, &hp, &st, why, sizeof(why));
	check(!d && st == TLSDEC_UNSUPPORTED, "TLS_AES_128_CCM_SHA256: %s", tlsdec_status_name(st));
	keylog_free(kl);
	check(!strcmp(tlsdec_status_name(TLSDEC_BAD_KEYS), "bad_keys") &&
	      !strcmp(tlsdec_status_name(99), "unknown"), "status names");
}

/* A ClientHello offering 0-RTT (its empty extended_master_secret extension
 * renamed early_data): the hello params say so, and a record the client sends
 * under the early traffic secret fails with a reason that names it. */
static void test_early_data(const struct tlsdec_vec *v)
{
	static unsigned char buf[OUT_MAX];
	unsigned char *c = dup_n(v->c2s, v->c2s_len), *at, rec[5 + 40], type;
	struct tls_hello_params hp;
	struct keylog *kl = kl_text(v->keylog);
	struct tlsdec *d;
	size_t ol;
	int st;

	at = memmem(c, v->c2s_len, "\x00\x17\x00\x00", 4);
	if (!at) {
		check(false, "%s: no extended_master_secret extension to rename", v->name);
		goto out;
	}
	at[1] = 42;
	tlsdec_hello_params(c, v->c2s_len, v->s2c, v->s2c_len, &hp);
	check(hp.early_data && hp_matches(&hp, v), "%s: early_data seen in the ClientHello", v->name);
	d = tlsdec_new(kl, &hp, &st, NULL, 0);
	memset(rec, 0x5a, sizeof(rec));
	rec[0] = 23, rec[1] = 3, rec[2] = 3, rec[3] = 0, rec[4] = 40;
	st = tlsdec_record(d, 0, rec, sizeof(rec), buf, &ol, &type);
	check(st == TLSDEC_BAD_KEYS && strstr(tlsdec_why(d), "0-RTT"), "%s: early data: %s (%s)",
	      v->name, tlsdec_status_name(st), tlsdec_why(d));
	tlsdec_free(d);
out:
	free(c);
	keylog_free(kl);
}

int main(void)
{
	test_keylog();
	test_keylog_big();
	for (unsigned i = 0; i < NVEC; i++) {
		const struct tlsdec_vec *v = &tlsdec_vecs[i], *other = NULL;

		/* Another connection of the same version, secrets of the same
		 * length if there is one. */
		for (unsigned k = 1; k < NVEC && !other; k++) {
			const struct tlsdec_vec *w = &tlsdec_vecs[(i + k) % NVEC];

			if (w->version == v->version && (w->suite == 0x1302) == (v->suite == 0x1302) &&
			    (w->suite == 0xc030) == (v->suite == 0xc030))
				other = w;
		}
		test_hellos(v);
		test_decrypt(v);
		if (other)
			test_wrong_keys(v, other);
		test_no_keys(v);
		test_damage(v);
		if (v->version == 0x0304)
			test_skip_flight(v);
		if (!strcmp(v->name, "tls13_aes128"))
			test_early_data(v);
	}
	test_made_up();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
