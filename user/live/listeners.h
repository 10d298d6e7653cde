/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The owner of an accepted socket: its listener's (listeners.c). */
#ifndef CONNSCOPE_LISTENERS_H
#define CONNSCOPE_LISTENERS_H

#include <stdbool.h>
#include <stdint.h>

#ifndef CS_COMM_LEN
#define CS_COMM_LEN 16
#endif

struct listeners;

/* map_fd: conn.bpf.c's `listeners`. The listeners that predate connscope are
 * added to it by a thread started here. NULL without memory. */
struct listeners *listeners_new(int map_fd);
void listeners_free(struct listeners *ls);

/* Who listens on port in network namespace netns: true and *pid, comm set, or
 * false when no listener is known. */
bool listeners_owner(struct listeners *ls, uint32_t netns, uint16_t port, uint32_t *pid,
		     char comm[CS_COMM_LEN]);

#endif
