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

/* A `connection` record, as a JSON line or a text line (none for a forwarded flow). */
void out_connection(const struct conn_rec *v);
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
