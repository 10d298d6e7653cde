// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * `kubectl get pods -A -o json` -> address -> pod, for replay.
 *
 * What is read of each item (a v1 Pod):
 *   metadata.namespace, metadata.name, metadata.uid
 *   status.podIP, status.podIPs[].ip (dual stack), status.phase
 *   spec.hostNetwork, spec.containers[].name
 * A pod's `container` is its only container's name; with several it stays empty,
 * as in live mode, where the container is known only from the cgroup.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kpods.h"
#include "util.h"

struct kpod_addr {
	uint8_t family;
	uint8_t addr[16];
	bool running;
	size_t pod;              /* index into pods */
};

struct kpods {
	struct pod_info *pods;
	size_t npods;
	struct kpod_addr *addrs; /* sorted by (family, addr) for bsearch */
	size_t naddrs;
	size_t host_network, conflicts;
};

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static int addr_cmp(const void *pa, const void *pb)
{
	const struct kpod_addr *a = pa, *b = pb;

	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return memcmp(a->addr, b->addr, sizeof(a->addr));
}

static bool parse_ip(const char *s, struct kpod_addr *out)
{
	memset(out->addr, 0, sizeof(out->addr));
	if (inet_pton(AF_INET, s, out->addr) == 1) {
		out->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, out->addr) == 1) {
		out->family = AF_INET6;
		return true;
	}
	return false;
}

static int add_addr(struct kpods *k, size_t *cap, const char *ip, size_t pod, bool running)
{
	struct kpod_addr a = { .pod = pod, .running = running };

	if (!ip || !parse_ip(ip, &a))
		return 0;
	/* podIP and podIPs[0] are the same address: once per pod. */
	for (size_t i = k->naddrs; i-- > 0 && k->addrs[i].pod == pod;)
		if (!addr_cmp(&k->addrs[i], &a))
			return 0;
	if (k->naddrs == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct kpod_addr *n = realloc(k->addrs, ncap * sizeof(*n));

		if (!n)
			return -1;
		k->addrs = n;
		*cap = ncap;
	}
	k->addrs[k->naddrs++] = a;
	return 0;
}

static void fill_pod(struct pod_info *p, const cJSON *item)
{
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(item, "metadata");
	const cJSON *spec = cJSON_GetObjectItemCaseSensitive(item, "spec");
	const cJSON *ctrs = cJSON_GetObjectItemCaseSensitive(spec, "containers");
	const char *ns = jstr(meta, "namespace"), *name = jstr(meta, "name"), *uid = jstr(meta, "uid");

	memset(p, 0, sizeof(*p));
	p->is_pod = true;
	p->known = ns && name;
	snprintf(p->namespace_, sizeof(p->namespace_), "%s", ns ? ns : "");
	snprintf(p->name, sizeof(p->name), "%s", name ? name : "");
	snprintf(p->uid, sizeof(p->uid), "%s", uid ? uid : "");
	if (cJSON_IsArray(ctrs) && cJSON_GetArraySize(ctrs) == 1) {
		const char *c = jstr(cJSON_GetArrayItem(ctrs, 0), "name");

		snprintf(p->container, sizeof(p->container), "%s", c ? c : "");
	}
}

struct kpods *kpods_parse(const char *text, size_t len, const char *name, char *err,
			  size_t errlen)
{
	cJSON *root = cJSON_ParseWithLength(text, len), *items, *item;
	struct kpods *k;
	size_t cap = 0;

	if (!root) {
		snprintf(err, errlen, "%s: not JSON (near byte %zu)", name,
			 cJSON_GetErrorPtr() && cJSON_GetErrorPtr() >= text ?
			 (size_t)(cJSON_GetErrorPtr() - text) : (size_t)0);
		return NULL;
	}
	/* A List of pods, or a single Pod. */
	items = cJSON_GetObjectItemCaseSensitive(root, "items");
	if (!cJSON_IsArray(items) && !cJSON_GetObjectItemCaseSensitive(root, "metadata")) {
		snprintf(err, errlen, "%s: not the output of `kubectl get pods -o json` (no \"items\")",
			 name);
		cJSON_Delete(root);
		return NULL;
	}
	k = calloc(1, sizeof(*k));
	if (!k)
		goto nomem;
	size_t n = cJSON_IsArray(items) ? (size_t)cJSON_GetArraySize(items) : 1;

	k->pods = calloc(n ? n : 1, sizeof(*k->pods));
	if (!k->pods)
		goto nomem;
	cJSON_ArrayForEach(item, (cJSON_IsArray(items) ? items : NULL)) {
		const cJSON *spec = cJSON_GetObjectItemCaseSensitive(item, "spec");
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(item, "status");
		const cJSON *ips = cJSON_GetObjectItemCaseSensitive(st, "podIPs"), *ip;
		const char *phase = jstr(st, "phase");
		bool running = phase && !strcmp(phase, "Running");
		size_t idx = k->npods;

		if (!cJSON_IsObject(item) || k->npods >= n ||
		    !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(item, "metadata")))
			continue;  /* not a pod */
		fill_pod(&k->pods[k->npods++], item);
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(spec, "hostNetwork"))) {
			k->host_network++;
			continue;
		}
		if (add_addr(k, &cap, jstr(st, "podIP"), idx, running))
			goto nomem;
		cJSON_ArrayForEach(ip, (cJSON_IsArray(ips) ? ips : NULL))
			if (add_addr(k, &cap, jstr(ip, "ip"), idx, running))
				goto nomem;
	}
	if (!cJSON_IsArray(items)) {
		fill_pod(&k->pods[k->npods++], root);
		if (add_addr(k, &cap, jstr(cJSON_GetObjectItemCaseSensitive(root, "status"), "podIP"), 0,
			     true))
			goto nomem;
	}
	cJSON_Delete(root);
	root = NULL;
	if (k->naddrs)
		qsort(k->addrs, k->naddrs, sizeof(*k->addrs), addr_cmp);
	/* One owner per address: a running pod over a finished one that had the
	 * address before it; between two of the same kind, the first listed. */
	size_t w = 0;

	for (size_t i = 0; i < k->naddrs; i++) {
		if (w && !addr_cmp(&k->addrs[w - 1], &k->addrs[i])) {
			struct kpod_addr *kept = &k->addrs[w - 1];

			if (kept->running == k->addrs[i].running) {
				k->conflicts++;
				if (k->addrs[i].pod < kept->pod)
					*kept = k->addrs[i];
			} else if (k->addrs[i].running) {
				*kept = k->addrs[i];
			}
			continue;
		}
		k->addrs[w++] = k->addrs[i];
	}
	k->naddrs = w;
	for (size_t i = 0; i < k->naddrs; i++) {
		struct pod_info *p = &k->pods[k->addrs[i].pod];

		/* The first address of a pod names it (dual stack: the one podIP gives). */
		if (!p->ip[0])
			inet_ntop(k->addrs[i].family, k->addrs[i].addr, p->ip, sizeof(p->ip));
	}
	return k;
nomem:
	snprintf(err, errlen, "%s: %s", name, strerror(ENOMEM));
	cJSON_Delete(root);
	kpods_free(k);
	return NULL;
}

struct kpods *kpods_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;
	struct kpods *k;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	do {
		if (cap - len < 65536) {
			char *nb = realloc(buf, cap ? cap * 2 : 1 << 20);

			if (!nb) {
				free(buf);
				fclose(f);
				snprintf(err, errlen, "%s: %s", path, strerror(ENOMEM));
				return NULL;
			}
			buf = nb;
			cap = cap ? cap * 2 : 1 << 20;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	if (ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	k = kpods_parse(buf, len, path, err, errlen);
	free(buf);
	return k;
}

void kpods_free(struct kpods *k)
{
	if (!k)
		return;
	free(k->pods);
	free(k->addrs);
	free(k);
}

const struct pod_info *kpods_find(const struct kpods *k, int family, const uint8_t *addr)
{
	struct kpod_addr key = { .family = (uint8_t)family };
	const struct kpod_addr *hit;

	if (!k || !k->naddrs)
		return NULL;
	memcpy(key.addr, addr, family == AF_INET6 ? 16 : 4);
	hit = bsearch(&key, k->addrs, k->naddrs, sizeof(key), addr_cmp);
	return hit ? &k->pods[hit->pod] : NULL;
}

void kpods_counts(const struct kpods *k, size_t *pods, size_t *addrs, size_t *host_network,
		  size_t *conflicts)
{
	*pods = k ? k->npods : 0;
	*addrs = k ? k->naddrs : 0;
	*host_network = k ? k->host_network : 0;
	*conflicts = k ? k->conflicts : 0;
}
