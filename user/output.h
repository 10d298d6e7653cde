/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Records out: JSON lines (cJSON) or aligned text columns, on stdout only. */
#ifndef CONNSCOPE_OUTPUT_H
#define CONNSCOPE_OUTPUT_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include "opts.h"
#include "pods.h"

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
