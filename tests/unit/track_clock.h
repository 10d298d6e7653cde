/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* What the tracker's unit tests share: an injected clock, moved by hand through
 * now_ns, whose wall-clock time is far from the machine's (so a record stamped
 * from any other clock shows), and one pod for every cgroup (replay's way, so no
 * cgroup2 is needed). */
#ifndef CONNSCOPE_TEST_TRACK_CLOCK_H
#define CONNSCOPE_TEST_TRACK_CLOCK_H

#include "track.h"

#define SEC 1000000000ull
#define REAL_OFFSET (1000000 * SEC)

static uint64_t now_ns;

static uint64_t test_clock(void *arg)
{
	(void)arg;
	return now_ns;
}

static uint64_t test_real(void *arg, uint64_t mono)
{
	(void)arg;
	return mono + REAL_OFFSET;
}

static const struct pod_info *test_pod(void *arg, uint64_t id)
{
	static struct pod_info p = { .ip = "10.0.0.1" };

	(void)arg;
	(void)id;
	return &p;
}

/* A tracker on the test's clock and pod, records to sink. */
static inline struct tracker *test_tracker(const struct cs_opts *o, bool want_conns,
					   const struct track_sink *sink)
{
	struct tracker *t = track_new(o, NULL, want_conns, sink, NULL);

	if (!t)
		abort();
	track_set_replay(t, test_pod, NULL, NULL, 0);
	track_set_clock(t, &(struct track_clock){ test_clock, test_real, NULL });
	return t;
}

#endif
