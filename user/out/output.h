/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Records out: JSON lines (one writer, user/jsonw.c) or aligned text columns, on
 * stdout only: typed records (user/agg/record.h), each with its schema here alone. */
#ifndef CONNSCOPE_OUTPUT_H
#define CONNSCOPE_OUTPUT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
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

/* Replay: records wait for room in the writer's queue; out_flush returns once what
 * was queued is written. */
void out_init(enum cs_fmt fmt, bool text_header);
/* Live: a queue of queue_bytes that never blocks its caller; a record it cannot take
 * is dropped and counted (out_dropped). out_flush wakes the writer and returns. */
void out_init_live(enum cs_fmt fmt, bool text_header, size_t queue_bytes);
void out_flush(void);
/* The reader of stdout is gone (a write failed, e.g. EPIPE). */
bool out_failed(void);
/* The stats record's output_dropped: records not written, by type, so far. */
void out_dropped(struct stats_rec *s);
/* One line or two on fd (stderr) if records were dropped or are queued but not
 * written ("why"); 0 if none were, else -1. Safe from another thread. */
int out_report(int fd, const char *why);
/* End: wait for the writer until the monotonic deadline_ns, or until it wrote
 * nothing for idle_ns, or cut_ns after *cut is set; report as out_report does and
 * stop the writer. 0 if every record was written. */
int out_close(uint64_t deadline_ns, uint64_t idle_ns, volatile const sig_atomic_t *cut,
	      uint64_t cut_ns);
/* Milliseconds with microsecond precision, as JSON numbers. */
double out_ms(uint64_t ns);

/* ip text of an address: buf >= 46 bytes. */
const char *out_ip(int family, const uint8_t *addr, char *buf, unsigned len);

#endif
