/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Records out: JSON lines (one writer, user/jsonw.c) or aligned text columns, on
 * stdout only. Records still built as cJSON trees go out through the same writer. */
#ifndef CONNSCOPE_OUTPUT_H
#define CONNSCOPE_OUTPUT_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include "opts.h"
#include "pods.h"
#include "record.h"

/* A `connection` record, rendered without cJSON (the hot path). */
struct conn_view {
	uint64_t ts_real;
	uint64_t start_real;      /* 0: unknown (pre-existing) */
	uint64_t duration_ns;
	const struct pod_info *pod;
	uint32_t pid;             /* 0: unknown */
	const char *comm;
	uint32_t netns;
	uint64_t cookie;
	const char *side;
	int family;
	const uint8_t *client_ip, *server_ip;
	uint16_t client_port, server_port;
	bool preexisting;
	const char *outcome;
	bool connect_known;
	uint64_t connect_ns;
	unsigned syn_retrans;
	const char *close;
	uint64_t close_wait_ns;
	uint64_t bytes_in, bytes_out;
	unsigned retrans;
	const char *error;        /* NULL: none */
	/* tls: only when has_tls */
	bool has_tls;
	const char *tls_version, *tls_sni, *tls_alpn, *tls_outcome;
	const char *tls_alpn_offered; /* comma-joined */
	bool tls_ms_known;
	uint64_t tls_ns;
	/* h2: only when has_h2 */
	bool has_h2;
	bool h2_midway;               /* joined mid-connection: counts unknown */
	bool h2_joined;               /* replay: joined mid-connection, counted from a frame boundary */
	const char *h2_source;
	uint32_t h2_streams, h2_goaway, h2_goaway_last_id, h2_goaway_error_code;
	const char *h2_goaway_error;  /* NULL: a code without a name */
	const char *h2_goaway_by;     /* NULL: no GOAWAY */
	uint32_t h2_rst_stream, h2_max_concurrent, h2_pings, h2_desync;
#define H2_UNSET_VALUE 0xffffffffu  /* h2_max_concurrent: never announced */
	/* nat: only when has_nat (conntrack translated the connection) */
	bool has_nat;
	struct nat_rec nat;
	/* replay: no process, cgroup or socket; where in which capture it began */
	bool replay;
	bool open;                    /* still open when the capture ended */
	const char *capture_file;
	uint64_t capture_packet;
};

void out_connection(const struct conn_view *v);
/* A `finding` record, as a JSON line or text lines. */
void out_finding(const struct finding_rec *f);
/* A `stats` record, as a JSON line or a text line. */
void out_stats(const struct stats_rec *s);

void out_init(enum cs_fmt fmt, bool text_header);
/* A new record {"type": type, "ts": RFC 3339 of ts_real}. */
cJSON *out_record(const char *type, uint64_t ts_real);
/* "pod": {namespace,name,uid,container} or null, and "cgroup": path or null. */
void out_add_pod(cJSON *o, const struct pod_info *p);
/* "name": {"ip","port"}; addr is 4 or 16 bytes by family. */
void out_add_endpoint(cJSON *o, const char *name, int family, const uint8_t *addr,
		      uint16_t port);
void out_add_ts(cJSON *o, const char *name, uint64_t ts_real);
/* Print the record (JSON line or text) and free it. */
void out_emit(cJSON *o);
void out_flush(void);
/* Milliseconds with microsecond precision, as JSON numbers. */
double out_ms(uint64_t ns);

/* ip text of an address: buf >= 46 bytes. */
const char *out_ip(int family, const uint8_t *addr, char *buf, unsigned len);

#endif
