/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Find the processes that hold a socket, by its inode, through /proc/<pid>/fd. */
#ifndef CONNSCOPE_PROCFD_H
#define CONNSCOPE_PROCFD_H

#include <stdint.h>

struct sock_owner {
	uint32_t pid;     /* thread-group id */
	uint32_t fd;      /* the first fd it holds the socket in */
	char comm[16];
};

/* Fill up to max owners of socket inode ino. Returns how many were found (0 if none),
 * -1 on error. Scans /proc once per call; callers batch (procfd_lookup_many). */
int procfd_lookup(uint64_t ino, struct sock_owner *out, int max);

/* Batch form: one /proc scan for n inodes; owners[i] gets the first holder of
 * inos[i] (pid 0 if none). Returns the number of inodes that found an owner. */
int procfd_lookup_many(const uint64_t *inos, struct sock_owner *owners, int n);

#endif
