/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The conntrack watcher in use (BPF netfilter link or ctnetlink) and the table's
 * pressure, fed to the tracker (user/live/ctwatch.c). */
#ifndef CONNSCOPE_CTWATCH_H
#define CONNSCOPE_CTWATCH_H

#include <stdint.h>
#include "opts.h"

struct tracker;
struct ctwatch;

/* Never NULL unless out of memory: a watcher that could not start says why in
 * ctwatch_describe and does nothing. */
struct ctwatch *ctwatch_open(const struct cs_opts *o, struct tracker *t);
/* Drain ready edges into the tracker; read the table's fill once a second. */
void ctwatch_poll(struct ctwatch *w);
/* An fd that becomes readable when edges wait (for the caller's epoll), or -1. */
int ctwatch_fd(const struct ctwatch *w);
/* map_evictions: entries the BPF program's bounded map had to let go of. */
void ctwatch_counters(const struct ctwatch *w, uint64_t *events, uint64_t *lost,
		      uint64_t *map_full, uint64_t *map_evictions);
/* Quiet: ctnetlink GETs made for records' NAT, and those the rate bound skipped
 * (each a record whose nat stayed null). */
void ctwatch_nat_gets(const struct ctwatch *w, uint64_t *gets, uint64_t *skipped);
/* "BPF netfilter link in ...: hooks ...", "ctnetlink events in ...", "NOT observed: why". */
const char *ctwatch_describe(const struct ctwatch *w);
void ctwatch_close(struct ctwatch *w);

#endif
