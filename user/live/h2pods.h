/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Which pods' processes carry the HTTP/2-in-TLS probes (--h2-plaintext NS/POD,... or
 * auto): the pods named on the command line, or those an HTTP/2 finding named within
 * the last --h2-plaintext-for seconds. Each second their processes are listed (the
 * cgroup.procs of each pod's cgroup and of the cgroups below it) for h2u_sync.
 */
#ifndef CONNSCOPE_H2PODS_H
#define CONNSCOPE_H2PODS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pods.h"

#define H2PODS_MAX 64  /* pods probed at once (auto, or NS/ selecting many) */

struct h2pods;

/* list: the NS/NAME[,NS/...] value (checked by the command line); NULL for auto,
 * where pods are added by h2pods_flag and probed for for_s seconds. */
struct h2pods *h2pods_new(struct pod_resolver *r, const char *list, double for_s);
/* auto: a finding of kind about the pod pi. h2_reuse_churn and h2_goaway put (or
 * keep) its pod's processes under probes for for_s seconds from now. Returns true
 * when the pod was not probed before. */
bool h2pods_flag(struct h2pods *p, const char *kind, const struct pod_info *pi);
/* Once a second: forget the pods whose time is up, find the named pods (new ones
 * of an NS/ selector too) and list the processes of every probed pod into l (its n
 * reset to 0 first). */
void h2pods_pids(struct h2pods *p, struct pid_list *l);
/* Pods probed now, and the label (ns/name, or pod:<uid>) of the i-th. */
size_t h2pods_count(const struct h2pods *p);
const char *h2pods_label(const struct h2pods *p, size_t i);
void h2pods_free(struct h2pods *p);

#endif
