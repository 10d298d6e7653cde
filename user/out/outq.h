/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The stdout writer: whole records go into a bounded in-memory queue and a thread of
 * its own does the write(2)s, so a reader that stops reading (a stalled log pipe)
 * stalls that thread only, never the caller. Lossy mode (live): a record that does
 * not fit is not queued, and counted. Lossless mode (replay): the caller waits for
 * room instead. Bytes go out in the order they were queued, records never split
 * between two writes to a pipe when they fit in PIPE_BUF (a run ended while the
 * reader is stalled leaves no half record in the pipe). */
#ifndef CONNSCOPE_OUTQ_H
#define CONNSCOPE_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

enum outq_type { OUTQ_CONNECTION, OUTQ_FINDING, OUTQ_SUMMARY, OUTQ_STATS, OUTQ_NTYPES };

struct outq_counts {
	uint64_t queued[OUTQ_NTYPES];   /* taken into the queue */
	uint64_t written[OUTQ_NTYPES];  /* written whole */
	uint64_t dropped[OUTQ_NTYPES];  /* not queued: no room, or the writer had failed */
	uint64_t bytes_written;
};

struct outq_conf {
	int fd;
	size_t cap;         /* bytes the queue holds */
	size_t reserve;     /* and more for stats records only: the end record finds room */
	bool lossless;      /* put waits for room instead of dropping */
	size_t batch;       /* the writer starts on this many bytes, or on a kick; 0: 64 KiB */
	size_t chunk;       /* bytes a write carries at most; 0: PIPE_BUF for a pipe, else 256 KiB */
	/* The write; NULL: writev(2) on fd. Tests pass one that writes part. */
	ssize_t (*wr)(void *arg, int fd, const struct iovec *iov, int n);
	void *wr_arg;
};

/* NULL with errno on failure. The writer thread starts with every signal blocked. */
struct outq *outq_new(const struct outq_conf *c);
/* Queue one whole record made of n pieces. false: not queued, counted as dropped. */
bool outq_putv(struct outq *q, enum outq_type t, const struct iovec *iov, int n);
/* The writer writes what is queued now rather than waiting for a batch. */
void outq_kick(struct outq *q);
/* Wait until all that is queued is written, the writer failed, or the monotonic
 * deadline_ns passed (UINT64_MAX: none). 0 once everything is written, else -1. */
int outq_drain(struct outq *q, uint64_t deadline_ns);
bool outq_lossless(const struct outq *q);
/* errno of the write that failed (EPIPE: the reader is gone), or 0. */
int outq_error(struct outq *q);
void outq_counts(struct outq *q, struct outq_counts *c);
/* Stop the writer, abandoning what is not written (a blocked write is cancelled),
 * and free the queue. */
void outq_free(struct outq *q);

extern const char *const outq_type_names[OUTQ_NTYPES];

#endif
