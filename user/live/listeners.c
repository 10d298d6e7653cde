// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The owner of an accepted socket: the process that listens on its port.
 *
 * The kernel side (bpf/conn.bpf.c, map `listeners`) notes who last called listen(),
 * by network namespace and port, and keeps it after the listener closes (its
 * connections may outlive it; records are read after the fact). Nothing runs on
 * the node's sends and receives for it. The listeners that were there before
 * connscope started are added here, once, from a sock_diag dump of the listening
 * sockets and one scan of /proc/<pid>/fd for their inodes (a thread of its own:
 * start-up does not wait for it).
 *
 * Records ask often (every server-side record without an owner), so answers are
 * kept in a small direct-mapped cache for a second: a server restarted under a new
 * pid is seen within that second.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include "conn.h"
#include "listeners.h"
#include "procfd.h"
#include "snapshot.h"
#include "util.h"

#define CACHE_SLOTS 1024 /* a power of two */
#define CACHE_NS 1000000000ull

struct cached {
	uint32_t netns;
	uint16_t port;
	bool used;
	uint32_t pid;  /* 0: no listener known */
	char comm[CS_COMM_LEN];
	uint64_t at_ns;
};

struct listeners {
	int map_fd;
	pthread_t seeder;
	bool seeding;
	struct cached cache[CACHE_SLOTS];
};

static void *seed(void *arg)
{
	struct listeners *ls = arg;
	struct snap_sock *socks = NULL;
	struct sock_owner *own = NULL;
	uint64_t *inos = NULL;
	int n = snapshot_listeners(&socks);

	if (n < 0)
		return NULL;
	inos = calloc((size_t)(n ? n : 1), sizeof(*inos));
	own = calloc((size_t)(n ? n : 1), sizeof(*own));
	if (!inos || !own)
		goto out;
	for (int i = 0; i < n; i++)
		inos[i] = socks[i].ino;
	if (n)
		procfd_lookup_many(inos, own, n);
	for (int i = 0; i < n; i++) {
		struct cs_listen_key k = { .netns = socks[i].netns, .port = socks[i].sport };
		struct cs_listener l = { .pid = own[i].pid };

		if (!own[i].pid)
			continue;
		memcpy(l.comm, own[i].comm, sizeof(l.comm));
		/* A listen() seen by the kernel meanwhile is newer: it stays. */
		bpf_map_update_elem(ls->map_fd, &k, &l, BPF_NOEXIST);
	}
out:
	free(inos);
	free(own);
	free(socks);
	return NULL;
}

struct listeners *listeners_new(int map_fd)
{
	struct listeners *ls = calloc(1, sizeof(*ls));

	if (!ls)
		return NULL;
	ls->map_fd = map_fd;
	ls->seeding = pthread_create(&ls->seeder, NULL, seed, ls) == 0;
	if (!ls->seeding)
		seed(ls);
	return ls;
}

void listeners_free(struct listeners *ls)
{
	if (!ls)
		return;
	if (ls->seeding)
		pthread_join(ls->seeder, NULL);
	free(ls);
}

bool listeners_owner(struct listeners *ls, uint32_t netns, uint16_t port, uint32_t *pid,
		     char comm[CS_COMM_LEN])
{
	struct cached *c;
	uint64_t now;

	if (!ls)
		return false;
	c = &ls->cache[(netns * 2654435761u ^ port) & (CACHE_SLOTS - 1)];
	now = cs_mono_ns();
	if (!c->used || c->netns != netns || c->port != port || now - c->at_ns > CACHE_NS) {
		struct cs_listen_key k = { .netns = netns, .port = port };
		struct cs_listener l;

		c->used = true;
		c->netns = netns;
		c->port = port;
		c->at_ns = now;
		c->pid = 0;
		if (!bpf_map_lookup_elem(ls->map_fd, &k, &l)) {
			c->pid = l.pid;
			memcpy(c->comm, l.comm, sizeof(c->comm));
			c->comm[sizeof(c->comm) - 1] = 0;
		}
	}
	if (!c->pid)
		return false;
	*pid = c->pid;
	memcpy(comm, c->comm, CS_COMM_LEN);
	return true;
}
