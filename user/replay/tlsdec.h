/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * TLS decryption for replay, with a key log (SSLKEYLOGFILE, NSS key log format)
 * and OpenSSL's libcrypto:
 *   TLS 1.2: AES-128-GCM, AES-256-GCM (and ChaCha20-Poly1305), from CLIENT_RANDOM
 *            master secrets (RFC 5246 PRF key expansion; RFC 5288, RFC 7905 nonces);
 *   TLS 1.3: TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384,
 *            TLS_CHACHA20_POLY1305_SHA256, from the {CLIENT,SERVER}_HANDSHAKE_TRAFFIC_SECRET
 *            and {CLIENT,SERVER}_TRAFFIC_SECRET_0 lines (RFC 8446 §7), with KeyUpdate.
 * The caller reassembles whole records per direction and hands them over in
 * order; out come the plaintexts and their inner content types.
 */
#ifndef CONNSCOPE_TLSDEC_H
#define CONNSCOPE_TLSDEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keylog;

/* Read a key log. Lines that do not parse are counted (and the first few named
 * on stderr with their line number); NULL only if the file cannot be read
 * (message in err). */
struct keylog *keylog_load(const char *path, char *err, size_t errlen);
/* The same from text in memory (name is what the warnings call it); NULL only
 * when memory runs out. */
struct keylog *keylog_parse(const char *text, size_t len, const char *name);
void keylog_free(struct keylog *kl);
/* Client randoms with at least one secret; lines skipped as malformed. */
size_t keylog_randoms(const struct keylog *kl);
size_t keylog_bad_lines(const struct keylog *kl);
/* Does the key log hold anything for this client random? */
bool keylog_has(const struct keylog *kl, const uint8_t client_random[32]);

/* What the hellos say, for tlsdec_new. */
struct tls_hello_params {
	uint8_t client_random[32];
	uint8_t server_random[32];
	uint16_t version;        /* negotiated: 0x0303 or 0x0304 */
	uint16_t cipher_suite;
	bool have_client, have_server;
	bool early_data;         /* the ClientHello offers 0-RTT data (not decrypted) */
};

/* Fill client_random from the bytes of the client's first flight (record
 * headers included, from the stream's first byte), and server_random, version
 * and cipher_suite from the server's first flight (a HelloRetryRequest is
 * skipped: the real ServerHello after it is read). Returns have_client &&
 * have_server. */
bool tlsdec_hello_params(const uint8_t *c2s, size_t c2s_len, const uint8_t *s2c, size_t s2c_len,
			 struct tls_hello_params *out);

enum tlsdec_status {
	TLSDEC_OK = 0,
	TLSDEC_NO_KEYS = 1,       /* the key log has nothing for this client random */
	TLSDEC_UNSUPPORTED = 2,   /* version or cipher suite not handled (named by tlsdec_why) */
	TLSDEC_BAD_KEYS = 3,      /* a record failed authentication: wrong or missing secret */
	TLSDEC_ERROR = 4,         /* a malformed record */
};

struct tlsdec;

/* A decryptor for one connection, or NULL with *status and why[] saying why. */
struct tlsdec *tlsdec_new(const struct keylog *kl, const struct tls_hello_params *hp, int *status,
			  char *why, size_t whylen);
void tlsdec_free(struct tlsdec *d);

/*
 * One whole record of direction dir (0: client to server, 1: server to client),
 * header included, in the order the direction sent them; every record after the
 * hellos is given, cleartext ones too (ChangeCipherSpec switches TLS 1.2 on).
 * On TLSDEC_OK, *type is the (inner) content type and out[0..*out_len) the
 * plaintext; a cleartext record comes out as it is. out must hold 16384 + 256
 * bytes. After an error the direction stays broken (every later call returns the
 * same status).
 */
int tlsdec_record(struct tlsdec *d, int dir, const uint8_t *rec, size_t len, uint8_t *out,
		  size_t *out_len, uint8_t *type);
/* A short reason for the last non-OK status ("cipher suite 0xc02f in TLS 1.2 ...",
 * "record 3 of the server failed authentication"). */
const char *tlsdec_why(const struct tlsdec *d);
/* TLS 1.3: how many times a direction's keys changed where its handshake
 * messages did not say so (found by trying the next secret after a record
 * failed); 0 when every Finished and KeyUpdate was seen. */
unsigned tlsdec_guessed_key_changes(const struct tlsdec *d);
const char *tlsdec_status_name(int status);

#endif
