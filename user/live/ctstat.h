/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Conntrack table pressure in one network namespace: how full the table is
 * (nf_conntrack_count against nf_conntrack_max) and what conntrack had to give
 * up (drop, early_drop, insert_failed from /proc/net/stat/nf_conntrack,
 * summed over CPUs).
 *
 * Namespaces: nf_conntrack_count and the stat file are per namespace. The
 * limit nf_conntrack_max is one global value: readable everywhere, writable
 * only from the initial namespace, and the kernel holds each namespace's own
 * count against it (nf_conntrack_alloc), so count/max is each namespace's
 * pressure. The files are opened by a thread inside the namespace and stay
 * bound to it; each read is a pread at offset 0.
 */
#ifndef CONNSCOPE_CTSTAT_H
#define CONNSCOPE_CTSTAT_H

#include <stddef.h>
#include <stdint.h>

struct ctstat_vals {
	uint64_t count;          /* entries now */
	uint64_t max;            /* the limit (or the override) */
	uint64_t drop;           /* packets dropped: table full, nothing evictable */
	uint64_t early_drop;     /* entries evicted to make room */
	uint64_t insert_failed;  /* entries that could not be inserted (clashes) */
};

/* Columns of /proc/net/stat/nf_conntrack that the parser knows by name. The
 * set changed across kernels (delete_list became chainlength, clashres was
 * added): a column the header lacks is not in `have`. */
enum ctstat_col {
	CTS_ENTRIES, CTS_CLASHRES, CTS_FOUND, CTS_NEW, CTS_INVALID, CTS_INSERT,
	CTS_INSERT_FAILED, CTS_DROP, CTS_EARLY_DROP, CTS_SEARCH_RESTART,
	CTS_NCOLS
};

struct ctstat_sums {
	uint64_t v[CTS_NCOLS];   /* summed over CPU lines; entries: the first line's,
				    since every line repeats the same count */
	uint32_t have;           /* bit per enum ctstat_col found in the header */
	uint32_t cpus;           /* CPU lines read */
};

/* Parse the text of /proc/net/stat/nf_conntrack: a header line of column
 * names, then one line per possible CPU of hexadecimal values. Pure.
 * Returns 0, or -1 when the text is not such a table (no header, a line with
 * another number of columns, a value that is not hex or overflows). */
int ctstat_parse(const char *text, size_t len, struct ctstat_sums *out);

struct ctstat;

/* Open the namespace's counters (netns_path as for ctnl_open; NULL: our own).
 * NULL with the reason in why. Without conntrack loaded the files are absent. */
struct ctstat *ctstat_open(const char *netns_path, char *why, size_t whylen);
/* Use max instead of nf_conntrack_max (0: read it again). For tests, where
 * the global limit cannot be lowered from inside a namespace. */
void ctstat_set_max(struct ctstat *s, uint64_t max);
/* Read everything now. 0, or a negative errno. */
int ctstat_read(struct ctstat *s, struct ctstat_vals *v);
void ctstat_close(struct ctstat *s);

#endif
