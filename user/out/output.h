/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Records out: JSON lines (one writer, user/jsonw.c) or aligned text columns, on
 * stdout only: typed records (user/agg/record.h), each with its schema here alone. */
#ifndef CONNSCOPE_OUTPUT_H
#define CONNSCOPE_OUTPUT_H

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

/* A `summary` record, as a JSON line or a text line. */
void out_summary(const struct summary_rec *s);

void out_init(enum cs_fmt fmt, bool text_header);
void out_flush(void);
/* Milliseconds with microsecond precision, as JSON numbers. */
double out_ms(uint64_t ns);

/* ip text of an address: buf >= 46 bytes. */
const char *out_ip(int family, const uint8_t *addr, char *buf, unsigned len);

#endif
