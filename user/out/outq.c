// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "outq.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *const outq_type_names[OUTQ_NTYPES] = { "connection", "finding", "summary", "stats" };

/* Where each queued record ends in the byte stream, oldest first: the writer cuts its
 * writes at these ends, and counts a record written once the stream passes its end. */
struct rec_end {
	uint64_t end;
	uint8_t type;
};

struct outq {
	pthread_mutex_t mu;
	pthread_cond_t wake;     /* the writer: work, or closing */
	pthread_cond_t moved;    /* waiters: bytes written, the writer failed or stopped */
	pthread_t thr;
	struct outq_conf c;
	char *buf;               /* ring of size bytes: c.cap, and c.reserve for stats */
	size_t size;
	uint64_t head, tail;     /* stream positions: written up to head, queued up to tail */
	struct rec_end *ends;    /* ring of nends (a power of two) */
	size_t nends;
	uint64_t ehead, etail;
	bool kicked, closing, stopped;
	int err;
	struct outq_counts cnt;
};

static ssize_t plain_writev(void *arg, int fd, const struct iovec *iov, int n)
{
	(void)arg;
	return writev(fd, iov, n);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The bytes [from, to) of the stream as at most two pieces of the ring. */
static int ring_iov(struct outq *q, uint64_t from, uint64_t to, struct iovec iov[2])
{
	size_t off = (size_t)(from % q->size), len = (size_t)(to - from);
	size_t first = q->size - off < len ? q->size - off : len;

	iov[0] = (struct iovec){ q->buf + off, first };
	if (first == len)
		return 1;
	iov[1] = (struct iovec){ q->buf, len - first };
	return 2;
}

/* Where the next write ends: the last record end within a chunk, or the end of
 * the record under way when it alone is bigger. */
static uint64_t chunk_end(struct outq *q)
{
	uint64_t limit = q->head + q->c.chunk, end = 0;

	for (uint64_t i = q->ehead; i != q->etail; i++) {
		uint64_t e = q->ends[i & (q->nends - 1)].end;

		if (e > limit)
			return end ? end : e;
		end = e;
	}
	return end;
}

/* Bytes written: records whose end the stream passed are done. */
static void advance(struct outq *q, size_t n)
{
	q->head += n;
	q->cnt.bytes_written += n;
	while (q->ehead != q->etail && q->ends[q->ehead & (q->nends - 1)].end <= q->head) {
		q->cnt.written[q->ends[q->ehead & (q->nends - 1)].type]++;
		q->ehead++;
	}
}

static void *writer(void *arg)
{
	struct outq *q = arg;

	/* Cancelled only inside a write, where no lock is held (outq_free). */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_mutex_lock(&q->mu);
	for (;;) {
		struct iovec iov[2];
		uint64_t pending = q->tail - q->head, end;
		ssize_t n;
		int niov, e;

		if (q->closing)
			break;
		if (!pending || (!q->kicked && pending < q->c.batch)) {
			if (!pending)
				q->kicked = false;
			pthread_cond_wait(&q->wake, &q->mu);
			continue;
		}
		end = chunk_end(q);
		niov = ring_iov(q, q->head, end, iov);
		pthread_mutex_unlock(&q->mu);
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		n = q->c.wr(q->c.wr_arg, q->c.fd, iov, niov);
		e = errno;
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (n < 0 && e == EAGAIN) {
			/* A non-blocking stdout: wait until it takes more. */
			struct pollfd p = { .fd = q->c.fd, .events = POLLOUT };

			pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
			poll(&p, 1, 1000);
			pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		}
		pthread_mutex_lock(&q->mu);
		if (n < 0 && e != EINTR && e != EAGAIN) {
			q->err = e ? e : EIO;
			break;
		}
		if (n > 0) {
			advance(q, (size_t)n);
			pthread_cond_broadcast(&q->moved);
		}
	}
	q->stopped = true;
	pthread_cond_broadcast(&q->moved);
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

/* What outq_new made, once the writer is gone (or never started). */
static void release(struct outq *q)
{
	pthread_cond_destroy(&q->wake);
	pthread_cond_destroy(&q->moved);
	pthread_mutex_destroy(&q->mu);
	free(q->buf);
	free(q->ends);
	free(q);
}

struct outq *outq_new(const struct outq_conf *c)
{
	struct outq *q = calloc(1, sizeof(*q));
	pthread_condattr_t ca;
	sigset_t all, old;
	struct stat st;
	int rc;

	if (!q)
		return NULL;
	q->c = *c;
	if (!q->c.wr)
		q->c.wr = plain_writev;
	if (!q->c.batch)
		q->c.batch = 64 * 1024;
	if (q->c.batch > q->c.cap)
		q->c.batch = q->c.cap;
	if (!q->c.chunk)
		q->c.chunk = !fstat(c->fd, &st) && S_ISFIFO(st.st_mode) ? PIPE_BUF : 256 * 1024;
	q->nends = 1024;
	q->size = q->c.cap + q->c.reserve;
	q->buf = malloc(q->size ? q->size : 1);
	q->ends = malloc(q->nends * sizeof(*q->ends));
	if (!q->c.cap || !q->buf || !q->ends) {
		free(q->buf);
		free(q->ends);
		free(q);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&q->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->wake, &ca);
	pthread_cond_init(&q->moved, &ca);
	pthread_condattr_destroy(&ca);
	/* Signals stay with the thread that runs the loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&q->thr, NULL, writer, q);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		release(q);
		errno = rc;
		return NULL;
	}
	return q;
}

/* Room for one more record end; false if it cannot grow. */
static bool ends_room(struct outq *q)
{
	struct rec_end *n;

	if (q->etail - q->ehead < q->nends)
		return true;
	n = malloc(2 * q->nends * sizeof(*n));
	if (!n)
		return false;
	for (uint64_t i = q->ehead; i != q->etail; i++)
		n[i & (2 * q->nends - 1)] = q->ends[i & (q->nends - 1)];
	free(q->ends);
	q->ends = n;
	q->nends *= 2;
	return true;
}

bool outq_putv(struct outq *q, enum outq_type t, const struct iovec *iov, int n)
{
	size_t len = 0, room = q->c.cap + (t == OUTQ_STATS ? q->c.reserve : 0);
	struct iovec dst[2];

	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	pthread_mutex_lock(&q->mu);
	if (q->c.lossless) {
		while (!q->err && !q->stopped && len <= room &&
		       (q->tail - q->head > room || room - (q->tail - q->head) < len)) {
			q->kicked = true;
			pthread_cond_signal(&q->wake);
			pthread_cond_wait(&q->moved, &q->mu);
		}
	}
	if (!len || q->err || q->stopped || q->tail - q->head > room ||
	    room - (q->tail - q->head) < len || !ends_room(q)) {
		if (len)
			q->cnt.dropped[t]++;
		pthread_mutex_unlock(&q->mu);
		return !len;
	}
	{
		int nd = ring_iov(q, q->tail, q->tail + len, dst), d = 0;
		size_t doff = 0;

		/* Copy the pieces into the one or two spans of the ring. */
		for (int i = 0; i < n; i++) {
			const char *p = iov[i].iov_base;
			size_t left = iov[i].iov_len;

			while (left && d < nd) {
				size_t k = dst[d].iov_len - doff < left ? dst[d].iov_len - doff : left;

				memcpy((char *)dst[d].iov_base + doff, p, k);
				p += k;
				left -= k;
				doff += k;
				if (doff == dst[d].iov_len) {
					d++;
					doff = 0;
				}
			}
		}
	}
	q->tail += len;
	q->ends[q->etail & (q->nends - 1)] = (struct rec_end){ q->tail, (uint8_t)t };
	q->etail++;
	q->cnt.queued[t]++;
	if (q->tail - q->head >= q->c.batch)
		pthread_cond_signal(&q->wake);
	pthread_mutex_unlock(&q->mu);
	return true;
}

void outq_kick(struct outq *q)
{
	pthread_mutex_lock(&q->mu);
	if (q->tail != q->head) {
		q->kicked = true;
		pthread_cond_signal(&q->wake);
	}
	pthread_mutex_unlock(&q->mu);
}

int outq_drain(struct outq *q, uint64_t deadline_ns)
{
	int rc;

	pthread_mutex_lock(&q->mu);
	q->kicked = true;
	pthread_cond_signal(&q->wake);
	while (q->tail != q->head && !q->err && !q->stopped) {
		struct timespec ts;

		if (deadline_ns == UINT64_MAX) {
			pthread_cond_wait(&q->moved, &q->mu);
			continue;
		}
		if (now_ns() >= deadline_ns)
			break;
		ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
		ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
		pthread_cond_timedwait(&q->moved, &q->mu, &ts);
	}
	rc = q->tail == q->head ? 0 : -1;
	pthread_mutex_unlock(&q->mu);
	return rc;
}

bool outq_lossless(const struct outq *q)
{
	return q->c.lossless;
}

int outq_error(struct outq *q)
{
	int e;

	pthread_mutex_lock(&q->mu);
	e = q->err;
	pthread_mutex_unlock(&q->mu);
	return e;
}

void outq_counts(struct outq *q, struct outq_counts *c)
{
	pthread_mutex_lock(&q->mu);
	*c = q->cnt;
	pthread_mutex_unlock(&q->mu);
}

void outq_free(struct outq *q)
{
	bool stopped;

	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	q->closing = true;
	pthread_cond_signal(&q->wake);
	stopped = q->stopped;
	pthread_mutex_unlock(&q->mu);
	/* A write the reader does not take would never return. */
	if (!stopped)
		pthread_cancel(q->thr);
	pthread_join(q->thr, NULL);
	release(q);
}
