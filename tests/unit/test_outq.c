// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The stdout writer's queue (user/out/outq.c): a full queue drops and counts and
 * never blocks, bytes keep their order through partial writes, a write to a pipe
 * ends at a record end, a stalled reader bounds the drain by its deadline, a gone
 * reader is an error. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include "check.h"
#include "output.h"
#include "outq.h"

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A stdout in memory that takes at most `most` bytes a call, fails now and then
 * with EINTR, and can hold every call until opened. */
struct sink {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool gate_closed;
	int calls, entered;
	size_t most;
	char *buf;
	size_t len, cap;
	size_t sizes[4096];
	int nsizes;
};

static ssize_t sink_wr(void *arg, int fd, const struct iovec *iov, int n)
{
	struct sink *s = arg;
	size_t took = 0;

	(void)fd;
	pthread_mutex_lock(&s->mu);
	s->entered++;
	pthread_cond_broadcast(&s->cv);
	while (s->gate_closed)
		pthread_cond_wait(&s->cv, &s->mu);
	if (++s->calls % 5 == 0) {
		pthread_mutex_unlock(&s->mu);
		errno = EINTR;
		return -1;
	}
	for (int i = 0; i < n && took < s->most; i++) {
		size_t k = iov[i].iov_len < s->most - took ? iov[i].iov_len : s->most - took;

		if (s->len + k > s->cap) {
			s->cap = (s->len + k) * 2;
			s->buf = realloc(s->buf, s->cap);
		}
		memcpy(s->buf + s->len, iov[i].iov_base, k);
		s->len += k;
		took += k;
	}
	if (s->nsizes < 4096)
		s->sizes[s->nsizes++] = took;
	pthread_mutex_unlock(&s->mu);
	return (ssize_t)took;
}

static void sink_init(struct sink *s, size_t most, bool closed)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->most = most;
	s->gate_closed = closed;
}

static void sink_open(struct sink *s)
{
	pthread_mutex_lock(&s->mu);
	s->gate_closed = false;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static bool put(struct outq *q, enum outq_type t, const char *rec, size_t n)
{
	struct iovec iov[2] = { { (void *)rec, n }, { "\n", 1 } };

	return outq_putv(q, t, iov, 2);
}

/* Record i: its number and a filler of a length that varies, then the newline. */
static size_t make_rec(char *buf, size_t cap, int i)
{
	size_t fill = (size_t)((i * 7919) % 900), n;

	n = (size_t)snprintf(buf, cap, "{\"n\":%d,\"f\":\"", i);
	memset(buf + n, 'a' + i % 26, fill);
	n += fill;
	n += (size_t)snprintf(buf + n, cap - n, "\"}");
	return n;
}

static void test_full_queue_drops(void)
{
	struct sink s;
	struct outq_conf c = { .fd = -1, .cap = 1000, .reserve = 150, .batch = 1, .wr = sink_wr,
			       .wr_arg = &s };
	struct outq_counts k;
	struct outq *q;
	char rec[99];
	uint64_t t0, worst = 0;
	int accepted = 0;

	sink_init(&s, SIZE_MAX, true);
	q = outq_new(&c);
	check(q != NULL, "outq_new");
	memset(rec, 'x', sizeof(rec));
	/* The writer holds its first write: nothing leaves the queue. */
	for (int i = 0; i < 30; i++) {
		t0 = mono_ns();
		accepted += put(q, i % 2 ? OUTQ_FINDING : OUTQ_CONNECTION, rec, sizeof(rec));
		if (mono_ns() - t0 > worst)
			worst = mono_ns() - t0;
	}
	check(!put(q, OUTQ_SUMMARY, rec, sizeof(rec)), "a full queue takes no summary record");
	check(put(q, OUTQ_STATS, rec, sizeof(rec)), "a stats record takes the reserve");
	check(!put(q, OUTQ_STATS, rec, sizeof(rec)), "a second one finds the reserve taken");
	outq_counts(q, &k);
	check(accepted == 10, "10 records of 100 bytes fit 1000 bytes (%d)", accepted);
	check(k.dropped[OUTQ_CONNECTION] == 10 && k.dropped[OUTQ_FINDING] == 10 &&
	      k.dropped[OUTQ_STATS] == 1 && k.dropped[OUTQ_SUMMARY] == 1,
	      "drops counted per type: connection %llu finding %llu stats %llu summary %llu",
	      (unsigned long long)k.dropped[OUTQ_CONNECTION],
	      (unsigned long long)k.dropped[OUTQ_FINDING], (unsigned long long)k.dropped[OUTQ_STATS],
	      (unsigned long long)k.dropped[OUTQ_SUMMARY]);
	check(worst < 50000000ull, "a put never waits for the writer (slowest %.3f ms)", worst / 1e6);
	sink_open(&s);
	check(outq_drain(q, mono_ns() + 5000000000ull) == 0, "drained once the writer goes on");
	outq_counts(q, &k);
	check(k.written[OUTQ_CONNECTION] == 5 && k.written[OUTQ_FINDING] == 5 &&
	      k.written[OUTQ_STATS] == 1 && s.len == 1100,
	      "the 11 queued records written whole (%zu bytes)", s.len);
	check(put(q, OUTQ_STATS, rec, sizeof(rec)) && outq_drain(q, mono_ns() + 5000000000ull) == 0,
	      "room again: a record is taken");
	outq_free(q);
	free(s.buf);
}

/* Lossless, a small queue, a writer that takes 7 bytes a call and fails with EINTR
 * every fifth: every byte arrives, in order. */
static void test_order_partial_writes(size_t most, size_t chunk)
{
	struct sink s;
	struct outq_conf c = { .fd = -1, .cap = 4096, .lossless = true, .chunk = chunk,
			       .wr = sink_wr, .wr_arg = &s };
	struct outq_counts k;
	struct outq *q;
	char *want = malloc(2000 * 1000), rec[1100];
	size_t wlen = 0;
	bool ends_ok = true;

	sink_init(&s, most, false);
	q = outq_new(&c);
	for (int i = 0; i < 2000; i++) {
		size_t n = make_rec(rec, sizeof(rec), i);

		memcpy(want + wlen, rec, n);
		want[wlen + n] = '\n';
		wlen += n + 1;
		if (!put(q, (enum outq_type)(i % OUTQ_NTYPES), rec, n))
			check(false, "lossless put %d refused", i);
		if (i % 100 == 0)
			outq_kick(q);
	}
	check(outq_drain(q, UINT64_MAX) == 0, "drained (writes take %s%zu bytes, cut at %zu)",
	      most == SIZE_MAX ? "all, " : "at most ", most == SIZE_MAX ? (size_t)0 : most, chunk);
	outq_counts(q, &k);
	check(s.len == wlen && !memcmp(s.buf, want, wlen),
	      "bytes and order kept through partial writes (%zu of %zu bytes)", s.len, wlen);
	check(k.written[0] + k.written[1] + k.written[2] + k.written[3] == 2000 &&
	      k.queued[0] == 500 && k.written[0] == 500,
	      "every record counted written, none dropped");
	/* Full writes of whole records end at a newline. */
	if (most == SIZE_MAX) {
		size_t off = 0;

		for (int i = 0; i < s.nsizes; i++) {
			off += s.sizes[i];
			if (s.sizes[i] > chunk && s.sizes[i] > 1100)
				ends_ok = false;
			if (off && s.buf[off - 1] != '\n')
				ends_ok = false;
		}
		check(ends_ok, "each of %d writes ends at a record end, none over %zu bytes "
		      "unless one record is", s.nsizes, chunk);
	}
	outq_free(q);
	free(s.buf);
	free(want);
}

/* A pipe nobody reads: the drain returns at its deadline, the blocked write is
 * cancelled, and the pipe holds whole records only. */
static void test_flush_deadline(void)
{
	struct outq_conf c = { .cap = 1 << 20 };
	struct outq_counts k;
	struct outq *q;
	int p[2];
	char rec[1100], *got;
	uint64_t t0, took;
	ssize_t n;
	size_t len = 0;
	bool whole = true;

	if (pipe(p))
		abort();
	c.fd = p[1];
	q = outq_new(&c);
	for (int i = 0; i < 400; i++) {
		size_t m = make_rec(rec, sizeof(rec), i);

		put(q, OUTQ_CONNECTION, rec, m);
	}
	t0 = mono_ns();
	check(outq_drain(q, t0 + 200000000ull) == -1, "a stalled pipe: the drain gives up");
	took = mono_ns() - t0;
	check(took >= 190000000ull && took < 1000000000ull, "at its deadline (%.1f ms of 200)",
	      took / 1e6);
	outq_counts(q, &k);
	check(k.written[OUTQ_CONNECTION] > 0 && k.written[OUTQ_CONNECTION] < 400,
	      "part written (%llu of 400): the pipe is full",
	      (unsigned long long)k.written[OUTQ_CONNECTION]);
	t0 = mono_ns();
	outq_free(q);
	check(mono_ns() - t0 < 500000000ull, "freed with a write blocked (%.1f ms)",
	      (mono_ns() - t0) / 1e6);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	got = malloc(1 << 20);
	while ((n = read(p[0], got + len, (1 << 20) - len)) > 0)
		len += (size_t)n;
	for (size_t i = 0, start = 0; i < len; i++) {
		if (got[i] != '\n')
			continue;
		if (got[start] != '{' || got[i - 1] != '}')
			whole = false;
		start = i + 1;
	}
	check(len > 0 && got[len - 1] == '\n' && whole,
	      "the pipe holds %zu bytes of whole records, no half record", len);
	check(len == k.bytes_written, "the bytes counted written are those in the pipe");
	free(got);
	close(p[0]);
	close(p[1]);
}

/* The reader is gone: EPIPE, and what comes after is dropped and counted. */
static void test_reader_gone(void)
{
	struct outq_conf c = { .cap = 4096 };
	struct outq_counts k;
	struct outq *q;
	int p[2];

	signal(SIGPIPE, SIG_IGN);
	if (pipe(p))
		abort();
	close(p[0]);
	c.fd = p[1];
	q = outq_new(&c);
	put(q, OUTQ_STATS, "{}", 2);
	outq_drain(q, mono_ns() + 2000000000ull);
	check(outq_error(q) == EPIPE, "a closed pipe is EPIPE (%d)", outq_error(q));
	check(!put(q, OUTQ_FINDING, "{}", 2), "no record taken once the writer failed");
	outq_counts(q, &k);
	check(k.dropped[OUTQ_FINDING] == 1 && k.queued[OUTQ_STATS] == 1 && k.written[OUTQ_STATS] == 0,
	      "the unwritten stats record and the dropped finding counted");
	outq_free(q);
	close(p[1]);
}

/* The output layer on a stdout nobody reads: stats records beyond the queue are
 * counted in the next one's output_dropped, out_close keeps to its deadline, and
 * stderr says what was dropped and what was not written. */
static void test_output_close_on_stalled_stdout(void)
{
	struct stats_rec st = { .phase = "interval", .attach = "tp_btf", .holders = "x" };
	int out[2], err[2], save_out = dup(1), save_err = dup(2);
	char msg[2048] = "";
	uint64_t t0, took;
	ssize_t n;
	int rc;

	if (pipe(out) || pipe(err))
		abort();
	fflush(stdout);
	dup2(out[1], 1);
	dup2(err[1], 2);
	out_init_live(FMT_JSON, false, 4096);
	for (int i = 0; i < 400; i++) {
		out_dropped(&st);
		out_stats(&st);
	}
	out_flush();
	out_dropped(&st);
	t0 = mono_ns();
	rc = out_close(t0 + 300000000ull, 1000000000ull, NULL, 0);
	took = mono_ns() - t0;
	fflush(stderr);
	dup2(save_out, 1);
	dup2(save_err, 2);
	close(save_out);
	close(save_err);
	fcntl(err[0], F_SETFL, O_NONBLOCK);
	n = read(err[0], msg, sizeof(msg) - 1);
	msg[n > 0 ? n : 0] = 0;
	check(rc == -1 && took >= 290000000ull && took < 1000000000ull,
	      "out_close gives up on a stalled stdout at its deadline (%.1f ms of 300)", took / 1e6);
	check(st.output_dropped.stats > 0 && st.output_dropped.connection == 0,
	      "output_dropped counts the stats records that found no room (%llu)",
	      (unsigned long long)st.output_dropped.stats);
	check(strstr(msg, "dropped") && strstr(msg, "queued but not written") &&
	      strstr(msg, "connection=0 finding=0 summary=0 stats="),
	      "stderr says what was dropped and what was not written: %s", msg);
	close(out[0]);
	close(out[1]);
	close(err[0]);
	close(err[1]);
}

int main(void)
{
	test_full_queue_drops();
	test_order_partial_writes(7, 4096);
	test_order_partial_writes(SIZE_MAX, 4096);
	test_order_partial_writes(SIZE_MAX, 100);
	test_flush_deadline();
	test_reader_gone();
	test_output_close_on_stalled_stdout();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
