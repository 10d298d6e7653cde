/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The incident view: a per-pod table, problems first. */
#ifndef CONNSCOPE_TOP_H
#define CONNSCOPE_TOP_H

#include <stdint.h>
#include "record.h"
#include "track.h"

struct top_stats {
	uint64_t events, lost, map_full;
	double cpu_ms;
	const char *attach;
	double elapsed_s;
};

/* Keep a finding for the "recent findings" panel. */
void top_note_finding(const struct finding_rec *f);
void top_render(struct tracker *t, const struct top_stats *st, double interval_s, bool final);

#endif
