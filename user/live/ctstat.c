// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Conntrack table pressure of one network namespace (see ctstat.h).
 *
 * Read from procfs rather than with IPCTNL_MSG_CT_GET_STATS{,_CPU}: the files
 * give the same numbers, netns-correct once opened inside the namespace, and
 * need no netlink request/reply per poll. The sysctl and seq_file handlers
 * both take the namespace from the file, fixed at open, so the worker thread
 * that opened them may be long gone when they are read. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ctstat.h"
#include "ctnl.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_COLS  64     /* the kernel prints 17; room for growth */
#define STAT_BUF  65536  /* 17 columns x 9 bytes per CPU: ~400 CPUs */

static const char *const col_names[CTS_NCOLS] = {
	[CTS_ENTRIES] = "entries", [CTS_CLASHRES] = "clashres", [CTS_FOUND] = "found",
	[CTS_NEW] = "new", [CTS_INVALID] = "invalid", [CTS_INSERT] = "insert",
	[CTS_INSERT_FAILED] = "insert_failed", [CTS_DROP] = "drop",
	[CTS_EARLY_DROP] = "early_drop", [CTS_SEARCH_RESTART] = "search_restart",
};

/* A cursor over the text: the next whitespace-separated token of the current
 * line, without ever reading past end or writing to the text. */
struct cur {
	const char *p, *end;
};

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

/* The next token on this line: 1 and [*tok, *tok + *n), or 0 at the line's end
 * (the newline is not consumed). */
static int next_tok(struct cur *c, const char **tok, size_t *n)
{
	while (c->p < c->end && is_blank(*c->p))
		c->p++;
	if (c->p == c->end || *c->p == '\n')
		return 0;
	*tok = c->p;
	while (c->p < c->end && !is_blank(*c->p) && *c->p != '\n')
		c->p++;
	*n = (size_t)(c->p - *tok);
	return 1;
}

static void next_line(struct cur *c)
{
	while (c->p < c->end && *c->p != '\n')
		c->p++;
	if (c->p < c->end)
		c->p++;
}

static int parse_hex(const char *s, size_t n, uint64_t *v)
{
	uint64_t x = 0;

	if (n == 0 || n > 16) /* 16 hex digits fill a u64: no overflow to check */
		return -1;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		unsigned d;

		if (ch >= '0' && ch <= '9')
			d = ch - '0';
		else if (ch >= 'a' && ch <= 'f')
			d = ch - 'a' + 10;
		else if (ch >= 'A' && ch <= 'F')
			d = ch - 'A' + 10;
		else
			return -1;
		x = x << 4 | d;
	}
	*v = x;
	return 0;
}

/*   entries  clashres found new invalid ignore delete chainlength insert ...
 *   00000021  00000000 00000000 00000000 00000000 00000000 ...      (CPU 0)
 *   00000021  00000000 ...                                          (CPU 1)
 * (net/netfilter/nf_conntrack_standalone.c, ct_cpu_seq_show: "%08x" each;
 * the first column is the namespace's count, the same on every line.) */
int ctstat_parse(const char *text, size_t len, struct ctstat_sums *out)
{
	struct cur c = { text, text + len };
	int map[MAX_COLS];   /* column index -> enum ctstat_col, or -1 */
	size_t ncols = 0, n;
	const char *tok;

	memset(out, 0, sizeof(*out));
	while (next_tok(&c, &tok, &n)) {
		if (ncols == MAX_COLS)
			return -1;
		map[ncols] = -1;
		for (int k = 0; k < CTS_NCOLS; k++) {
			if (strlen(col_names[k]) == n && !memcmp(col_names[k], tok, n)) {
				map[ncols] = k;
				out->have |= 1u << k;
				break;
			}
		}
		ncols++;
	}
	if (ncols == 0)
		return -1;
	next_line(&c);

	while (c.p < c.end) {
		size_t i = 0;
		uint64_t v;

		while (next_tok(&c, &tok, &n)) {
			if (i == ncols || parse_hex(tok, n, &v) < 0)
				return -1;
			if (map[i] == CTS_ENTRIES) {
				if (out->cpus == 0)
					out->v[CTS_ENTRIES] = v;
			} else if (map[i] >= 0) {
				out->v[map[i]] += v; /* wraps only after 2^64 events */
			}
			i++;
		}
		next_line(&c);
		if (i == 0)
			continue; /* an empty line, the last one */
		if (i != ncols)
			return -1;
		out->cpus++;
	}
	return 0;
}

struct ctstat {
	int count_fd, max_fd, stat_fd;
	uint64_t max_override;
	char *buf;
};

struct open_job {
	struct ctstat *s;
	int err;
	const char *what;
};

static void open_files(void *arg)
{
	struct open_job *j = arg;
	static const struct {
		const char *path;
		size_t off;
	} files[] = {
		{ "/proc/sys/net/netfilter/nf_conntrack_count", offsetof(struct ctstat, count_fd) },
		{ "/proc/sys/net/netfilter/nf_conntrack_max", offsetof(struct ctstat, max_fd) },
		/* thread-self: /proc/net follows the thread group leader's
		 * namespace, and the leader is not in this one. */
		{ "/proc/thread-self/net/stat/nf_conntrack", offsetof(struct ctstat, stat_fd) },
	};

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		int fd = open(files[i].path, O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			j->err = errno;
			j->what = files[i].path;
			return;
		}
		memcpy((char *)j->s + files[i].off, &fd, sizeof(fd));
	}
}

struct ctstat *ctstat_open(const char *netns_path, char *why, size_t whylen)
{
	struct ctstat *s = calloc(1, sizeof(*s));
	struct open_job j = { .s = s };

	if (!s || !(s->buf = malloc(STAT_BUF))) {
		snprintf(why, whylen, "%s", strerror(ENOMEM));
		free(s);
		return NULL;
	}
	s->count_fd = s->max_fd = s->stat_fd = -1;
	if (ctnl_in_netns(netns_path, open_files, &j, NULL, why, whylen) < 0) {
		ctstat_close(s);
		return NULL;
	}
	if (j.err) {
		snprintf(why, whylen, "open %s: %s", j.what,
			 j.err == ENOENT ? "no conntrack in this namespace (nf_conntrack not loaded)"
					 : strerror(j.err));
		ctstat_close(s);
		return NULL;
	}
	return s;
}

void ctstat_set_max(struct ctstat *s, uint64_t max)
{
	s->max_override = max;
}

/* The whole file from offset 0, NUL-terminated. Bytes read, or -errno. */
static ssize_t read_all(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	while (got < cap - 1) {
		ssize_t n = pread(fd, buf + got, cap - 1 - got, (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got == cap - 1)
		return -EFBIG;
	buf[got] = 0;
	return (ssize_t)got;
}

static int read_u64(int fd, char *buf, uint64_t *v)
{
	ssize_t n = read_all(fd, buf, 64);

	if (n < 0)
		return (int)n;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = 0;
	return cs_parse_u64(buf, 0, UINT64_MAX, v) < 0 ? -EINVAL : 0;
}

int ctstat_read(struct ctstat *s, struct ctstat_vals *v)
{
	struct ctstat_sums sums;
	ssize_t n;
	int err;

	memset(v, 0, sizeof(*v));
	err = read_u64(s->count_fd, s->buf, &v->count);
	if (!err && !s->max_override)
		err = read_u64(s->max_fd, s->buf, &v->max);
	if (err)
		return err;
	if (s->max_override)
		v->max = s->max_override;
	n = read_all(s->stat_fd, s->buf, STAT_BUF);
	if (n < 0)
		return (int)n;
	if (ctstat_parse(s->buf, (size_t)n, &sums) < 0)
		return -EBADMSG;
	v->drop = sums.v[CTS_DROP];
	v->early_drop = sums.v[CTS_EARLY_DROP];
	v->insert_failed = sums.v[CTS_INSERT_FAILED];
	return 0;
}

void ctstat_close(struct ctstat *s)
{
	if (!s)
		return;
	if (s->count_fd >= 0)
		close(s->count_fd);
	if (s->max_fd >= 0)
		close(s->max_fd);
	if (s->stat_fd >= 0)
		close(s->stat_fd);
	free(s->buf);
	free(s);
}
