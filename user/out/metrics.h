/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Prometheus text exposition for `connscope daemon --metrics-addr HOST:PORT`. */
#ifndef CONNSCOPE_METRICS_H
#define CONNSCOPE_METRICS_H

#include <stdint.h>
#include "track.h"

/* The same counters, with the same meaning, as the stats record's fields of the
 * same names. */
struct metrics_self {
	uint64_t events, lost, map_full, parser_desync;
	double cpu_ms;
	/* stats.output_dropped, by type: connection, finding, summary, stats */
	uint64_t output_dropped[4];
};

/* Listen on HOST:PORT (numeric or a name; [v6]:port accepted). -1 with one line on error. */
int metrics_listen(const char *addr);
/* Serve the connections waiting on fd, without blocking for long. */
void metrics_serve(int fd, struct tracker *t, const struct metrics_self *self);

#endif
