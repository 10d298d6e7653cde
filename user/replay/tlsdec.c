// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * TLS decryption for replay (contract in tlsdec.h): the key log, the hellos'
 * randoms and cipher suite, the key schedules of TLS 1.2 (RFC 5246 §5, §6.3) and
 * TLS 1.3 (RFC 8446 §7), and the AEAD record layer of both, with libcrypto.
 *
 * Cost per record is one AEAD open on a context that keeps its key: the key is
 * set when a direction changes keys (ChangeCipherSpec, Finished, KeyUpdate) and
 * only the nonce is set per record.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tlsdec.h"
#include "util.h"

#define TLS_REC_HDR 5
#define TLS_REC_BODY_MAX (16384 + 256)  /* TLSCiphertext.length, RFC 8446 §5.2 */
#define AEAD_TAG 16
#define AEAD_NONCE 12
#define SECRET_MAX 48                    /* SHA-384 */

#define CT_CCS 20
#define CT_ALERT 21
#define CT_HANDSHAKE 22
#define CT_APPDATA 23
#define CT_HEARTBEAT 24

#define HS_CLIENT_HELLO 1
#define HS_SERVER_HELLO 2
#define HS_FINISHED 20
#define HS_KEY_UPDATE 24

#define EXT_EARLY_DATA 42
#define EXT_SUPPORTED_VERSIONS 43

/* ---- the key log ------------------------------------------------------------ */

/*
 * NSS key log format, one secret per line:
 *   <label> SP <client random, 64 hex> SP <secret, hex>
 * Kept: CLIENT_RANDOM (the TLS 1.2 master secret, 48 bytes) and the four TLS 1.3
 * traffic secrets (32 or 48 bytes). Known labels the decryptor has no use for are
 * skipped without complaint; anything else counts as a malformed line.
 */
enum { KL_CHTS, KL_SHTS, KL_CTS0, KL_STS0, KL_NSEC };

#define KL_HAVE_MASTER (1u << KL_NSEC)

struct kl_entry {
	uint8_t cr[32];
	uint8_t master[48];
	uint8_t sec[KL_NSEC][SECRET_MAX];
	uint8_t sec_len[KL_NSEC];
	uint8_t have;       /* bit i: sec[i]; KL_HAVE_MASTER */
};

struct keylog {
	struct kl_entry *e;  /* dense, in order of first appearance */
	size_t n, cap;
	uint32_t *slot;      /* open addressing, linear probing: index into e + 1, 0 empty */
	size_t nslot;        /* a power of two, at least twice n */
	size_t bad;
};

static const struct {
	const char *label;
	int idx;             /* KL_*, -1 for the master secret, -2 to skip */
} kl_labels[] = {
	{ "CLIENT_RANDOM", -1 },
	{ "CLIENT_HANDSHAKE_TRAFFIC_SECRET", KL_CHTS },
	{ "SERVER_HANDSHAKE_TRAFFIC_SECRET", KL_SHTS },
	{ "CLIENT_TRAFFIC_SECRET_0", KL_CTS0 },
	{ "SERVER_TRAFFIC_SECRET_0", KL_STS0 },
	/* Derived here from the secrets above, or not decrypted. */
	{ "EXPORTER_SECRET", -2 },
	{ "EARLY_EXPORTER_SECRET", -2 },
	{ "CLIENT_EARLY_TRAFFIC_SECRET", -2 },
	/* OpenSSL 3 logs the secrets after each KeyUpdate under these. */
	{ "CLIENT_TRAFFIC_SECRET_N", -2 },
	{ "SERVER_TRAFFIC_SECRET_N", -2 },
	/* TLS 1.2 RSA key exchange and pre-master secrets: not handled. */
	{ "RSA", -2 },
	{ "PMS_CLIENT_RANDOM", -2 },
};

/* The client random is random: its first 8 bytes, mixed so that a key log made
 * of crafted randoms still spreads over the table. */
static size_t kl_hash(const uint8_t cr[32], size_t mask)
{
	uint64_t h;

	memcpy(&h, cr, sizeof(h));
	h ^= h >> 29;
	h *= 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 32 ^ h) & mask;
}

static struct kl_entry *kl_find(const struct keylog *kl, const uint8_t cr[32])
{
	size_t mask, i;

	if (!kl || !kl->nslot)
		return NULL;
	mask = kl->nslot - 1;
	for (i = kl_hash(cr, mask);; i = (i + 1) & mask) {
		uint32_t s = kl->slot[i];

		if (!s)
			return NULL;
		if (!memcmp(kl->e[s - 1].cr, cr, 32))
			return &kl->e[s - 1];
	}
}

static int kl_grow_slots(struct keylog *kl)
{
	size_t nslot = kl->nslot ? kl->nslot * 2 : 1024, mask = nslot - 1;
	uint32_t *slot = calloc(nslot, sizeof(*slot));

	if (!slot)
		return -1;
	for (size_t k = 0; k < kl->n; k++) {
		size_t i = kl_hash(kl->e[k].cr, mask);

		while (slot[i])
			i = (i + 1) & mask;
		slot[i] = (uint32_t)(k + 1);
	}
	free(kl->slot);
	kl->slot = slot;
	kl->nslot = nslot;
	return 0;
}

static struct kl_entry *kl_insert(struct keylog *kl, const uint8_t cr[32])
{
	struct kl_entry *e = kl_find(kl, cr);
	size_t mask, i;

	if (e)
		return e;
	if (kl->n >= UINT32_MAX - 1)
		return NULL;
	if ((kl->n + 1) * 2 > kl->nslot && kl_grow_slots(kl))
		return NULL;
	if (kl->n == kl->cap) {
		size_t cap = kl->cap ? kl->cap * 2 : 256;
		struct kl_entry *ne = realloc(kl->e, cap * sizeof(*ne));

		if (!ne)
			return NULL;
		kl->e = ne;
		kl->cap = cap;
	}
	e = &kl->e[kl->n];
	memset(e, 0, sizeof(*e));
	memcpy(e->cr, cr, 32);
	mask = kl->nslot - 1;
	for (i = kl_hash(cr, mask); kl->slot[i]; i = (i + 1) & mask)
		;
	kl->slot[i] = (uint32_t)++kl->n;
	return e;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Exactly n hex digits into n / 2 bytes. */
static bool unhex(const char *s, size_t n, uint8_t *out)
{
	if (n % 2)
		return false;
	for (size_t i = 0; i < n; i += 2) {
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* One line, without its end of line. NULL when it is fine, else why not;
 * *oom on a failed allocation. */
static const char *kl_line(struct keylog *kl, const char *s, size_t n, bool *oom)
{
	const char *f[4];
	size_t fl[4], nf = 0, i = 0;
	uint8_t cr[32], sec[SECRET_MAX];
	struct kl_entry *e;
	int idx = -3;

	while (i < n && nf < 4) {
		while (i < n && is_space(s[i]))
			i++;
		if (i == n)
			break;
		f[nf] = s + i;
		while (i < n && !is_space(s[i]))
			i++;
		fl[nf] = (size_t)(s + i - f[nf]);
		nf++;
	}
	if (nf == 0 || f[0][0] == '#')
		return NULL;
	for (size_t k = 0; k < sizeof(kl_labels) / sizeof(kl_labels[0]); k++) {
		if (strlen(kl_labels[k].label) == fl[0] &&
		    !memcmp(kl_labels[k].label, f[0], fl[0])) {
			idx = kl_labels[k].idx;
			break;
		}
	}
	if (idx == -3)
		return "unknown label";
	if (nf != 3)
		return "expected <label> <client random> <secret>";
	if (idx == -2)
		return NULL;
	if (fl[1] != 64 || !unhex(f[1], 64, cr))
		return "the client random is not 64 hex digits";
	if (idx == -1 && (fl[2] != 96 || !unhex(f[2], 96, sec)))
		return "the master secret is not 96 hex digits";
	if (idx >= 0 && ((fl[2] != 64 && fl[2] != 96) || !unhex(f[2], fl[2], sec)))
		return "the secret is not 64 or 96 hex digits";
	if (!(e = kl_insert(kl, cr))) {
		*oom = true;
		return "out of memory";
	}
	/* A later line for the same secret wins (a key log appended to by a
	 * program run twice with the same random is not a thing to reject). */
	if (idx == -1) {
		memcpy(e->master, sec, 48);
		e->have |= KL_HAVE_MASTER;
	} else {
		memcpy(e->sec[idx], sec, fl[2] / 2);
		e->sec_len[idx] = (uint8_t)(fl[2] / 2);
		e->have |= 1u << idx;
	}
	return NULL;
}

struct keylog *keylog_parse(const char *text, size_t len, const char *name)
{
	struct keylog *kl = calloc(1, sizeof(*kl));
	size_t pos = 0, lineno = 0;

	if (!kl)
		return NULL;
	while (pos < len) {
		const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - s) : len - pos;
		const char *why;
		bool oom = false;

		pos += n + (nl != NULL);
		lineno++;
		if (n && s[n - 1] == '\r')
			n--;
		why = kl_line(kl, s, n, &oom);
		if (oom) {
			keylog_free(kl);
			return NULL;
		}
		if (why && ++kl->bad <= 5)
			cs_warn("%s: line %zu: %s", name, lineno, why);
	}
	return kl;
}

struct keylog *keylog_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	struct keylog *kl;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	/* Read to the end rather than trust a size: it may be a pipe. */
	for (;;) {
		size_t got;

		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 1 << 16;
			char *nb = realloc(buf, ncap);

			if (!nb) {
				snprintf(err, errlen, "%s: out of memory", path);
				goto fail;
			}
			buf = nb;
			cap = ncap;
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		goto fail;
	}
	fclose(f);
	kl = keylog_parse(buf, len, path);
	free(buf);
	if (!kl)
		snprintf(err, errlen, "%s: out of memory", path);
	return kl;
fail:
	fclose(f);
	free(buf);
	return NULL;
}

void keylog_free(struct keylog *kl)
{
	if (!kl)
		return;
	if (kl->e)
		OPENSSL_cleanse(kl->e, kl->cap * sizeof(*kl->e));
	free(kl->e);
	free(kl->slot);
	free(kl);
}

size_t keylog_randoms(const struct keylog *kl)
{
	return kl ? kl->n : 0;
}

size_t keylog_bad_lines(const struct keylog *kl)
{
	return kl ? kl->bad : 0;
}

bool keylog_has(const struct keylog *kl, const uint8_t client_random[32])
{
	return kl_find(kl, client_random) != NULL;
}

/* ---- the hellos --------------------------------------------------------------- */

/* A bounds-checked reader: every get fails once the bytes run out. */
struct cur {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *cur_take(struct cur *c, size_t n)
{
	const uint8_t *p = c->p;

	if (c->bad || n > c->left) {
		c->bad = true;
		return NULL;
	}
	c->p += n;
	c->left -= n;
	return p;
}

static uint32_t cur_be(struct cur *c, size_t n)
{
	const uint8_t *p = cur_take(c, n);
	uint32_t v = 0;

	for (size_t i = 0; p && i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* A sub-reader over the next n bytes (a length-prefixed vector). */
static struct cur cur_sub(struct cur *c, size_t n)
{
	struct cur s = { .p = c->p, .left = n, .bad = false };

	if (!cur_take(c, n))
		s.bad = true, s.left = 0;
	return s;
}

/*
 * The handshake bytes of a flight: the bodies of its records, put end to end.
 * Record layer (RFC 8446 §5.1):
 *   type(1) legacy_version(2) length(2) fragment[length]
 * ChangeCipherSpec records are stepped over (TLS 1.3 middlebox compatibility
 * puts one between a HelloRetryRequest and the ServerHello); the first record
 * of any other type ends the flight. A last record cut short gives what it has.
 * At most cap bytes; returns how many.
 */
static size_t hs_bytes(const uint8_t *s, size_t len, uint8_t *buf, size_t cap)
{
	size_t off = 0, got = 0;

	while (len - off >= TLS_REC_HDR && got < cap) {
		uint8_t type = s[off];
		size_t n = (size_t)s[off + 3] << 8 | s[off + 4], have;

		if (s[off + 1] != 3)
			break;
		off += TLS_REC_HDR;
		have = n < len - off ? n : len - off;
		if (type == CT_HANDSHAKE) {
			size_t k = have < cap - got ? have : cap - got;

			memcpy(buf + got, s + off, k);
			got += k;
		} else if (type != CT_CCS) {
			break;
		}
		off += have;
	}
	return got;
}

/* The flights hold more than the hellos (certificates); the hellos fit here. */
#define HELLO_BYTES_MAX (1 << 17)

/*
 * ClientHello (RFC 8446 §4.1.2):
 *   legacy_version(2) random(32) legacy_session_id<0..32>
 *   cipher_suites<2..2^16-2> legacy_compression_methods<1..2^8-1>
 *   extensions<8..2^16-1>: { type(2) data<0..2^16-1> }
 * The random is enough; a hello cut short after it still gives it.
 */
static bool parse_client_hello(const uint8_t *b, size_t n, struct tls_hello_params *out)
{
	struct cur c = { .p = b, .left = n }, m, ext;
	const uint8_t *r;
	uint32_t mlen;

	if (cur_be(&c, 1) != HS_CLIENT_HELLO)
		return false;
	mlen = cur_be(&c, 3);
	if (c.bad)
		return false;
	/* A hello cut short: what is there. */
	m = c;
	if (mlen < m.left)
		m.left = mlen;
	cur_be(&m, 2);
	if (!(r = cur_take(&m, 32)))
		return false;
	memcpy(out->client_random, r, 32);
	out->have_client = true;
	cur_sub(&m, cur_be(&m, 1));
	cur_sub(&m, cur_be(&m, 2));
	cur_sub(&m, cur_be(&m, 1));
	ext = cur_sub(&m, cur_be(&m, 2));
	while (!ext.bad && ext.left >= 4) {
		uint32_t type = cur_be(&ext, 2);

		cur_sub(&ext, cur_be(&ext, 2));
		if (!ext.bad && type == EXT_EARLY_DATA)
			out->early_data = true;
	}
	return true;
}

static const uint8_t hrr_random[32] = {
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
};

/*
 * ServerHello (RFC 8446 §4.1.3, RFC 5246 §7.4.1.3):
 *   legacy_version(2) random(32) legacy_session_id_echo<0..32>
 *   cipher_suite(2) legacy_compression_method(1) extensions<6..2^16-1>
 * TLS 1.3 is told by supported_versions (selected_version, 2 bytes). A
 * HelloRetryRequest is a ServerHello with a fixed random (§4.1.3): skipped, the
 * real ServerHello comes after it. Handshake messages may span records, so this
 * walks the flight's handshake bytes, not records.
 */
static void parse_server_flight(const uint8_t *b, size_t n, struct tls_hello_params *out)
{
	struct cur c = { .p = b, .left = n };

	for (int msgs = 0; msgs < 4 && c.left >= 4; msgs++) {
		uint32_t type = cur_be(&c, 1), mlen = cur_be(&c, 3);
		struct cur m = cur_sub(&c, mlen), ext;
		const uint8_t *r;
		uint16_t version, suite;

		if (type != HS_SERVER_HELLO || m.bad)
			return;
		version = (uint16_t)cur_be(&m, 2);
		r = cur_take(&m, 32);
		cur_sub(&m, cur_be(&m, 1));
		suite = (uint16_t)cur_be(&m, 2);
		cur_be(&m, 1);
		if (m.bad)
			return;
		if (!memcmp(r, hrr_random, 32))
			continue;
		/* TLS 1.2 may leave out the extensions altogether. */
		if (m.left) {
			ext = cur_sub(&m, cur_be(&m, 2));
			while (!ext.bad && ext.left >= 4) {
				uint32_t et = cur_be(&ext, 2);
				struct cur d = cur_sub(&ext, cur_be(&ext, 2));

				if (et == EXT_SUPPORTED_VERSIONS && d.left == 2)
					version = (uint16_t)cur_be(&d, 2);
			}
			if (ext.bad || m.bad)
				return;
		}
		memcpy(out->server_random, r, 32);
		out->version = version;
		out->cipher_suite = suite;
		out->have_server = true;
		return;
	}
}

bool tlsdec_hello_params(const uint8_t *c2s, size_t c2s_len, const uint8_t *s2c, size_t s2c_len,
			 struct tls_hello_params *out)
{
	size_t most = c2s_len > s2c_len ? c2s_len : s2c_len;
	size_t cap = most < HELLO_BYTES_MAX ? most : HELLO_BYTES_MAX;
	uint8_t *buf;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (!(buf = malloc(cap ? cap : 1)))
		return false;
	if (c2s) {
		n = hs_bytes(c2s, c2s_len, buf, cap);
		parse_client_hello(buf, n, out);
	}
	if (s2c) {
		n = hs_bytes(s2c, s2c_len, buf, cap);
		parse_server_flight(buf, n, out);
	}
	free(buf);
	return out->have_client && out->have_server;
}

/* ---- key schedules -------------------------------------------------------------- */

/* TLS 1.2 P_hash (RFC 5246 §5):
 *   A(0) = seed, A(i) = HMAC(secret, A(i-1))
 *   P_hash = HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed) + ... */
static bool p_hash(const EVP_MD *md, const uint8_t *secret, size_t slen, const uint8_t *seed,
		   size_t seedlen, uint8_t *out, size_t outlen)
{
	uint8_t a[EVP_MAX_MD_SIZE], buf[EVP_MAX_MD_SIZE + 128], t[EVP_MAX_MD_SIZE];
	unsigned alen, tlen;

	if (seedlen > 128)
		return false;
	if (!HMAC(md, secret, (int)slen, seed, seedlen, a, &alen))
		return false;
	while (outlen) {
		size_t k;

		memcpy(buf, a, alen);
		memcpy(buf + alen, seed, seedlen);
		if (!HMAC(md, secret, (int)slen, buf, alen + seedlen, t, &tlen))
			return false;
		k = outlen < tlen ? outlen : tlen;
		memcpy(out, t, k);
		out += k;
		outlen -= k;
		if (!HMAC(md, secret, (int)slen, a, alen, a, &alen))
			return false;
	}
	return true;
}

/* HKDF-Expand-Label (RFC 8446 §7.1) with an empty context:
 *   HkdfLabel = length(2) || label<7..255> = "tls13 " + label || context<0..255>
 * expanded by HKDF-Expand (RFC 5869 §2.3): T(i) = HMAC(secret, T(i-1) | info | i). */
static bool hkdf_expand_label(const EVP_MD *md, const uint8_t *secret, size_t slen,
			      const char *label, uint8_t *out, size_t outlen)
{
	uint8_t info[2 + 1 + 6 + 32 + 1], buf[EVP_MAX_MD_SIZE + sizeof(info) + 1];
	uint8_t t[EVP_MAX_MD_SIZE];
	size_t llen = strlen(label), ilen, tlen = 0;
	unsigned mdlen;
	uint8_t i = 1;

	if (llen > 32)
		return false;
	info[0] = (uint8_t)(outlen >> 8);
	info[1] = (uint8_t)outlen;
	info[2] = (uint8_t)(6 + llen);
	memcpy(info + 3, "tls13 ", 6);
	memcpy(info + 9, label, llen);
	info[9 + llen] = 0;
	ilen = 10 + llen;
	while (outlen) {
		size_t k;

		memcpy(buf, t, tlen);
		memcpy(buf + tlen, info, ilen);
		buf[tlen + ilen] = i++;
		if (!HMAC(md, secret, (int)slen, buf, tlen + ilen + 1, t, &mdlen))
			return false;
		tlen = mdlen;
		k = outlen < tlen ? outlen : tlen;
		memcpy(out, t, k);
		out += k;
		outlen -= k;
	}
	return true;
}

/* ---- the decryptor ---------------------------------------------------------------- */

struct suite {
	uint16_t id;
	uint16_t version;    /* 0x0303 or 0x0304 */
	const char *name;
	const EVP_CIPHER *(*cipher)(void);
	const EVP_MD *(*md)(void);
	uint8_t key_len;
	bool chacha;         /* TLS 1.2: 12-byte IV XOR seq, no explicit nonce (RFC 7905) */
};

static const struct suite suites[] = {
	{ 0x009c, 0x0303, "TLS_RSA_WITH_AES_128_GCM_SHA256", EVP_aes_128_gcm, EVP_sha256, 16, false },
	{ 0x009d, 0x0303, "TLS_RSA_WITH_AES_256_GCM_SHA384", EVP_aes_256_gcm, EVP_sha384, 32, false },
	{ 0x009e, 0x0303, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", EVP_aes_128_gcm, EVP_sha256, 16, false },
	{ 0x009f, 0x0303, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", EVP_aes_256_gcm, EVP_sha384, 32, false },
	{ 0xc02b, 0x0303, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", EVP_aes_128_gcm, EVP_sha256, 16, false },
	{ 0xc02c, 0x0303, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", EVP_aes_256_gcm, EVP_sha384, 32, false },
	{ 0xc02f, 0x0303, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", EVP_aes_128_gcm, EVP_sha256, 16, false },
	{ 0xc030, 0x0303, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", EVP_aes_256_gcm, EVP_sha384, 32, false },
	{ 0xcca8, 0x0303, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", EVP_chacha20_poly1305, EVP_sha256, 32, true },
	{ 0xcca9, 0x0303, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", EVP_chacha20_poly1305, EVP_sha256, 32, true },
	{ 0xccaa, 0x0303, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", EVP_chacha20_poly1305, EVP_sha256, 32, true },
	{ 0x1301, 0x0304, "TLS_AES_128_GCM_SHA256", EVP_aes_128_gcm, EVP_sha256, 16, false },
	{ 0x1302, 0x0304, "TLS_AES_256_GCM_SHA384", EVP_aes_256_gcm, EVP_sha384, 32, false },
	{ 0x1303, 0x0304, "TLS_CHACHA20_POLY1305_SHA256", EVP_chacha20_poly1305, EVP_sha256, 32, true },
};

struct tlsdec_dir {
	EVP_CIPHER_CTX *ctx;
	uint8_t iv[AEAD_NONCE];  /* TLS 1.2 GCM: the 4-byte salt; else the whole IV */
	uint64_t seq;            /* of the next protected record under the current keys */
	uint64_t nrec;           /* records given, for messages */
	uint64_t nok;            /* records decrypted */
	int status;              /* sticky once not OK */
	bool on;                 /* TLS 1.2: a ChangeCipherSpec was seen */
	bool renegotiating;      /* TLS 1.2: an encrypted ChangeCipherSpec was seen */
	/* TLS 1.3 */
	unsigned epoch;          /* 0 handshake secret, n >= 1 traffic secret n - 1 */
	uint8_t secret[SECRET_MAX];
	uint8_t secret0[SECRET_MAX];  /* traffic secret 0, from the key log */
	uint8_t hs_hdr[4];       /* handshake message walker (messages span records) */
	uint8_t hs_have;         /* header bytes of the current message seen */
	uint32_t hs_left;        /* its body bytes still to come */
};

struct tlsdec {
	const struct suite *s;
	const EVP_CIPHER *cipher;
	const EVP_MD *md;
	size_t hash_len;
	bool tls13, early_data;
	struct tlsdec_dir d[2];
	unsigned guessed;        /* key changes found by trying the next secret */
	char why[3][160];        /* per direction, and [2] for calls that name neither */
	int last;                /* which why[] tlsdec_why returns */
};

static const char *const dir_name[2] = { "client", "server" };

__attribute__((format(printf, 3, 4)))
static int fail(struct tlsdec *t, int slot, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->why[slot], sizeof(t->why[slot]), fmt, ap);
	va_end(ap);
	t->last = slot;
	return 0;
}

/* A direction breaks for good: every later record gets the same answer. */
__attribute__((format(printf, 4, 5)))
static int broken(struct tlsdec *t, int dir, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->why[dir], sizeof(t->why[dir]), fmt, ap);
	va_end(ap);
	t->last = dir;
	t->d[dir].status = status;
	return status;
}

static bool set_key(struct tlsdec *t, struct tlsdec_dir *d, const uint8_t *key)
{
	return EVP_DecryptInit_ex(d->ctx, t->cipher, NULL, key, NULL) == 1;
}

/* TLS 1.3 traffic keys (RFC 8446 §7.3): key and iv from the current secret. */
static bool set_secret13(struct tlsdec *t, struct tlsdec_dir *d)
{
	uint8_t key[32];
	bool ok;

	ok = hkdf_expand_label(t->md, d->secret, t->hash_len, "key", key, t->s->key_len) &&
	     hkdf_expand_label(t->md, d->secret, t->hash_len, "iv", d->iv, AEAD_NONCE) &&
	     set_key(t, d, key);
	OPENSSL_cleanse(key, sizeof(key));
	d->seq = 0;
	return ok;
}

/* The secret after the current one: traffic secret 0 after the handshake
 * secret, then application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N,
 * "traffic upd", "", Hash.length) at each KeyUpdate (§7.2). */
static bool next_epoch13(struct tlsdec *t, struct tlsdec_dir *d)
{
	uint8_t nxt[SECRET_MAX];

	if (d->epoch == 0)
		memcpy(nxt, d->secret0, t->hash_len);
	else if (!hkdf_expand_label(t->md, d->secret, t->hash_len, "traffic upd", nxt, t->hash_len))
		return false;
	memcpy(d->secret, nxt, t->hash_len);
	d->epoch++;
	return set_secret13(t, d);
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* One AEAD open with the key already in ctx. */
static bool aead_open(EVP_CIPHER_CTX *ctx, const uint8_t nonce[AEAD_NONCE], const uint8_t *aad,
		      size_t aad_len, const uint8_t *ct, size_t ct_len, uint8_t *out)
{
	int n = 0, m = 0;

	if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
		return false;
	n = 0;
	if (ct_len && EVP_DecryptUpdate(ctx, out, &n, ct, (int)ct_len) != 1)
		return false;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, AEAD_TAG, (void *)(ct + ct_len)) != 1)
		return false;
	return EVP_DecryptFinal_ex(ctx, out + n, &m) == 1;
}

/* The per-record nonce of TLS 1.3 and of ChaCha20-Poly1305 in TLS 1.2: the
 * sequence number, big-endian and left-padded, XORed into the IV. */
static void xor_nonce(const uint8_t iv[AEAD_NONCE], uint64_t seq, uint8_t nonce[AEAD_NONCE])
{
	memcpy(nonce, iv, AEAD_NONCE);
	for (int i = 11; i >= 4; i--, seq >>= 8)
		nonce[i] ^= (uint8_t)seq;
}

/*
 * TLS 1.2 AEAD record (RFC 5246 §6.2.3.3):
 *   GCM (RFC 5288): nonce_explicit(8) || ciphertext || tag(16);
 *                   nonce = salt(4, from the key block) || nonce_explicit
 *   ChaCha20-Poly1305 (RFC 7905): ciphertext || tag(16); nonce = iv XOR seq
 *   AAD = seq_num(8) || type(1) || version(2) || plaintext length(2)
 */
static int record12(struct tlsdec *t, int dir, const uint8_t *rec, size_t blen, uint8_t *out,
		    size_t *out_len, uint8_t *type)
{
	struct tlsdec_dir *d = &t->d[dir];
	const uint8_t *body = rec + TLS_REC_HDR;
	size_t over = AEAD_TAG + (t->s->chacha ? 0 : 8), pt_len;
	uint8_t nonce[AEAD_NONCE], aad[13];

	if (!d->on) {
		if (rec[0] == CT_CCS) {
			if (blen != 1 || body[0] != 1)
				return broken(t, dir, TLSDEC_ERROR,
					      "record %llu of the %s: a malformed ChangeCipherSpec",
					      (unsigned long long)d->nrec, dir_name[dir]);
			d->on = true;
		}
		memcpy(out, body, blen);
		*out_len = blen;
		*type = rec[0];
		return TLSDEC_OK;
	}
	if (d->renegotiating)
		return broken(t, dir, TLSDEC_UNSUPPORTED,
			      "record %llu of the %s: TLS 1.2 renegotiation is not decrypted",
			      (unsigned long long)d->nrec, dir_name[dir]);
	if (blen < over)
		return broken(t, dir, TLSDEC_ERROR,
			      "record %llu of the %s: %zu bytes, too short for %s",
			      (unsigned long long)d->nrec, dir_name[dir], blen, t->s->name);
	pt_len = blen - over;
	if (t->s->chacha) {
		xor_nonce(d->iv, d->seq, nonce);
	} else {
		memcpy(nonce, d->iv, 4);
		memcpy(nonce + 4, body, 8);
	}
	put_be64(aad, d->seq);
	aad[8] = rec[0];
	aad[9] = rec[1];
	aad[10] = rec[2];
	aad[11] = (uint8_t)(pt_len >> 8);
	aad[12] = (uint8_t)pt_len;
	if (!aead_open(d->ctx, nonce, aad, sizeof(aad), body + over - AEAD_TAG, pt_len, out))
		return broken(t, dir, TLSDEC_BAD_KEYS,
			      "record %llu of the %s failed authentication (%s, %s): "
			      "the master secret does not fit this connection",
			      (unsigned long long)d->nrec, dir_name[dir],
			      d->nok ? "after records that decrypted" : "its first protected one",
			      t->s->name);
	d->seq++;
	d->nok++;
	/* After an encrypted ChangeCipherSpec the keys are those of a new
	 * handshake, whose client random is inside the encrypted records. */
	if (rec[0] == CT_CCS)
		d->renegotiating = true;
	*out_len = pt_len;
	*type = rec[0];
	return TLSDEC_OK;
}

/* Walk the handshake messages of a TLS 1.3 record: header type(1) length(3),
 * then the body, possibly over several records. Returns true when a message
 * that changes this direction's keys ends here: Finished while on the
 * handshake secret, KeyUpdate after it (§4.6.3). The change takes effect with
 * the next record (§5.1: a key change is on a record boundary). */
static bool hs_walk13(struct tlsdec_dir *d, const uint8_t *p, size_t n)
{
	bool change = false;

	while (n) {
		if (d->hs_have < 4) {
			d->hs_hdr[d->hs_have++] = *p++;
			n--;
			if (d->hs_have < 4)
				continue;
			d->hs_left = (uint32_t)d->hs_hdr[1] << 16 | d->hs_hdr[2] << 8 | d->hs_hdr[3];
		} else {
			size_t k = n < d->hs_left ? n : d->hs_left;

			p += k;
			n -= k;
			d->hs_left -= (uint32_t)k;
		}
		if (d->hs_left)
			continue;
		if ((d->hs_hdr[0] == HS_FINISHED && d->epoch == 0) ||
		    (d->hs_hdr[0] == HS_KEY_UPDATE && d->epoch > 0))
			change = true;
		d->hs_have = 0;
	}
	return change;
}

static const char *epoch_name(unsigned epoch)
{
	return epoch == 0 ? "handshake traffic secret" : epoch == 1 ? "traffic secret 0"
		: "a traffic secret after KeyUpdate";
}

/*
 * TLS 1.3 record (RFC 8446 §5.2):
 *   opaque_type(1) = 23, legacy_record_version(2) = 0x0303, length(2),
 *   encrypted_record[length] = AEAD(content || type(1) || zeros) || tag(16)
 *   nonce = iv XOR seq; AAD = the 5-byte record header.
 * Records of any other outer type are not protected (the hellos,
 * ChangeCipherSpec, an alert sent before keys) and pass as they are.
 */
static int record13(struct tlsdec *t, int dir, const uint8_t *rec, size_t blen, uint8_t *out,
		    size_t *out_len, uint8_t *type)
{
	struct tlsdec_dir *d = &t->d[dir];
	const uint8_t *body = rec + TLS_REC_HDR;
	uint8_t nonce[AEAD_NONCE];
	size_t ct_len, n;
	unsigned tried = d->epoch;

	if (rec[0] != CT_APPDATA) {
		memcpy(out, body, blen);
		*out_len = blen;
		*type = rec[0];
		return TLSDEC_OK;
	}
	if (blen < AEAD_TAG + 1)
		return broken(t, dir, TLSDEC_ERROR,
			      "record %llu of the %s: %zu bytes, too short for TLS 1.3",
			      (unsigned long long)d->nrec, dir_name[dir], blen);
	ct_len = blen - AEAD_TAG;
	xor_nonce(d->iv, d->seq, nonce);
	if (!aead_open(d->ctx, nonce, rec, TLS_REC_HDR, body, ct_len, out)) {
		/* The keys may have changed where this code did not see it (a
		 * handshake it could not follow): the next secret, from seq 0,
		 * before giving up. */
		if (!next_epoch13(t, d))
			return broken(t, dir, TLSDEC_ERROR, "libcrypto failed to derive keys");
		xor_nonce(d->iv, d->seq, nonce);
		if (!aead_open(d->ctx, nonce, rec, TLS_REC_HDR, body, ct_len, out)) {
			if (dir == 0 && d->nok == 0 && t->early_data)
				return broken(t, dir, TLSDEC_BAD_KEYS,
					      "record %llu of the client failed authentication: "
					      "probably 0-RTT early data (offered in the ClientHello), "
					      "which is not decrypted",
					      (unsigned long long)d->nrec);
			return broken(t, dir, TLSDEC_BAD_KEYS,
				      "record %llu of the %s failed authentication "
				      "(TLS 1.3, %s, %s): wrong or missing secret",
				      (unsigned long long)d->nrec, dir_name[dir],
				      epoch_name(tried), t->s->name);
		}
		/* A skipped handshake: the message walker starts afresh. */
		t->guessed++;
		d->hs_have = 0;
		d->hs_left = 0;
	}
	d->seq++;
	d->nok++;
	/* The inner plaintext ends in the content type, then zero padding. */
	for (n = ct_len; n && !out[n - 1]; n--)
		;
	if (!n)
		return broken(t, dir, TLSDEC_ERROR,
			      "record %llu of the %s: no content type in the plaintext",
			      (unsigned long long)d->nrec, dir_name[dir]);
	*type = out[n - 1];
	*out_len = n - 1;
	if (*type == CT_HANDSHAKE && hs_walk13(d, out, *out_len)) {
		if (!next_epoch13(t, d))
			return broken(t, dir, TLSDEC_ERROR, "libcrypto failed to derive keys");
		d->hs_have = 0;
		d->hs_left = 0;
	}
	return TLSDEC_OK;
}

int tlsdec_record(struct tlsdec *t, int dir, const uint8_t *rec, size_t len, uint8_t *out,
		  size_t *out_len, uint8_t *type)
{
	struct tlsdec_dir *d;
	size_t blen;

	*out_len = 0;
	*type = 0;
	if (dir != 0 && dir != 1) {
		fail(t, 2, "direction %d is neither 0 nor 1", dir);
		return TLSDEC_ERROR;
	}
	d = &t->d[dir];
	d->nrec++;
	if (d->status) {
		t->last = dir;
		return d->status;
	}
	if (len < TLS_REC_HDR)
		return broken(t, dir, TLSDEC_ERROR, "record %llu of the %s: %zu bytes, no header",
			      (unsigned long long)d->nrec, dir_name[dir], len);
	blen = (size_t)rec[3] << 8 | rec[4];
	if (blen != len - TLS_REC_HDR)
		return broken(t, dir, TLSDEC_ERROR,
			      "record %llu of the %s: its header says %zu bytes, %zu given",
			      (unsigned long long)d->nrec, dir_name[dir], blen, len - TLS_REC_HDR);
	if (rec[0] < CT_CCS || rec[0] > CT_HEARTBEAT || rec[1] != 3)
		return broken(t, dir, TLSDEC_ERROR,
			      "record %llu of the %s: not a TLS record (type %u, version 0x%02x%02x)",
			      (unsigned long long)d->nrec, dir_name[dir], rec[0], rec[1], rec[2]);
	if (blen > TLS_REC_BODY_MAX)
		return broken(t, dir, TLSDEC_ERROR,
			      "record %llu of the %s: %zu bytes, more than %d",
			      (unsigned long long)d->nrec, dir_name[dir], blen, TLS_REC_BODY_MAX);
	if (t->tls13)
		return record13(t, dir, rec, blen, out, out_len, type);
	return record12(t, dir, rec, blen, out, out_len, type);
}

static const char *const kl_sec_label[KL_NSEC] = {
	"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
	"CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0",
};

__attribute__((format(printf, 4, 5)))
static struct tlsdec *new_fail(struct tlsdec *t, int *status, int st, const char *fmt, ...)
{
	va_list ap;

	*status = st;
	va_start(ap, fmt);
	vsnprintf(t->why[2], sizeof(t->why[2]), fmt, ap);
	va_end(ap);
	return NULL;
}

/* Key block (RFC 5246 §6.3) for the AEAD suites, which have no MAC keys:
 *   client_write_key, server_write_key, client_write_IV, server_write_IV
 *   = PRF(master_secret, "key expansion", server_random + client_random) */
static bool keys12(struct tlsdec *t, const struct kl_entry *e, const struct tls_hello_params *hp)
{
	uint8_t seed[13 + 64], kb[2 * 32 + 2 * 12];
	size_t kl = t->s->key_len, ivl = t->s->chacha ? 12 : 4;
	bool ok;

	memcpy(seed, "key expansion", 13);
	memcpy(seed + 13, hp->server_random, 32);
	memcpy(seed + 45, hp->client_random, 32);
	ok = p_hash(t->md, e->master, 48, seed, sizeof(seed), kb, 2 * kl + 2 * ivl);
	for (int dir = 0; ok && dir < 2; dir++) {
		memcpy(t->d[dir].iv, kb + 2 * kl + dir * ivl, ivl);
		ok = set_key(t, &t->d[dir], kb + dir * kl);
	}
	OPENSSL_cleanse(kb, sizeof(kb));
	return ok;
}

static struct tlsdec *tlsdec_new_(struct tlsdec *t, const struct keylog *kl,
				  const struct tls_hello_params *hp, int *status)
{
	const struct kl_entry *e;

	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		if (suites[i].id == hp->cipher_suite)
			t->s = &suites[i];
	if (hp->version != 0x0303 && hp->version != 0x0304)
		return new_fail(t, status, TLSDEC_UNSUPPORTED,
				"version 0x%04x is not decrypted (TLS 1.2 and 1.3 are)", hp->version);
	if (!t->s || t->s->version != hp->version)
		return new_fail(t, status, TLSDEC_UNSUPPORTED,
				"cipher suite 0x%04x in TLS 1.%d is not decrypted (AES-GCM and "
				"ChaCha20-Poly1305 are)", hp->cipher_suite, hp->version == 0x0304 ? 3 : 2);
	t->tls13 = hp->version == 0x0304;
	t->early_data = hp->early_data;
	t->cipher = t->s->cipher();
	t->md = t->s->md();
	t->hash_len = (size_t)EVP_MD_get_size(t->md);
	if (!(e = kl_find(kl, hp->client_random)))
		return new_fail(t, status, TLSDEC_NO_KEYS,
				"the key log has nothing for this client random");
	for (int dir = 0; dir < 2; dir++)
		if (!(t->d[dir].ctx = EVP_CIPHER_CTX_new()))
			return new_fail(t, status, TLSDEC_ERROR, "out of memory");
	if (!t->tls13) {
		if (!(e->have & KL_HAVE_MASTER))
			return new_fail(t, status, TLSDEC_NO_KEYS,
					"the key log has no CLIENT_RANDOM (TLS 1.2 master secret) "
					"for this client random");
		if (!keys12(t, e, hp))
			return new_fail(t, status, TLSDEC_ERROR, "libcrypto failed to derive keys");
		return t;
	}
	for (int i = 0; i < KL_NSEC; i++) {
		if (!(e->have & 1u << i))
			return new_fail(t, status, TLSDEC_NO_KEYS,
					"the key log has no %s for this client random", kl_sec_label[i]);
		if (e->sec_len[i] != t->hash_len)
			return new_fail(t, status, TLSDEC_BAD_KEYS,
					"%s is %u bytes, %s needs %zu", kl_sec_label[i],
					e->sec_len[i], t->s->name, t->hash_len);
	}
	for (int dir = 0; dir < 2; dir++) {
		struct tlsdec_dir *d = &t->d[dir];

		memcpy(d->secret, e->sec[dir ? KL_SHTS : KL_CHTS], t->hash_len);
		memcpy(d->secret0, e->sec[dir ? KL_STS0 : KL_CTS0], t->hash_len);
		if (!set_secret13(t, d))
			return new_fail(t, status, TLSDEC_ERROR, "libcrypto failed to derive keys");
	}
	return t;
}

struct tlsdec *tlsdec_new(const struct keylog *kl, const struct tls_hello_params *hp, int *status,
			  char *why, size_t whylen)
{
	struct tlsdec *t = calloc(1, sizeof(*t));
	struct tlsdec *r;

	*status = TLSDEC_ERROR;
	if (!t) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	r = tlsdec_new_(t, kl, hp, status);
	if (!r) {
		snprintf(why, whylen, "%s", t->why[2]);
		tlsdec_free(t);
		return NULL;
	}
	*status = TLSDEC_OK;
	if (whylen)
		why[0] = 0;
	return t;
}

void tlsdec_free(struct tlsdec *t)
{
	if (!t)
		return;
	for (int dir = 0; dir < 2; dir++)
		EVP_CIPHER_CTX_free(t->d[dir].ctx);
	OPENSSL_cleanse(t, sizeof(*t));
	free(t);
}

const char *tlsdec_why(const struct tlsdec *t)
{
	return t ? t->why[t->last] : "";
}

unsigned tlsdec_guessed_key_changes(const struct tlsdec *t)
{
	return t ? t->guessed : 0;
}

const char *tlsdec_status_name(int status)
{
	switch (status) {
	case TLSDEC_OK: return "ok";
	case TLSDEC_NO_KEYS: return "no_keys";
	case TLSDEC_UNSUPPORTED: return "unsupported";
	case TLSDEC_BAD_KEYS: return "bad_keys";
	case TLSDEC_ERROR: return "error";
	default: return "unknown";
	}
}
