// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Socket inode -> owning processes, through the links in /proc/<pid>/fd.
 *
 * A socket fd reads back as the link "socket:[<inode>]". /proc lists only
 * thread-group leaders, so every pid seen here is a thread-group id. Processes
 * and fds vanish while we scan; every such failure just skips the entry. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "procfd.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The process being scanned; comm is read only when one of its fds matches. */
struct proc_cur {
	uint32_t pid;
	int dirfd;   /* /proc/<pid> */
	bool have_comm;
	char comm[16];
};

/* Called for each socket fd. Returns true to stop the whole scan. */
typedef bool (*sock_fn)(void *ctx, uint64_t ino, uint32_t fd, struct proc_cur *pc);

static const char *proc_comm(struct proc_cur *pc)
{
	ssize_t n;
	int fd;

	if (pc->have_comm)
		return pc->comm;
	pc->have_comm = true;
	pc->comm[0] = '\0';
	fd = openat(pc->dirfd, "comm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pc->comm;
	n = read(fd, pc->comm, sizeof(pc->comm) - 1);
	close(fd);
	if (n < 0)
		n = 0;
	pc->comm[n] = '\0';
	pc->comm[strcspn(pc->comm, "\n")] = '\0';
	return pc->comm;
}

static void set_owner(struct sock_owner *o, struct proc_cur *pc, uint32_t fd)
{
	o->pid = pc->pid;
	o->fd = fd;
	memcpy(o->comm, proc_comm(pc), sizeof(o->comm));
}

/* "socket:[12345]" -> 12345. Anything else (pipes, files, "anon_inode:...")
 * or a malformed number returns false. */
static bool parse_socket_link(const char *s, uint64_t *ino)
{
	static const char pfx[] = "socket:[";
	uint64_t v = 0;

	if (strncmp(s, pfx, sizeof(pfx) - 1) != 0)
		return false;
	s += sizeof(pfx) - 1;
	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (s[0] != ']' || s[1] != '\0')
		return false;
	*ino = v;
	return true;
}

/* Scan the fds of one process; true if fn asked to stop. */
static bool scan_pid(struct proc_cur *pc, sock_fn fn, void *ctx)
{
	struct dirent *de;
	bool stop = false;
	char link[64];
	DIR *d;
	int fd;

	fd = openat(pc->dirfd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return false;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return false;
	}
	while (!stop && (de = readdir(d))) {
		uint64_t ino, fdno;
		ssize_t n;

		if (de->d_type != DT_LNK && de->d_type != DT_UNKNOWN)
			continue;
		n = readlinkat(dirfd(d), de->d_name, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (parse_socket_link(link, &ino) &&
		    !cs_parse_u64(de->d_name, 0, INT32_MAX, &fdno))
			stop = fn(ctx, ino, (uint32_t)fdno, pc);
	}
	closedir(d);
	return stop;
}

/* One pass over /proc. 0, or -1 with a cs_fail line if /proc cannot be read. */
static int scan_proc(sock_fn fn, void *ctx)
{
	struct dirent *de;
	DIR *proc;

	proc = opendir("/proc");
	if (!proc) {
		cs_fail("open /proc", "%s", strerror(errno));
		return -1;
	}
	while ((de = readdir(proc))) {
		struct proc_cur pc = { 0 };
		uint64_t pid;
		bool stop;

		if (cs_parse_u64(de->d_name, 1, UINT32_MAX, &pid) < 0)
			continue;
		pc.pid = (uint32_t)pid;
		pc.dirfd = openat(dirfd(proc), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pc.dirfd < 0)
			continue;
		stop = scan_pid(&pc, fn, ctx);
		close(pc.dirfd);
		if (stop)
			break;
	}
	closedir(proc);
	return 0;
}

struct one_ctx {
	uint64_t ino;
	struct sock_owner *out;
	int max, n;
};

static bool one_fn(void *arg, uint64_t ino, uint32_t fd, struct proc_cur *pc)
{
	struct one_ctx *c = arg;

	if (ino != c->ino)
		return false;
	/* One entry per process, even if it holds the socket in several fds. */
	if (c->n > 0 && c->out[c->n - 1].pid == pc->pid)
		return false;
	set_owner(&c->out[c->n++], pc, fd);
	return c->n == c->max;
}

int procfd_lookup(uint64_t ino, struct sock_owner *out, int max)
{
	struct one_ctx c = { .ino = ino, .out = out, .max = max };

	if (max <= 0 || !out)
		return max == 0 ? 0 : -1;
	if (ino == 0) /* orphaned socket: nobody holds it */
		return 0;
	if (scan_proc(one_fn, &c) < 0)
		return -1;
	return c.n;
}

struct want {
	uint64_t ino;
	int idx;
};

struct many_ctx {
	struct want *w;      /* sorted by ino */
	int nw;
	struct sock_owner *owners;
	int left;            /* wanted entries still without an owner */
};

static int cmp_want(const void *a, const void *b)
{
	const struct want *x = a, *y = b;

	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->idx - y->idx;
}

static int cmp_key(const void *key, const void *elem)
{
	uint64_t k = *(const uint64_t *)key, e = ((const struct want *)elem)->ino;

	return k < e ? -1 : k > e;
}

static bool many_fn(void *arg, uint64_t ino, uint32_t fd, struct proc_cur *pc)
{
	struct many_ctx *c = arg;
	struct want *w = bsearch(&ino, c->w, c->nw, sizeof(*w), cmp_key);

	if (!w)
		return false;
	while (w > c->w && w[-1].ino == ino) /* the same inode may be asked twice */
		w--;
	for (; w < c->w + c->nw && w->ino == ino; w++) {
		if (c->owners[w->idx].pid)
			continue;
		set_owner(&c->owners[w->idx], pc, fd);
		c->left--;
	}
	return c->left == 0;
}

int procfd_lookup_many(const uint64_t *inos, struct sock_owner *owners, int n)
{
	struct many_ctx c = { .owners = owners };
	int i, found = 0;

	if (n <= 0)
		return n == 0 ? 0 : -1;
	if (!inos || !owners)
		return -1;
	memset(owners, 0, (size_t)n * sizeof(*owners));
	c.w = malloc((size_t)n * sizeof(*c.w));
	if (!c.w) {
		cs_fail("look up socket owners", "%s", strerror(ENOMEM));
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (inos[i] == 0) /* orphaned: never matches */
			continue;
		c.w[c.nw].ino = inos[i];
		c.w[c.nw].idx = i;
		c.nw++;
	}
	c.left = c.nw;
	qsort(c.w, c.nw, sizeof(*c.w), cmp_want);
	if (c.nw && scan_proc(many_fn, &c) < 0) {
		free(c.w);
		return -1;
	}
	free(c.w);
	for (i = 0; i < n; i++)
		found += owners[i].pid != 0;
	return found;
}
