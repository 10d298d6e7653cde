// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Snapshot of the TCP sockets that already exist, in every network namespace.
 *
 * The calling thread dumps its own namespace. A short-lived worker thread then
 * enters each other namespace in turn with setns(CLONE_NEWNET), which changes
 * only that thread, and dumps it there: a netlink socket lists the sockets of
 * the namespace it was created in. The worker exits when done, so no thread of
 * the process is ever left in a foreign namespace. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "snapshot.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>

#define MAX_NETNS   4096
#define RECV_BUF    (128 * 1024) /* the kernel fills dump skbs up to 32 KiB */
#define RECV_TMO_S  5

/* Kernel TCP state numbers (include/net/tcp_states.h). */
enum {
	ST_LISTEN       = 10,
	ST_NEW_SYN_RECV = 12, /* request socks; reported as SYN_RECV */
};
/* idiag_states is a bit mask indexed by state. Everything from ESTABLISHED (1)
 * to NEW_SYN_RECV (12) but LISTEN. TCP_BOUND_INACTIVE (13, bound but never
 * connected or listening) is left out on purpose: it is not a connection. */
#define WANTED_STATES (((1u << (ST_NEW_SYN_RECV + 1)) - 1) & ~1u & ~(1u << ST_LISTEN))

struct sock_vec {
	struct snap_sock *v;
	size_t n, cap;
};

struct scan {
	uint32_t states;          /* idiag_states: the TCP states dumped */
	struct sock_vec out;
	unsigned char *buf;       /* RECV_BUF bytes */
	uint32_t seq;
	dev_t nsfs_dev;           /* every netns file lives on the one nsfs */
	uint64_t seen[MAX_NETNS]; /* sorted netns inodes already dumped */
	size_t nseen;
	bool capped;
	int err;                  /* ENOMEM in the worker: the whole call fails */
};

static int vec_push(struct sock_vec *a, const struct snap_sock *s)
{
	if (a->n >= INT_MAX) /* the count is returned as an int */
		return -ENOMEM;
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 256;
		struct snap_sock *v = realloc(a->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = *s;
	return 0;
}

/* Netlink attributes after the fixed inet_diag_msg, each 4-byte aligned:
 *   struct nlattr { u16 nla_len;  header + payload, unpadded
 *                   u16 nla_type; } payload[nla_len - 4], pad to 4
 * Payloads are copied out: a u64 inside is not 8-byte aligned in our buffer. */
static void parse_attrs(const unsigned char *p, size_t len, struct snap_sock *s)
{
	while (len >= NLA_HDRLEN) {
		struct nlattr a;
		size_t plen, step;
		const unsigned char *pl = p + NLA_HDRLEN;

		memcpy(&a, p, sizeof(a));
		if (a.nla_len < NLA_HDRLEN || a.nla_len > len)
			return; /* malformed: keep what was read so far */
		plen = a.nla_len - NLA_HDRLEN;

		switch (a.nla_type & NLA_TYPE_MASK) {
		case INET_DIAG_INFO: {
			/* struct tcp_info grew over the years: read a field only
			 * if the kernel's copy reaches its end. */
			struct tcp_info ti;

			memset(&ti, 0, sizeof(ti));
			memcpy(&ti, pl, plen < sizeof(ti) ? plen : sizeof(ti));
#define HAS(f) (plen >= offsetof(struct tcp_info, f) + sizeof(ti.f))
			if (HAS(tcpi_last_data_recv))
				s->last_data_recv_ms = ti.tcpi_last_data_recv;
			if (HAS(tcpi_last_ack_recv))
				s->last_ack_recv_ms = ti.tcpi_last_ack_recv;
			if (HAS(tcpi_bytes_acked))
				s->bytes_acked = ti.tcpi_bytes_acked;
			if (HAS(tcpi_bytes_received))
				s->bytes_received = ti.tcpi_bytes_received;
#undef HAS
			break;
		}
		case INET_DIAG_CGROUP_ID: /* u64, kernel >= 5.7, full sockets only */
			if (plen == sizeof(uint64_t))
				memcpy(&s->cgroup_id, pl, sizeof(uint64_t));
			break;
		}
		step = NLA_ALIGN(a.nla_len);
		if (step >= len)
			return;
		p += step;
		len -= step;
	}
}

/* One SOCK_DIAG_BY_FAMILY reply:
 *   struct nlmsghdr
 *   struct inet_diag_msg { u8 family, state, timer, retrans;
 *       struct inet_diag_sockid { be16 sport, dport; be32 src[4], dst[4];
 *                                 u32 if; u32 cookie[2]; };
 *       u32 expires, rqueue, wqueue, uid, inode; }
 *   attributes (see parse_attrs)
 * Returns 0 (including for a reply skipped as malformed) or -ENOMEM. */
static int parse_sock(const struct nlmsghdr *nlh, uint32_t netns, struct sock_vec *out)
{
	const unsigned char *p = NLMSG_DATA(nlh);
	size_t len = nlh->nlmsg_len - NLMSG_HDRLEN; /* NLMSG_OK checked >= header */
	struct inet_diag_msg m;
	struct snap_sock s;
	size_t alen;

	if (len < sizeof(m))
		return 0;
	memcpy(&m, p, sizeof(m));
	if (m.idiag_family == AF_INET)
		alen = 4;
	else if (m.idiag_family == AF_INET6)
		alen = 16;
	else
		return 0;

	memset(&s, 0, sizeof(s));
	s.family = m.idiag_family;
	s.state = m.idiag_state;
	s.sport = ntohs(m.id.idiag_sport);
	s.dport = ntohs(m.id.idiag_dport);
	memcpy(s.saddr, m.id.idiag_src, alen);
	memcpy(s.daddr, m.id.idiag_dst, alen);
	s.cookie = m.id.idiag_cookie[0] | (uint64_t)m.id.idiag_cookie[1] << 32;
	s.ino = m.idiag_inode;
	s.uid = m.idiag_uid;
	s.netns = netns;
	if (len > NLMSG_ALIGN(sizeof(m)))
		parse_attrs(p + NLMSG_ALIGN(sizeof(m)), len - NLMSG_ALIGN(sizeof(m)), &s);
	return vec_push(out, &s);
}

/* One message of a reply to request seq. Returns 1 when the dump is over,
 * 0 to go on, or a negative errno. */
static int handle_msg(const struct nlmsghdr *nlh, uint32_t seq, uint32_t netns,
		      struct scan *sc)
{
	int st = 0;

	if (nlh->nlmsg_seq != seq)
		return 0; /* a stale reply to an earlier request */
	switch (nlh->nlmsg_type) {
	case NLMSG_DONE: /* payload: int, the dump's status */
		if (nlh->nlmsg_len >= NLMSG_LENGTH(sizeof(int)))
			memcpy(&st, NLMSG_DATA(nlh), sizeof(int));
		return st < 0 ? st : 1;
	case NLMSG_ERROR: /* struct nlmsgerr { int error; struct nlmsghdr request; } */
		if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(int)))
			return -EBADMSG;
		memcpy(&st, NLMSG_DATA(nlh), sizeof(int));
		if (st == 0)
			return 0; /* an ACK: not asked for, harmless */
		return st < 0 ? st : -EBADMSG;
	case SOCK_DIAG_BY_FAMILY:
		return parse_sock(nlh, netns, &sc->out);
	}
	return 0;
}

/* Dump one address family of TCP through fd. Request:
 *   struct nlmsghdr       { len, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST|NLM_F_DUMP, seq, 0 }
 *   struct inet_diag_req_v2 { family, IPPROTO_TCP, idiag_ext, pad, states, id = 0 }
 * The kernel answers with datagrams, each holding whole messages at 4-byte
 * aligned offsets: a run of SOCK_DIAG_BY_FAMILY replies ended by NLMSG_DONE,
 * or an NLMSG_ERROR. Returns 0 or a negative errno. */
static int dump_family(int fd, int family, uint32_t netns, struct scan *sc)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} rq;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	uint32_t seq = ++sc->seq;
	ssize_t n;

	memset(&rq, 0, sizeof(rq));
	rq.nlh.nlmsg_len = sizeof(rq);
	rq.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	rq.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	rq.nlh.nlmsg_seq = seq;
	rq.req.sdiag_family = family;
	rq.req.sdiag_protocol = IPPROTO_TCP;
	/* INET_DIAG_CGROUP_ID (21) needs no bit here, nor could it have one in
	 * this u8: the kernel adds it to every full socket. */
	rq.req.idiag_ext = 1 << (INET_DIAG_INFO - 1);
	rq.req.idiag_states = sc->states;

	do
		n = sendto(fd, &rq, sizeof(rq), 0, (struct sockaddr *)&kernel, sizeof(kernel));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;

	for (;;) {
		struct sockaddr_nl from;
		struct iovec iov = { sc->buf, RECV_BUF };
		struct msghdr mh = {
			.msg_name = &from, .msg_namelen = sizeof(from),
			.msg_iov = &iov, .msg_iovlen = 1,
		};
		const unsigned char *p = sc->buf;
		size_t left;

		n = recvmsg(fd, &mh, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (n == 0)
			return -ENODATA;
		if (mh.msg_flags & MSG_TRUNC)
			return -EMSGSIZE;
		if (mh.msg_namelen < sizeof(from) || from.nl_pid != 0)
			continue; /* not from the kernel */

		for (left = (size_t)n; left > 0;) {
			const struct nlmsghdr *nlh = (const void *)p; /* 4-aligned */
			size_t step;
			int ret;

			if (left < NLMSG_HDRLEN || nlh->nlmsg_len < NLMSG_HDRLEN ||
			    nlh->nlmsg_len > left)
				return -EBADMSG; /* a message cut short */
			ret = handle_msg(nlh, seq, netns, sc);
			if (ret)
				return ret < 0 ? ret : 0;
			step = NLMSG_ALIGN(nlh->nlmsg_len);
			if (step >= left)
				break;
			p += step;
			left -= step;
		}
	}
}

/* Dump IPv4 and IPv6 TCP of the calling thread's namespace. 0 or negative errno. */
static int dump_netns(uint32_t netns, struct scan *sc)
{
	struct timeval tmo = { .tv_sec = RECV_TMO_S };
	int fd, err;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
	err = dump_family(fd, AF_INET, netns, sc);
	if (!err) {
		err = dump_family(fd, AF_INET6, netns, sc);
		/* No IPv6 in this kernel (or no inet6 diag handler): nothing to list. */
		if (err == -ENOENT || err == -EAFNOSUPPORT || err == -EOPNOTSUPP)
			err = 0;
	}
	close(fd);
	return err;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static bool seen(const struct scan *sc, uint64_t ino)
{
	return bsearch(&ino, sc->seen, sc->nseen, sizeof(ino), cmp_u64) != NULL;
}

static void mark_seen(struct scan *sc, uint64_t ino)
{
	size_t i = sc->nseen;

	while (i > 0 && sc->seen[i - 1] > ino) {
		sc->seen[i] = sc->seen[i - 1];
		i--;
	}
	sc->seen[i] = ino;
	sc->nseen++;
}

/* Dump the namespace behind dirfd/path unless it was dumped already. Paths
 * vanish (processes exit) and that is normal: such failures stay silent. */
static void visit_ns(struct scan *sc, int dirfd, const char *path)
{
	struct stat st;
	int fd, err;

	if (sc->err || sc->capped)
		return;
	/* stat first: most processes share a namespace and need no open. */
	if (fstatat(dirfd, path, &st, 0) < 0 || st.st_dev != sc->nsfs_dev || seen(sc, st.st_ino))
		return;
	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	/* The pid may have been reused in between: trust the open file. */
	if (fstat(fd, &st) < 0 || st.st_dev != sc->nsfs_dev || seen(sc, st.st_ino))
		goto out;
	if (sc->nseen == MAX_NETNS) {
		cs_warn("more than %d network namespaces; the snapshot skips the rest",
			MAX_NETNS);
		sc->capped = true;
		goto out;
	}
	mark_seen(sc, st.st_ino);
	if (setns(fd, CLONE_NEWNET) < 0) {
		if (errno != EINVAL) /* EINVAL: not a network namespace file */
			cs_warn("failed to enter network namespace %llu: %s%s",
				(unsigned long long)st.st_ino, strerror(errno), errno == EPERM ?
				" (needs CAP_SYS_ADMIN): its sockets that existed before start "
				"are NOT observed" : "");
		goto out;
	}
	/* Netns inodes are allocated below 2^32 (proc_inum), so they fit netns. */
	err = dump_netns((uint32_t)st.st_ino, sc);
	if (err == -ENOMEM)
		sc->err = ENOMEM;
	else if (err)
		cs_warn("failed to dump TCP sockets of network namespace %llu: %s",
			(unsigned long long)st.st_ino, strerror(-err));
out:
	close(fd);
}

/* Call visit_ns for every entry of dir: /run/netns/<name> itself, or
 * /proc/<pid>/ns/net when pids is set. */
static void visit_dir(struct scan *sc, const char *dir, bool pids)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[300];

	if (!d)
		return;
	while ((de = readdir(d)) && !sc->err && !sc->capped) {
		if (de->d_name[0] == '.')
			continue;
		if (pids) {
			if (de->d_name[0] < '1' || de->d_name[0] > '9')
				continue;
			snprintf(path, sizeof(path), "%s/ns/net", de->d_name);
			visit_ns(sc, dirfd(d), path);
		} else {
			visit_ns(sc, dirfd(d), de->d_name);
		}
	}
	closedir(d);
}

static void *worker(void *arg)
{
	struct scan *sc = arg;

	/* Named namespaces first: they may hold no process at all. */
	visit_dir(sc, "/run/netns", false);
	visit_dir(sc, "/proc", true);
	return NULL;
}

static int snapshot_states(struct snap_sock **out, uint32_t states)
{
	struct scan *sc;
	struct stat self;
	pthread_t th;
	int err, ret = -1;

	*out = NULL;
	sc = calloc(1, sizeof(*sc));
	if (!sc || !(sc->buf = malloc(RECV_BUF))) {
		cs_fail("snapshot TCP sockets", "%s", strerror(ENOMEM));
		goto done;
	}
	if (stat("/proc/thread-self/ns/net", &self) < 0) {
		cs_fail("stat /proc/thread-self/ns/net", "%s", strerror(errno));
		goto done;
	}
	sc->states = states;
	sc->nsfs_dev = self.st_dev;
	mark_seen(sc, self.st_ino);

	err = dump_netns((uint32_t)self.st_ino, sc);
	if (err) {
		cs_fail("dump TCP sockets through NETLINK_SOCK_DIAG", "%s", strerror(-err));
		goto done;
	}

	err = pthread_create(&th, NULL, worker, sc);
	if (err)
		cs_warn("failed to start the network namespace scan: %s; "
			"the snapshot covers only this namespace", strerror(err));
	else
		pthread_join(th, NULL);
	if (sc->err) {
		cs_fail("snapshot TCP sockets", "%s", strerror(sc->err));
		goto done;
	}

	*out = sc->out.v;
	sc->out.v = NULL;
	ret = (int)sc->out.n;
done:
	if (sc) {
		free(sc->out.v);
		free(sc->buf);
	}
	free(sc);
	return ret;
}

int snapshot_tcp(struct snap_sock **out)
{
	return snapshot_states(out, WANTED_STATES);
}

int snapshot_listeners(struct snap_sock **out)
{
	return snapshot_states(out, 1u << ST_LISTEN);
}
