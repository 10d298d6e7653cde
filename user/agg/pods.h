/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Pod attribution: cgroup id -> cgroup path -> pod (namespace, name, uid, container). */
#ifndef CONNSCOPE_PODS_H
#define CONNSCOPE_PODS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pod_info {
	bool is_pod;           /* path matched a kubelet layout */
	bool known;            /* pod uid found in the pods dir (name/namespace valid) */
	char uid[40];          /* pod UID with dashes, e.g. 1b2c...-... ; "" if !is_pod */
	char namespace_[64];   /* "" when !known */
	char name[256];        /* "" when !known */
	char container[128];   /* container name if resolvable, else container id (short) or "" */
	char container_id[72]; /* full container id as found in the path, or "" */
	char runtime[16];      /* "containerd", "cri-o", "docker" or "" */
	char cgroup_path[512]; /* path relative to the cgroup2 mount, starting with '/'; "" if unknown */
	char ip[48];           /* replay: the address this pod (or address group) stands for */
};

struct pod_resolver;

/* cgroup2_root: NULL finds the cgroup2 mount through /proc/self/mountinfo.
 * pods_dir: NULL means /var/log/pods. Returns NULL (with a cs_fail line) on error. */
struct pod_resolver *pods_new(const char *cgroup2_root, const char *pods_dir);
void pods_free(struct pod_resolver *r);

/* How the cgroup2 mount was found: one of connscope's mount namespace, or one it
 * mounted itself in a private mount namespace because none was visible. */
const char *pods_cgroup2_how(void);
/* The mount point of cgroup2 the resolver uses. */
const char *pods_cgroup2_root(const struct pod_resolver *r);

/* Resolve a cgroup id (the inode number of the cgroup2 directory, as
 * bpf_get_current_cgroup_id / cgroup->kn->id give). Cached; a miss triggers a
 * rate-limited rescan. A cgroup that no longer exists is a normal case: the
 * result then has cgroup_path "" and is_pod false (and is cached as such for a
 * while). Never returns NULL. The pointer stays valid until the next call that
 * may rescan (copy what you keep). */
const struct pod_info *pods_lookup(struct pod_resolver *r, uint64_t cgroup_id);

/* Pure parser used by pods_lookup, exposed for unit tests: fill is_pod, uid,
 * container_id, runtime from a cgroup path of the systemd or cgroupfs kubelet
 * drivers. Returns true if a pod UID was found. */
bool pods_parse_path(const char *cgroup_path, struct pod_info *out);

/* The pod's own cgroup in a cgroup path: the path up to its deepest pod segment
 * (the container's cgroups are below it), and the pod's UID in uid (>= 37 bytes,
 * may be NULL). False when the path names no pod. */
bool pods_pod_path(const char *cgroup_path, char *out, size_t size, char *uid);

/* The cgroups of pods, for probing their processes: fn(path relative to the cgroup2
 * root, pod UID, pod name, arg) once for each pod of namespace ns named name (name
 * NULL: every pod of ns) that the pods dir lists and the last walk of the cgroup tree
 * saw.
 * refresh: read the pods dir and walk the tree again first (each at most once a
 * second). Returns how many pods were found. */
int pods_find(struct pod_resolver *r, const char *ns, const char *name, bool refresh,
	      void (*fn)(const char *path, const char *uid, const char *name, void *arg),
	      void *arg);

/* A growing list of process ids. */
struct pid_list {
	int *pids;
	size_t n, cap;
};

/* Append the processes of the cgroup at path (relative to the cgroup2 root) and of
 * every cgroup below it (their cgroup.procs) to l. -1 if the cgroup is gone. */
int pods_cgroup_procs(struct pod_resolver *r, const char *path, struct pid_list *l);

/* Filters: does this pod match "--pod [NS/]NAME" / "--namespace NS"?  NULL filter = match. */
bool pods_match(const struct pod_info *p, const char *pod_filter, const char *ns_filter);

/* Stable aggregation key for a pod_info: "ns/name" for known pods, "pod:<uid>" for
 * pods not in the pods dir, else the cgroup path (or "cgroup:<id>"). */
void pods_key(const struct pod_info *p, uint64_t cgroup_id, char *buf, unsigned len);

#endif
