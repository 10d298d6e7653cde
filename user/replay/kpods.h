/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Replay's pod map: the output of `kubectl get pods -A -o json`, read once, turned
 * into address -> pod. Pods on the host network share the node's address and are
 * left out (their traffic is grouped by address); an address two live pods claim
 * goes to the running one, and a tie is reported.
 */
#ifndef CONNSCOPE_KPODS_H
#define CONNSCOPE_KPODS_H

#include <stddef.h>
#include <stdint.h>
#include "pods.h"

struct kpods;

/* NULL with a message in err if the file cannot be read or is not a pod list. */
struct kpods *kpods_load(const char *path, char *err, size_t errlen);
/* The same from text in memory (tests, the fuzzer). */
struct kpods *kpods_parse(const char *text, size_t len, const char *name, char *err,
			  size_t errlen);
void kpods_free(struct kpods *k);
/* The pod that owns an address (family AF_INET/AF_INET6, 4 or 16 bytes), or NULL. */
const struct pod_info *kpods_find(const struct kpods *k, int family, const uint8_t *addr);
/* Pods read, addresses mapped, host-network pods left out, addresses claimed twice. */
void kpods_counts(const struct kpods *k, size_t *pods, size_t *addrs, size_t *host_network,
		  size_t *conflicts);

#endif
