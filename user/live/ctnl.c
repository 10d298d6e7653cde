// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The ctnetlink fallback: conntrack events of one network namespace over plain
 * NETLINK_NETFILTER sockets (see ctnl.h).
 *
 * A netlink socket belongs to the namespace it was created in, for its whole
 * life. So the sockets are made by a worker thread that enters the namespace
 * with setns(CLONE_NEWNET), which changes only that thread, and then exits:
 * no thread of the process is ever left in a foreign namespace, and nothing
 * has to find its way back. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ctnl.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
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
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

#define RECV_BUF    (64 * 1024)        /* one datagram; dump skbs stay below 32 KiB */
#define RCVBUF_WANT (8 * 1024 * 1024)  /* bursts of short connections overrun less */
#define DUMP_TMO_S  5
#define GET_TMO_US  200000
#define READ_BATCH  4096  /* datagrams per ctnl_read: a flood must not starve
			     the caller's other work */

/* Last known state per entry, to fill old_tcp_state and to drop UPDATEs that
 * changed nothing we report (timeouts, counters, sequence adjustments).
 * Bounded: a set-associative table, 4 ways a bucket; a full bucket gives up
 * its least recently touched entry, which then reads as "state unknown". */
#define ST_BUCKETS 4096
#define ST_WAYS    4

struct st_slot {
	uint64_t id;
	uint64_t touched;   /* c->tick when last written; 0 = empty */
	uint32_t status;
	uint32_t mark;
	uint8_t state;
};

struct ctnl {
	int fd;             /* subscribed to the three event groups */
	int dump_fd;        /* requests and their replies only */
	uint32_t netns;
	int events_sysctl;  /* net.netfilter.nf_conntrack_events, -1 unknown */
	int rcvbuf;         /* what the kernel granted */
	uint32_t seq;
	uint64_t events, lost, tick;
	unsigned char *buf;
	struct st_slot tab[ST_BUCKETS][ST_WAYS];
};

/* ---- parsing (pure) ---- */

/* Where each attribute of one nesting level is, by type; absent: len 0, p NULL. */
struct attr {
	const unsigned char *p;
	size_t len;
	bool present;
};

/* Index the attributes in p[0..len): each is
 *   struct nlattr { u16 nla_len (header + payload, unpadded); u16 nla_type; }
 *   payload, padded to 4 bytes.
 * nla_type carries NLA_F_NESTED / NLA_F_NET_BYTEORDER in its top bits, masked
 * off here. Types above max are skipped; a repeated type keeps the last.
 * Returns -1 when a length runs past the bytes present or is below the header. */
static int attrs_index(const unsigned char *p, size_t len, struct attr *tb, unsigned max)
{
	memset(tb, 0, (max + 1) * sizeof(*tb));
	while (len >= NLA_HDRLEN) {
		struct nlattr a;
		unsigned type;
		size_t step;

		memcpy(&a, p, sizeof(a));
		if (a.nla_len < NLA_HDRLEN || a.nla_len > len)
			return -1;
		type = a.nla_type & NLA_TYPE_MASK;
		if (type <= max) {
			tb[type].p = p + NLA_HDRLEN;
			tb[type].len = a.nla_len - NLA_HDRLEN;
			tb[type].present = true;
		}
		step = NLA_ALIGN(a.nla_len);
		if (step >= len)
			return 0; /* the last one, its padding possibly cut */
		p += step;
		len -= step;
	}
	/* 1 to 3 stray bytes: tolerated as padding, as the kernel does. */
	return 0;
}

/* Checked big-endian getters: the payload must be exactly the size. */
static int get_be16(const struct attr *a, uint16_t *v)
{
	uint16_t x;

	if (a->len != sizeof(x))
		return -1;
	memcpy(&x, a->p, sizeof(x));
	*v = ntohs(x);
	return 0;
}

static int get_be32(const struct attr *a, uint32_t *v)
{
	uint32_t x;

	if (a->len != sizeof(x))
		return -1;
	memcpy(&x, a->p, sizeof(x));
	*v = ntohl(x);
	return 0;
}

static int get_u8(const struct attr *a, uint8_t *v)
{
	if (a->len != 1)
		return -1;
	*v = a->p[0];
	return 0;
}

/* CTA_TUPLE_ORIG / CTA_TUPLE_REPLY:
 *   CTA_TUPLE_IP    { CTA_IP_V4_SRC, CTA_IP_V4_DST (4 bytes each)
 *                   | CTA_IP_V6_SRC, CTA_IP_V6_DST (16 bytes each) }
 *   CTA_TUPLE_PROTO { CTA_PROTO_NUM (u8), CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT
 *                     (be16 each; absent for protocols without ports) }
 *   CTA_TUPLE_ZONE  (ignored)
 * Returns -1 when malformed or incomplete (no addresses, no protocol). */
static int parse_tuple(const struct attr *t, struct ct_tuple *out)
{
	struct attr tt[CTA_TUPLE_MAX + 1], ip[CTA_IP_MAX + 1], pr[CTA_PROTO_MAX + 1];

	memset(out, 0, sizeof(*out));
	if (attrs_index(t->p, t->len, tt, CTA_TUPLE_MAX) < 0)
		return -1;
	if (!tt[CTA_TUPLE_IP].present || !tt[CTA_TUPLE_PROTO].present)
		return -1;
	if (attrs_index(tt[CTA_TUPLE_IP].p, tt[CTA_TUPLE_IP].len, ip, CTA_IP_MAX) < 0 ||
	    attrs_index(tt[CTA_TUPLE_PROTO].p, tt[CTA_TUPLE_PROTO].len, pr, CTA_PROTO_MAX) < 0)
		return -1;

	if (ip[CTA_IP_V4_SRC].present && ip[CTA_IP_V4_DST].present) {
		if (ip[CTA_IP_V4_SRC].len != 4 || ip[CTA_IP_V4_DST].len != 4)
			return -1;
		out->l3 = AF_INET;
		memcpy(out->src, ip[CTA_IP_V4_SRC].p, 4);
		memcpy(out->dst, ip[CTA_IP_V4_DST].p, 4);
	} else if (ip[CTA_IP_V6_SRC].present && ip[CTA_IP_V6_DST].present) {
		if (ip[CTA_IP_V6_SRC].len != 16 || ip[CTA_IP_V6_DST].len != 16)
			return -1;
		out->l3 = AF_INET6;
		memcpy(out->src, ip[CTA_IP_V6_SRC].p, 16);
		memcpy(out->dst, ip[CTA_IP_V6_DST].p, 16);
	} else {
		return -1;
	}

	if (!pr[CTA_PROTO_NUM].present || get_u8(&pr[CTA_PROTO_NUM], &out->l4) < 0)
		return -1;
	if (pr[CTA_PROTO_SRC_PORT].present && get_be16(&pr[CTA_PROTO_SRC_PORT], &out->sport) < 0)
		return -1;
	if (pr[CTA_PROTO_DST_PORT].present && get_be16(&pr[CTA_PROTO_DST_PORT], &out->dport) < 0)
		return -1;
	return 0;
}

/* One ctnetlink message:
 *   struct nlmsghdr { len; type = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_*;
 *                     flags; seq; pid }
 *   struct nfgenmsg { u8 nfgen_family (L3); u8 version; be16 res_id }, padded to 4
 *   attributes: CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS (be32), CTA_ID (be32),
 *     CTA_MARK (be32), CTA_PROTOINFO { CTA_PROTOINFO_TCP { CTA_PROTOINFO_TCP_STATE
 *     (u8), ... } }, and others skipped (counters, timeout, zone, ...).
 * The kernel (ctnetlink_conntrack_event) sends IPCTNL_MSG_CT_NEW with
 * NLM_F_CREATE|NLM_F_EXCL for a new entry, IPCTNL_MSG_CT_NEW without them for
 * a change, IPCTNL_MSG_CT_DELETE for the end; dump replies are NEW without them. */
int ctnl_parse(const void *msg, size_t len, struct ct_event *out)
{
	const unsigned char *p = msg;
	struct attr tb[CTA_MAX + 1];
	struct nlmsghdr nlh;
	size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
	uint32_t v32;

	memset(out, 0, sizeof(*out));
	if (len < NLMSG_HDRLEN)
		return -1;
	memcpy(&nlh, p, sizeof(nlh));
	if (nlh.nlmsg_len < NLMSG_HDRLEN || nlh.nlmsg_len > len)
		return -1;
	len = nlh.nlmsg_len;
	if (NFNL_SUBSYS_ID(nlh.nlmsg_type) != NFNL_SUBSYS_CTNETLINK)
		return 0;
	switch (NFNL_MSG_TYPE(nlh.nlmsg_type)) {
	case IPCTNL_MSG_CT_NEW:
		if ((nlh.nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL)) == (NLM_F_CREATE | NLM_F_EXCL))
			out->type = CT_EV_NEW;
		else
			out->type = CT_EV_UPDATE;
		break;
	case IPCTNL_MSG_CT_DELETE:
		out->type = CT_EV_DESTROY;
		break;
	default:
		return 0; /* expectations, statistics: not ours */
	}
	if (len < off)
		return -1;
	if (attrs_index(p + off, len - off, tb, CTA_MAX) < 0)
		return -1;

	if (!tb[CTA_TUPLE_ORIG].present || parse_tuple(&tb[CTA_TUPLE_ORIG], &out->orig) < 0)
		return -1;
	/* The kernel always sends both tuples; a message without the reply one is
	 * still usable, it just has no NAT to tell. */
	if (tb[CTA_TUPLE_REPLY].present && parse_tuple(&tb[CTA_TUPLE_REPLY], &out->reply) < 0)
		return -1;
	if (tb[CTA_STATUS].present) {
		if (get_be32(&tb[CTA_STATUS], &out->status) < 0)
			return -1;
	}
	if (tb[CTA_ID].present) {
		if (get_be32(&tb[CTA_ID], &v32) < 0)
			return -1;
		out->id = v32;
	}
	if (tb[CTA_MARK].present && get_be32(&tb[CTA_MARK], &out->mark) < 0)
		return -1;
	if (tb[CTA_PROTOINFO].present) {
		struct attr pi[CTA_PROTOINFO_MAX + 1], tcp[CTA_PROTOINFO_TCP_MAX + 1];

		if (attrs_index(tb[CTA_PROTOINFO].p, tb[CTA_PROTOINFO].len, pi,
				CTA_PROTOINFO_MAX) < 0)
			return -1;
		if (pi[CTA_PROTOINFO_TCP].present) {
			if (attrs_index(pi[CTA_PROTOINFO_TCP].p, pi[CTA_PROTOINFO_TCP].len, tcp,
					CTA_PROTOINFO_TCP_MAX) < 0)
				return -1;
			if (tcp[CTA_PROTOINFO_TCP_STATE].present) {
				if (get_u8(&tcp[CTA_PROTOINFO_TCP_STATE], &out->tcp_state) < 0)
					return -1;
				/* enum tcp_conntrack ends at SYN_SENT2 (9); past it
				 * is TCP_CONNTRACK_MAX or garbage. */
				if (out->tcp_state > CT_TCP_SYN_SENT2)
					return -1;
			}
		}
	}
	if (out->orig.l4 != IPPROTO_TCP)
		return 0;
	out->source = CT_SRC_NETLINK;
	return 1;
}

/* ---- state table ---- */

static struct st_slot *st_find(struct ctnl *c, uint64_t id)
{
	struct st_slot *b = c->tab[(id * 0x9E3779B97F4A7C15ull) >> 52]; /* 12 bits */

	for (int i = 0; i < ST_WAYS; i++)
		if (b[i].touched && b[i].id == id)
			return &b[i];
	return NULL;
}

static struct st_slot *st_claim(struct ctnl *c, uint64_t id)
{
	struct st_slot *b = c->tab[(id * 0x9E3779B97F4A7C15ull) >> 52], *old = &b[0];

	for (int i = 0; i < ST_WAYS; i++) {
		if (b[i].touched && b[i].id == id)
			return &b[i];
		if (b[i].touched < old->touched)
			old = &b[i]; /* an empty way (0) wins over any live one */
	}
	memset(old, 0, sizeof(*old));
	old->id = id;
	return old;
}

_Static_assert(ST_BUCKETS == 1 << 12, "st_find takes the top 12 bits of the hash");

/* Complete e from what was last known of its entry and record it. Returns
 * false for an UPDATE that changed nothing a caller sees. */
static bool st_apply(struct ctnl *c, struct ct_event *e)
{
	struct st_slot *s = st_find(c, e->id);

	if (s && e->tcp_state == CT_TCP_NONE)
		e->tcp_state = s->state; /* no CTA_PROTOINFO this time */
	e->old_tcp_state = s ? s->state : CT_TCP_NONE;

	switch (e->type) {
	case CT_EV_DESTROY:
		if (s)
			memset(s, 0, sizeof(*s));
		return true;
	case CT_EV_UPDATE:
		if (s && s->state == e->tcp_state && s->status == e->status && s->mark == e->mark)
			return false;
		break;
	default:
		e->old_tcp_state = CT_TCP_NONE; /* a NEW entry had no state before */
		break;
	}
	if (!s)
		s = st_claim(c, e->id);
	s->state = e->tcp_state;
	s->status = e->status;
	s->mark = e->mark;
	s->touched = ++c->tick;
	return true;
}

/* ---- sockets ---- */

struct open_job {
	struct ctnl *c;
	bool query_only;  /* ctnl_open_query: no event socket */
	int err;
	char step[64];
};

static int read_small_int(const char *path)
{
	char b[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, b, sizeof(b) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	b[n] = 0;
	return atoi(b);
}

/* Runs inside the target namespace. */
static void open_sockets(void *arg)
{
	struct open_job *j = arg;
	struct ctnl *c = j->c;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	static const int groups[] = {
		NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, NFNLGRP_CONNTRACK_DESTROY,
	};
	int want = RCVBUF_WANT, off = 0;
	socklen_t sl = sizeof(c->rcvbuf);

	if (j->query_only)
		goto requests;
	c->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
	if (c->fd < 0) {
		j->err = errno;
		snprintf(j->step, sizeof(j->step), "open a NETLINK_NETFILTER socket");
		return;
	}
	/* FORCE passes over net.core.rmem_max (we are root); plain SO_RCVBUF is
	 * the fallback, capped by it. Overruns stay reported (NETLINK_NO_ENOBUFS
	 * off, as it is by default): ctnl_read counts them. */
	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) < 0)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
	setsockopt(c->fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &off, sizeof(off));
	getsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &c->rcvbuf, &sl);
	if (bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		j->err = errno;
		snprintf(j->step, sizeof(j->step), "bind the netlink socket");
		return;
	}
	/* Joining loads nf_conntrack_netlink on demand; ENOENT if it cannot be. */
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
		if (setsockopt(c->fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &groups[i],
			       sizeof(groups[i])) < 0) {
			j->err = errno;
			snprintf(j->step, sizeof(j->step), "join conntrack group %d", groups[i]);
			return;
		}
	}
requests:
	c->dump_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (c->dump_fd < 0 || bind(c->dump_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		j->err = errno;
		snprintf(j->step, sizeof(j->step), "open the dump socket");
		return;
	}
	/* /proc/sys/net is the reading task's namespace: this thread's. */
	c->events_sysctl = read_small_int("/proc/sys/net/netfilter/nf_conntrack_events");
}

struct ns_job {
	int nsfd;
	void (*fn)(void *);
	void *arg;
	int err;
};

static void *ns_worker(void *arg)
{
	struct ns_job *j = arg;

	if (setns(j->nsfd, CLONE_NEWNET) < 0) {
		j->err = errno;
		return NULL;
	}
	j->fn(j->arg);
	return NULL; /* the thread, and its namespace membership, end here */
}

int ctnl_in_netns(const char *path, void (*fn)(void *arg), void *arg, uint32_t *ino,
		  char *why, size_t whylen)
{
	struct ns_job j = { .fn = fn, .arg = arg };
	struct stat st;
	pthread_t th;
	int err;

	j.nsfd = open(path ? path : "/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (j.nsfd < 0) {
		err = errno;
		snprintf(why, whylen, "open %s: %s", path ? path : "own netns", strerror(err));
		return -err;
	}
	if (fstat(j.nsfd, &st) < 0) {
		err = errno;
		snprintf(why, whylen, "stat %s: %s", path ? path : "own netns", strerror(err));
		close(j.nsfd);
		return -err;
	}
	/* Netns inodes come from proc_inum, below 2^32. */
	if (ino)
		*ino = (uint32_t)st.st_ino;
	if (!path) {
		close(j.nsfd);
		fn(arg);
		return 0;
	}
	err = pthread_create(&th, NULL, ns_worker, &j);
	if (err) {
		snprintf(why, whylen, "start a thread: %s", strerror(err));
		close(j.nsfd);
		return -err;
	}
	pthread_join(th, NULL);
	close(j.nsfd);
	if (j.err) {
		snprintf(why, whylen, "enter network namespace %s: %s%s", path,
			 j.err == EINVAL ? "not a network namespace" : strerror(j.err),
			 j.err == EPERM ? " (needs CAP_SYS_ADMIN)" : "");
		return -j.err;
	}
	return 0;
}

static struct ctnl *open_in(const char *netns_path, bool query_only, char *why, size_t whylen)
{
	struct ctnl *c = calloc(1, sizeof(*c));
	struct open_job j = { .c = c, .query_only = query_only };

	if (!c || !(c->buf = malloc(RECV_BUF))) {
		snprintf(why, whylen, "%s", strerror(ENOMEM));
		free(c);
		return NULL;
	}
	c->fd = c->dump_fd = -1;
	c->events_sysctl = -1;
	if (ctnl_in_netns(netns_path, open_sockets, &j, &c->netns, why, whylen) < 0) {
		ctnl_close(c);
		return NULL;
	}
	if (j.err) {
		snprintf(why, whylen, "%s: %s%s", j.step,
			 j.err == ENOENT || j.err == EPROTONOSUPPORT ?
			 "no ctnetlink in this kernel (nf_conntrack_netlink)" : strerror(j.err),
			 j.err == EPERM ? " (ctnetlink needs CAP_NET_ADMIN)" : "");
		ctnl_close(c);
		return NULL;
	}
	return c;
}

struct ctnl *ctnl_open(const char *netns_path, char *why, size_t whylen)
{
	return open_in(netns_path, false, why, whylen);
}

struct ctnl *ctnl_open_query(const char *netns_path, char *why, size_t whylen)
{
	struct ctnl *c = open_in(netns_path, true, why, whylen);
	struct timeval tmo = { .tv_usec = GET_TMO_US };

	/* The kernel answers a GET before sendto returns; the timeout only
	 * guards against a reply that never comes. */
	if (c)
		setsockopt(c->dump_fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
	return c;
}

int ctnl_fd(const struct ctnl *c)
{
	return c->fd;
}

/* Walk the messages of one datagram. Returns 1 when a dump ended (NLMSG_DONE),
 * 0 to go on, or a negative errno from an NLMSG_ERROR. */
static int walk(struct ctnl *c, const unsigned char *p, size_t left, bool dump,
		uint32_t seq, ctnl_cb cb, void *arg, int *n)
{
	while (left >= NLMSG_HDRLEN) {
		struct nlmsghdr nlh;
		struct ct_event e;
		size_t step;
		int st = 0;

		memcpy(&nlh, p, sizeof(nlh));
		if (nlh.nlmsg_len < NLMSG_HDRLEN || nlh.nlmsg_len > left)
			return dump ? -EBADMSG : 0; /* cut short: drop the rest */
		if (dump && nlh.nlmsg_seq != seq)
			goto next; /* a stale reply to an earlier request */
		if (nlh.nlmsg_type == NLMSG_DONE) {
			if (nlh.nlmsg_len >= NLMSG_LENGTH(sizeof(int)))
				memcpy(&st, p + NLMSG_HDRLEN, sizeof(int));
			return st < 0 ? st : 1;
		}
		if (nlh.nlmsg_type == NLMSG_ERROR) {
			if (nlh.nlmsg_len >= NLMSG_LENGTH(sizeof(int)))
				memcpy(&st, p + NLMSG_HDRLEN, sizeof(int));
			if (st < 0 && dump)
				return st;
			goto next;
		}
		if (ctnl_parse(p, nlh.nlmsg_len, &e) == 1) {
			e.ts_ns = cs_mono_ns(); /* netlink has no send time; drained promptly */
			e.netns = c->netns;
			if (dump)
				e.type = CT_EV_NEW;
			if (st_apply(c, &e) || dump) {
				c->events++;
				(*n)++;
				cb(arg, &e);
			}
		}
next:
		step = NLMSG_ALIGN(nlh.nlmsg_len);
		if (step >= left)
			break;
		p += step;
		left -= step;
	}
	return 0;
}

int ctnl_read(struct ctnl *c, ctnl_cb cb, void *arg)
{
	int n = 0;

	for (int batch = 0; batch < READ_BATCH; batch++) {
		struct sockaddr_nl from;
		struct iovec iov = { c->buf, RECV_BUF };
		struct msghdr mh = {
			.msg_name = &from, .msg_namelen = sizeof(from),
			.msg_iov = &iov, .msg_iovlen = 1,
		};
		ssize_t r = recvmsg(c->fd, &mh, MSG_DONTWAIT);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				/* The socket overran and the kernel dropped events.
				 * The error is reported once and cleared; what is
				 * still queued is good. */
				c->lost++;
				continue;
			}
			if (errno == EAGAIN)
				return n;
			return -errno;
		}
		if (mh.msg_flags & MSG_TRUNC) {
			c->lost++; /* cannot happen with RECV_BUF; counted if it does */
			continue;
		}
		if (mh.msg_namelen < sizeof(from) || from.nl_pid != 0)
			continue; /* not from the kernel */
		walk(c, c->buf, (size_t)r, false, 0, cb, arg, &n);
	}
	return n; /* more may be queued: poll says so */
}

/* Send one request to the kernel on the request socket. 0, or a negative errno. */
static int request(struct ctnl *c, const void *msg, size_t len)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	ssize_t r;

	do
		r = sendto(c->dump_fd, msg, len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

/* Request:
 *   struct nlmsghdr { len, NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET,
 *                     NLM_F_REQUEST | NLM_F_DUMP, seq, 0 }
 *   struct nfgenmsg { AF_UNSPEC (every L3), NFNETLINK_V0, res_id 0 }
 * Replies: IPCTNL_MSG_CT_NEW messages with NLM_F_MULTI, then NLMSG_DONE. */
int ctnl_dump(struct ctnl *c, ctnl_cb cb, void *arg)
{
	struct {
		struct nlmsghdr nlh;
		struct nfgenmsg g;
	} rq;
	struct timeval tmo = { .tv_sec = DUMP_TMO_S };
	uint32_t seq = ++c->seq;
	int n = 0, ret;
	ssize_t r;

	memset(&rq, 0, sizeof(rq));
	rq.nlh.nlmsg_len = sizeof(rq);
	rq.nlh.nlmsg_type = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET;
	rq.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	rq.nlh.nlmsg_seq = seq;
	rq.g.nfgen_family = AF_UNSPEC;
	rq.g.version = NFNETLINK_V0;
	setsockopt(c->dump_fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));

	ret = request(c, &rq, sizeof(rq));
	if (ret < 0)
		return ret;
	for (;;) {
		struct sockaddr_nl from;
		struct iovec iov = { c->buf, RECV_BUF };
		struct msghdr mh = {
			.msg_name = &from, .msg_namelen = sizeof(from),
			.msg_iov = &iov, .msg_iovlen = 1,
		};

		r = recvmsg(c->dump_fd, &mh, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (r == 0)
			return -ENODATA;
		if (mh.msg_flags & MSG_TRUNC)
			return -EMSGSIZE;
		if (mh.msg_namelen < sizeof(from) || from.nl_pid != 0)
			continue;
		ret = walk(c, c->buf, (size_t)r, true, seq, cb, arg, &n);
		if (ret < 0)
			return ret;
		if (ret == 1)
			return n;
	}
}

/* Append one attribute (struct nlattr, payload, padding to 4) at *off; a nested
 * one is opened with len 0 and closed by nest_end. */
static size_t put_attr(unsigned char *buf, size_t *off, uint16_t type, const void *v, size_t len)
{
	struct nlattr a = { .nla_len = (uint16_t)(NLA_HDRLEN + len), .nla_type = type };
	size_t at = *off;

	memcpy(buf + at, &a, sizeof(a));
	if (len)
		memcpy(buf + at + NLA_HDRLEN, v, len);
	*off = at + NLA_ALIGN(NLA_HDRLEN + len);
	return at;
}

static void nest_end(unsigned char *buf, size_t at, size_t off)
{
	uint16_t len = (uint16_t)(off - at);

	memcpy(buf + at, &len, sizeof(len));
}

/* ctnl_get's walk callback: the entry, into the caller's struct. */
static void got_one(void *arg, const struct ct_event *e)
{
	*(struct ct_event *)arg = *e;
}

/* A GET by one tuple:
 *   struct nlmsghdr { len, NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET, NLM_F_REQUEST }
 *   struct nfgenmsg { the tuple's L3 family, NFNETLINK_V0, 0 }
 *   CTA_TUPLE_ORIG or CTA_TUPLE_REPLY { CTA_TUPLE_IP { CTA_IP_V4_SRC, CTA_IP_V4_DST }
 *     (or the V6 pair), CTA_TUPLE_PROTO { CTA_PROTO_NUM, CTA_PROTO_SRC_PORT,
 *     CTA_PROTO_DST_PORT (be16) } }
 * The reply is the entry (IPCTNL_MSG_CT_NEW) or an NLMSG_ERROR. */
int ctnl_get(struct ctnl *c, const struct ct_tuple *t, bool reply, struct ct_event *out)
{
	unsigned char rq[256];
	struct nlmsghdr nlh = {
		.nlmsg_type = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET,
		.nlmsg_flags = NLM_F_REQUEST,
		.nlmsg_seq = ++c->seq,
	};
	struct nfgenmsg g = { .nfgen_family = t->l3, .version = NFNETLINK_V0 };
	bool v6 = t->l3 == AF_INET6;
	size_t n = v6 ? 16 : 4, off = NLMSG_HDRLEN, tup, ip, pr;
	uint16_t sport = htons(t->sport), dport = htons(t->dport);
	uint8_t l4 = IPPROTO_TCP;
	ssize_t r;
	int ret;

	if (t->l3 != AF_INET && t->l3 != AF_INET6)
		return -EAFNOSUPPORT;
	memset(rq, 0, sizeof(rq));
	memcpy(rq + off, &g, sizeof(g));
	off += NLMSG_ALIGN(sizeof(g));
	tup = put_attr(rq, &off, (reply ? CTA_TUPLE_REPLY : CTA_TUPLE_ORIG) | NLA_F_NESTED, NULL, 0);
	ip = put_attr(rq, &off, CTA_TUPLE_IP | NLA_F_NESTED, NULL, 0);
	put_attr(rq, &off, v6 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC, t->src, n);
	put_attr(rq, &off, v6 ? CTA_IP_V6_DST : CTA_IP_V4_DST, t->dst, n);
	nest_end(rq, ip, off);
	pr = put_attr(rq, &off, CTA_TUPLE_PROTO | NLA_F_NESTED, NULL, 0);
	put_attr(rq, &off, CTA_PROTO_NUM, &l4, 1);
	put_attr(rq, &off, CTA_PROTO_SRC_PORT, &sport, 2);
	put_attr(rq, &off, CTA_PROTO_DST_PORT, &dport, 2);
	nest_end(rq, pr, off);
	nest_end(rq, tup, off);
	nlh.nlmsg_len = (uint32_t)off;
	memcpy(rq, &nlh, sizeof(nlh));

	ret = request(c, rq, off);
	if (ret < 0)
		return ret;
	/* The reply, as a dump's entry is read (walk: its sequence number, an
	 * NLMSG_ERROR, the parse); a late reply to an earlier GET is passed over. */
	for (;;) {
		int got = 0;

		r = recv(c->dump_fd, c->buf, RECV_BUF, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		ret = walk(c, c->buf, (size_t)r, true, nlh.nlmsg_seq, got_one, out, &got);
		if (ret < 0)
			return ret;
		if (got)
			return 0;
	}
}

void ctnl_counters(const struct ctnl *c, uint64_t *events, uint64_t *lost)
{
	if (events)
		*events = c->events;
	if (lost)
		*lost = c->lost;
}

void ctnl_describe(const struct ctnl *c, char *buf, size_t len)
{
	const char *ev;

	switch (c->events_sysctl) {
	case 0:
		ev = "the kernel sends no conntrack events here: nothing will be seen";
		break;
	case 1:
		ev = "events on";
		break;
	case 2:
		ev = "events on while a listener is subscribed, as this one is";
		break;
	case -1:
		ev = "could not be read";
		break;
	default:
		ev = "a value this version does not know";
		break;
	}
	snprintf(buf, len, "ctnetlink in netns %u: nf_conntrack_events=%d (%s); "
		 "receive buffer %d bytes; %llu events, %llu overruns",
		 c->netns, c->events_sysctl, ev, c->rcvbuf,
		 (unsigned long long)c->events, (unsigned long long)c->lost);
}

void ctnl_close(struct ctnl *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	if (c->dump_fd >= 0)
		close(c->dump_fd);
	free(c->buf);
	free(c);
}
