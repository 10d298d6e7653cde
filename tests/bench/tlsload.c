// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * tlsload: loopback TLS 1.3 load for `make bench` (the cost of connscope's
 * cgroup_skb programs, which follow TLS handshakes packet by packet).
 *
 * Both ends live in this one process, on 127.0.0.1 only, with OpenSSL and a
 * self-signed P-256 certificate made at startup (nothing is read from disk).
 *
 *   --bulk        one connection: a client thread writes BUF-byte records
 *                 (SSL_write, 16 KiB by default) back to back for --seconds, a
 *                 server thread reads them; result in MB/s (10^6 bytes) as the
 *                 server received them, from the client's first write to the
 *                 server's end of stream.
 *   --handshakes  --workers client threads, each in a loop: new TCP connection,
 *                 full TLS 1.3 handshake (tickets and session caches off on both
 *                 sides, so never a resumption), close_notify, close. Server
 *                 threads accept, complete the handshake, read to the
 *                 close_notify and close. Result in handshakes/s (client side).
 *
 * The close is clean on both sides, without resets: the server sends nothing after
 * its handshake flight (no tickets), so the client closes with an empty receive
 * queue, and the server closes once it has read the client's close_notify.
 * Clients spread over source addresses 127.0.0.2.. (--src-addrs) so that TIME_WAIT
 * sockets do not exhaust the client ports.
 *
 * The run ends by itself: clients stop at --seconds, the server gets --drain-ms to
 * finish, sockets have 5 s I/O timeouts and a watchdog alarm ends a stuck process.
 * Output: one JSON object on stdout; diagnostics on stderr. Exit 0 when it ran,
 * 2 on a setup error, 3 on the watchdog.
 *   gcc -O2 -pthread -o .output/tlsload tests/bench/tlsload.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_THREADS 256
#define IO_TIMEOUT_S 5

struct cfg {
	bool bulk;
	bool handshakes;
	double seconds;
	int workers;
	int server_threads;
	int port;
	int src_addrs;
	int buf;
	int drain_ms;
	bool pin;
};

static struct cfg C = {
	.seconds = 4,
	.port = 29108,
	.src_addrs = 16,
	.buf = 16384,
	.drain_ms = 3000,
};

static SSL_CTX *sctx, *cctx;
static int lfd = -1;
static atomic_int stop_server;
static atomic_int go;
static uint64_t t0_ns, end_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "tlsload: failed to %s: %s\n", what, why);
	exit(2);
}

static void die_errno(const char *what)
{
	die(what, strerror(errno));
}

/* The first OpenSSL error on this thread's queue, as text (or "unknown"). */
static const char *ssl_why(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (!e)
		return "unknown";
	ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

static void die_ssl(const char *what)
{
	char buf[256];

	die(what, ssl_why(buf, sizeof(buf)));
}

static void on_alarm(int sig)
{
	static const char msg[] = "tlsload: failed to finish: watchdog expired\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing left to do */
	}
	_exit(3);
}

static double cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* ---- TLS contexts ------------------------------------------------------------ */

/* A fresh P-256 key and a self-signed certificate for CN=bench, valid one day. */
static void make_identity(EVP_PKEY **key_out, X509 **cert_out)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;

	if (!key || !x)
		die_ssl("generate a P-256 key");
	if (!X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), 1) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 86400) || !X509_set_pubkey(x, key))
		die_ssl("fill in the certificate");
	name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"bench",
					-1, -1, 0) ||
	    !X509_set_issuer_name(x, name) || !X509_sign(x, key, EVP_sha256()))
		die_ssl("sign the certificate");
	*key_out = key;
	*cert_out = x;
}

static SSL_CTX *new_ctx(const SSL_METHOD *m)
{
	SSL_CTX *ctx = SSL_CTX_new(m);

	if (!ctx)
		die_ssl("create an SSL_CTX");
	/* TLS 1.3 only; user-space crypto only (no kernel TLS offload, which would
	 * change what the packets cost); no tickets, no session cache: every
	 * handshake is a full one. */
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
		die_ssl("restrict the context to TLS 1.3");
	SSL_CTX_clear_options(ctx, SSL_OP_ENABLE_KTLS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);
	return ctx;
}

static void setup_tls(void)
{
	EVP_PKEY *key;
	X509 *cert;

	make_identity(&key, &cert);
	sctx = new_ctx(TLS_server_method());
	if (!SSL_CTX_use_certificate(sctx, cert) || !SSL_CTX_use_PrivateKey(sctx, key) ||
	    !SSL_CTX_check_private_key(sctx))
		die_ssl("load the certificate into the server context");
	if (!SSL_CTX_set_num_tickets(sctx, 0))
		die_ssl("turn off TLS 1.3 tickets");
	cctx = new_ctx(TLS_client_method());
	/* The peer is ourselves: the certificate chain is not checked (the
	 * handshake still verifies the server's CertificateVerify signature). */
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	X509_free(cert);
	EVP_PKEY_free(key);
}

/* ---- sockets ------------------------------------------------------------------ */

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int listen_loopback(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die_errno("create the listening socket");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a))) {
		char what[64];

		snprintf(what, sizeof(what), "bind 127.0.0.1:%d", port);
		die_errno(what);
	}
	if (listen(fd, 4096))
		die_errno("listen");
	return fd;
}

/* Accept one connection (blocking mode, I/O timeouts set), or -1 once told to stop. */
static int accept_one(void)
{
	for (;;) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		int fd;

		if (atomic_load_explicit(&stop_server, memory_order_relaxed))
			return -1;
		if (poll(&p, 1, 50) <= 0)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue; /* EAGAIN: another thread got it; EINTR, ECONNABORTED */
		set_timeouts(fd);
		return fd;
	}
}

/* Step of the client's work that failed. */
enum { E_SOCKET, E_CONNECT, E_HANDSHAKE, E_WRITE, E_NR };
static const char *const err_names[E_NR] = { "socket", "connect", "handshake", "write" };

static int connect_loopback(uint64_t seq, int *err_step)
{
	struct sockaddr_in src = { .sin_family = AF_INET };
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)C.port) };
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		*err_step = E_SOCKET;
		return -1;
	}
	src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(seq % (uint64_t)C.src_addrs));
	dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	set_timeouts(fd);
	if (bind(fd, (struct sockaddr *)&src, sizeof(src))) {
		*err_step = E_SOCKET;
		close(fd);
		return -1;
	}
	while (connect(fd, (struct sockaddr *)&dst, sizeof(dst))) {
		if (errno != EINTR) {
			*err_step = E_CONNECT;
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* ---- handshakes ---------------------------------------------------------------- */

struct hs_client {
	pthread_t tid;
	int id;
	uint64_t attempted;
	uint64_t ok;		/* SSL_connect completed */
	uint64_t resumed;	/* should stay 0 */
	uint64_t errs[E_NR];
	char last_err[E_NR][256];
	uint64_t end_ns;
} __attribute__((aligned(64)));

struct hs_server {
	pthread_t tid;
	uint64_t accepted;
	uint64_t ok;		/* SSL_accept completed */
	uint64_t failed;	/* SSL_accept failed */
	uint64_t closed;
	uint64_t unclean;	/* ended without the client's close_notify */
} __attribute__((aligned(64)));

static struct hs_client *HC;
static struct hs_server *HS;
static const char *tls_version, *tls_cipher;
static pthread_mutex_t info_lock = PTHREAD_MUTEX_INITIALIZER;

static void note_session(SSL *ssl)
{
	pthread_mutex_lock(&info_lock);
	if (!tls_version) {
		tls_version = SSL_get_version(ssl);
		tls_cipher = SSL_get_cipher_name(ssl);
	}
	pthread_mutex_unlock(&info_lock);
}

static void client_fail(struct hs_client *w, int step, const char *why)
{
	w->errs[step]++;
	snprintf(w->last_err[step], sizeof(w->last_err[step]), "%s", why);
}

static void *hs_client_main(void *arg)
{
	struct hs_client *w = arg;
	char why[256];

	while (!atomic_load(&go))
		;
	for (uint64_t k = 0;; k++) {
		uint64_t seq = k * (uint64_t)C.workers + (uint64_t)w->id;
		int step, fd;
		SSL *ssl;

		if (now_ns() >= end_ns)
			break;
		w->attempted++;
		fd = connect_loopback(seq, &step);
		if (fd < 0) {
			client_fail(w, step, strerror(errno));
			continue;
		}
		ssl = SSL_new(cctx);
		if (!ssl || !SSL_set_fd(ssl, fd) || !SSL_set_tlsext_host_name(ssl, "bench")) {
			client_fail(w, E_HANDSHAKE, ssl_why(why, sizeof(why)));
			SSL_free(ssl);
			close(fd);
			continue;
		}
		if (SSL_connect(ssl) == 1) {
			w->ok++;
			if (SSL_session_reused(ssl))
				w->resumed++;
			if (w->ok == 1)
				note_session(ssl);
			SSL_shutdown(ssl); /* sends close_notify; does not wait for one */
		} else {
			client_fail(w, E_HANDSHAKE, ssl_why(why, sizeof(why)));
		}
		SSL_free(ssl);
		close(fd);
	}
	w->end_ns = now_ns();
	return NULL;
}

static void *hs_server_main(void *arg)
{
	struct hs_server *s = arg;
	char buf[512];

	for (;;) {
		int fd = accept_one(), n;
		SSL *ssl;

		if (fd < 0)
			break;
		s->accepted++;
		ssl = SSL_new(sctx);
		if (ssl && SSL_set_fd(ssl, fd) && SSL_accept(ssl) == 1) {
			s->ok++;
			/* Up to the client's close_notify (or its FIN). */
			while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0)
				;
			if (SSL_get_error(ssl, n) != SSL_ERROR_ZERO_RETURN)
				s->unclean++;
		} else {
			s->failed++;
		}
		ERR_clear_error();
		/* No close_notify back: the client has closed already. */
		SSL_free(ssl);
		close(fd);
		s->closed++;
	}
	return NULL;
}

static int run_handshakes(void)
{
	uint64_t attempted = 0, ok = 0, resumed = 0, errs[E_NR] = { 0 }, last_end = 0;
	uint64_t s_acc = 0, s_ok = 0, s_failed = 0, s_closed = 0, s_unclean = 0;
	const char *last_err[E_NR] = { 0 };
	uint64_t drain_start, drained;
	double elapsed, cpu0, cpu;

	HC = aligned_alloc(64, sizeof(*HC) * (size_t)C.workers);
	HS = aligned_alloc(64, sizeof(*HS) * (size_t)C.server_threads);
	if (!HC || !HS)
		die("allocate threads", strerror(ENOMEM));
	memset(HC, 0, sizeof(*HC) * (size_t)C.workers);
	memset(HS, 0, sizeof(*HS) * (size_t)C.server_threads);
	cpu0 = cpu_ms();
	for (int i = 0; i < C.server_threads; i++) {
		errno = pthread_create(&HS[i].tid, NULL, hs_server_main, &HS[i]);
		if (errno)
			die_errno("start a server thread");
	}
	for (int i = 0; i < C.workers; i++) {
		HC[i].id = i;
		errno = pthread_create(&HC[i].tid, NULL, hs_client_main, &HC[i]);
		if (errno)
			die_errno("start a client thread");
	}
	t0_ns = now_ns() + 20000000ULL;
	end_ns = t0_ns + (uint64_t)(C.seconds * 1e9);
	while (now_ns() < t0_ns)
		usleep(1000);
	atomic_store(&go, 1);
	for (int i = 0; i < C.workers; i++) {
		pthread_join(HC[i].tid, NULL);
		attempted += HC[i].attempted;
		ok += HC[i].ok;
		resumed += HC[i].resumed;
		if (HC[i].end_ns > last_end)
			last_end = HC[i].end_ns;
		for (int e = 0; e < E_NR; e++) {
			errs[e] += HC[i].errs[e];
			if (HC[i].errs[e])
				last_err[e] = HC[i].last_err[e];
		}
	}
	elapsed = (double)(last_end - t0_ns) / 1e9;

	/* Drain: every connection the clients opened is accepted and closed. */
	drain_start = now_ns();
	for (;;) {
		uint64_t a = 0, c = 0;

		for (int i = 0; i < C.server_threads; i++) {
			a += __atomic_load_n(&HS[i].accepted, __ATOMIC_RELAXED);
			c += __atomic_load_n(&HS[i].closed, __ATOMIC_RELAXED);
		}
		if ((a >= attempted - errs[E_SOCKET] - errs[E_CONNECT] && c >= a) ||
		    now_ns() - drain_start > (uint64_t)C.drain_ms * 1000000ULL)
			break;
		usleep(2000);
	}
	drained = now_ns() - drain_start;
	atomic_store(&stop_server, 1);
	for (int i = 0; i < C.server_threads; i++) {
		pthread_join(HS[i].tid, NULL);
		s_acc += HS[i].accepted;
		s_ok += HS[i].ok;
		s_failed += HS[i].failed;
		s_closed += HS[i].closed;
		s_unclean += HS[i].unclean;
	}
	cpu = cpu_ms() - cpu0;

	printf("{\"mode\":\"handshakes\",\"port\":%d,\"seconds\":%.3f,\"workers\":%d,"
	       "\"server_threads\":%d,\"src_addrs\":%d,\"version\":\"%s\",\"cipher\":\"%s\",",
	       C.port, elapsed, C.workers, C.server_threads, C.src_addrs,
	       tls_version ? tls_version : "", tls_cipher ? tls_cipher : "");
	printf("\"attempted\":%llu,\"handshakes\":%llu,\"failed\":%llu,\"resumed\":%llu,"
	       "\"handshakes_per_s\":%.1f,",
	       (unsigned long long)attempted, (unsigned long long)ok,
	       (unsigned long long)(attempted - ok), (unsigned long long)resumed,
	       elapsed > 0 ? (double)ok / elapsed : 0.0);
	printf("\"errors\":{");
	for (int e = 0; e < E_NR; e++)
		printf("%s\"%s\":%llu", e ? "," : "", err_names[e], (unsigned long long)errs[e]);
	printf("},\"last_error\":{");
	for (int e = 0, first = 1; e < E_NR; e++) {
		if (!last_err[e])
			continue;
		/* OpenSSL's and strerror's texts have no quotes or backslashes. */
		printf("%s\"%s\":\"%s\"", first ? "" : ",", err_names[e], last_err[e]);
		first = 0;
	}
	printf("},\"server\":{\"accepted\":%llu,\"handshakes\":%llu,\"failed\":%llu,"
	       "\"closed\":%llu,\"unclean\":%llu},\"drain_ms\":%.1f,\"cpu_ms\":%.0f}\n",
	       (unsigned long long)s_acc, (unsigned long long)s_ok, (unsigned long long)s_failed,
	       (unsigned long long)s_closed, (unsigned long long)s_unclean, drained / 1e6, cpu);
	fflush(stdout);
	return 0;
}

/* ---- bulk ---------------------------------------------------------------------- */

static struct {
	uint64_t sent, writes, start_ns, stop_ns;
	const char *err;
	char err_buf[256];
} BC;

static struct {
	uint64_t received, reads, eof_ns;
	bool clean;		/* ended with the client's close_notify */
	const char *err;
	char err_buf[256];
} BS;

/* --pin: the bulk server thread on CPU 1, the client on CPU 0. */
static void pin_to(int cpu)
{
	cpu_set_t set;

	if (!C.pin || sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	errno = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (errno)
		die_errno("pin a thread to its CPU");
}

static void *bulk_server_main(void *arg)
{
	unsigned char *buf = malloc((size_t)C.buf);
	SSL *ssl = NULL;
	int fd, n;

	(void)arg;
	if (!buf)
		die("allocate the read buffer", strerror(ENOMEM));
	pin_to(1);
	fd = accept_one();
	if (fd < 0) {
		BS.err = "no connection";
		goto out;
	}
	ssl = SSL_new(sctx);
	if (!ssl || !SSL_set_fd(ssl, fd) || SSL_accept(ssl) != 1) {
		BS.err = ssl_why(BS.err_buf, sizeof(BS.err_buf));
		goto out;
	}
	while ((n = SSL_read(ssl, buf, C.buf)) > 0) {
		BS.received += (uint64_t)n;
		BS.reads++;
	}
	BS.eof_ns = now_ns();
	BS.clean = SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN;
	if (!BS.clean)
		BS.err = ssl_why(BS.err_buf, sizeof(BS.err_buf));
out:
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

static void *bulk_client_main(void *arg)
{
	unsigned char *buf = malloc((size_t)C.buf);
	SSL *ssl = NULL;
	int fd, step;

	(void)arg;
	if (!buf)
		die("allocate the write buffer", strerror(ENOMEM));
	pin_to(0);
	memset(buf, 0x5a, (size_t)C.buf);
	fd = connect_loopback(0, &step);
	if (fd < 0) {
		BC.err = strerror(errno);
		goto out;
	}
	ssl = SSL_new(cctx);
	if (!ssl || !SSL_set_fd(ssl, fd) || !SSL_set_tlsext_host_name(ssl, "bench") ||
	    SSL_connect(ssl) != 1) {
		BC.err = ssl_why(BC.err_buf, sizeof(BC.err_buf));
		goto out;
	}
	note_session(ssl);
	/* The clock starts after the handshake: only the transfer is measured. */
	BC.start_ns = now_ns();
	end_ns = BC.start_ns + (uint64_t)(C.seconds * 1e9);
	for (;;) {
		int n = SSL_write(ssl, buf, C.buf);

		if (n <= 0) {
			BC.err = ssl_why(BC.err_buf, sizeof(BC.err_buf));
			break;
		}
		BC.sent += (uint64_t)n;
		BC.writes++;
		if (now_ns() >= end_ns)
			break;
	}
	BC.stop_ns = now_ns();
	SSL_shutdown(ssl);
out:
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

static int run_bulk(void)
{
	pthread_t st, ct;
	double secs, cpu0, cpu;

	cpu0 = cpu_ms();
	errno = pthread_create(&st, NULL, bulk_server_main, NULL);
	if (errno)
		die_errno("start the server thread");
	errno = pthread_create(&ct, NULL, bulk_client_main, NULL);
	if (errno)
		die_errno("start the client thread");
	pthread_join(ct, NULL);
	/* The server ends at the client's close_notify; give it drain-ms to get there. */
	for (int i = 0; i < C.drain_ms / 10 && !BS.eof_ns && !BS.err; i++)
		usleep(10000);
	atomic_store(&stop_server, 1); /* only matters when no connection came */
	pthread_join(st, NULL);
	cpu = cpu_ms() - cpu0;
	secs = BS.eof_ns > BC.start_ns && BC.start_ns ? (double)(BS.eof_ns - BC.start_ns) / 1e9 : 0;

	printf("{\"mode\":\"bulk\",\"pinned\":%s,\"port\":%d,\"buf\":%d,\"version\":\"%s\",\"cipher\":\"%s\","
	       "\"seconds\":%.3f,\"sent\":%llu,\"writes\":%llu,\"received\":%llu,\"reads\":%llu,"
	       "\"mb_per_s\":%.1f,\"clean_close\":%s,",
	       C.pin ? "true" : "false", C.port, C.buf, tls_version ? tls_version : "", tls_cipher ? tls_cipher : "", secs,
	       (unsigned long long)BC.sent, (unsigned long long)BC.writes,
	       (unsigned long long)BS.received, (unsigned long long)BS.reads,
	       secs > 0 ? (double)BS.received / secs / 1e6 : 0.0, BS.clean ? "true" : "false");
	printf("\"client_error\":");
	if (BC.err)
		printf("\"%s\",", BC.err);
	else
		printf("null,");
	printf("\"server_error\":");
	if (BS.err)
		printf("\"%s\",", BS.err);
	else
		printf("null,");
	printf("\"cpu_ms\":%.0f}\n", cpu);
	fflush(stdout);
	/* A transfer that did not happen is a broken load, not a slow one. */
	return BC.err || !BS.clean || !BS.received ? 1 : 0;
}

/* ---- main ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: tlsload (--bulk | --handshakes) [--seconds S] [--workers N]\n"
		"               [--server-threads N] [--port P] [--src-addrs N] [--buf N]\n"
		"               [--drain-ms MS] [--pin]\n"
		"Loopback TLS 1.3 load (OpenSSL, self-signed P-256). Prints one JSON line.\n"
		"  --bulk              one connection, the client writes --buf bytes per\n"
		"                      SSL_write for S seconds: MB/s\n"
		"  --handshakes        connect + full handshake + close, back to back: handshakes/s\n"
		"  --seconds S         duration (default 4)\n"
		"  --workers N         handshakes: client threads (default: number of CPUs)\n"
		"  --server-threads N  handshakes: server threads (default: --workers)\n"
		"  --port P            server port on 127.0.0.1 (default 29108)\n"
		"  --src-addrs N       client sources 127.0.0.2.. (default 16, max 253)\n"
		"  --buf N             bulk: bytes per SSL_write (default 16384, max 16384)\n"
		"  --drain-ms MS       how long the server may finish after the load (3000)\n"
		"  --pin               bulk: client thread on CPU 0, server thread on CPU 1\n");
}

static double parse_num(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "tlsload: failed to parse %s: '%s' (expected %g..%g)\n", opt, s, lo,
			hi);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "bulk", no_argument, NULL, 'B' },
		{ "handshakes", no_argument, NULL, 'H' },
		{ "seconds", required_argument, NULL, 's' },
		{ "workers", required_argument, NULL, 'w' },
		{ "server-threads", required_argument, NULL, 't' },
		{ "port", required_argument, NULL, 'p' },
		{ "src-addrs", required_argument, NULL, 'a' },
		{ "buf", required_argument, NULL, 'n' },
		{ "drain-ms", required_argument, NULL, 'd' },
		{ "pin", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct rlimit rl;
	long ncpu;
	int opt;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'B': C.bulk = true; break;
		case 'H': C.handshakes = true; break;
		case 's': C.seconds = parse_num("--seconds", optarg, 0.1, 3600); break;
		case 'w': C.workers = (int)parse_num("--workers", optarg, 1, MAX_THREADS); break;
		case 't': C.server_threads = (int)parse_num("--server-threads", optarg, 1, MAX_THREADS); break;
		case 'p': C.port = (int)parse_num("--port", optarg, 1, 65535); break;
		case 'a': C.src_addrs = (int)parse_num("--src-addrs", optarg, 1, 253); break;
		case 'n': C.buf = (int)parse_num("--buf", optarg, 1, 16384); break;
		case 'd': C.drain_ms = (int)parse_num("--drain-ms", optarg, 0, 60000); break;
		case 'P': C.pin = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || C.bulk == C.handshakes) {
		usage(stderr);
		return 2;
	}
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (!C.workers)
		C.workers = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu;
	if (!C.server_threads)
		C.server_threads = C.workers;

	signal(SIGALRM, on_alarm);
	alarm((unsigned)(C.seconds + C.drain_ms / 1000.0 + 2 * IO_TIMEOUT_S + 30));
	signal(SIGPIPE, SIG_IGN);
	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	setup_tls();
	lfd = listen_loopback(C.port); /* before any client starts */
	return C.bulk ? run_bulk() : run_handshakes();
}
