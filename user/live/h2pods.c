// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The pods whose processes carry the HTTP/2-in-TLS probes: see h2pods.h.
 *
 * A pod is its cgroup (the kubelet's pod-level directory, its containers below):
 * the path relative to the cgroup2 mount, found once and kept until the directory
 * is gone. Named pods are looked up in the pods dir and the cgroup tree (pods.c);
 * a finding's pod already carries its cgroup path.
 */
#include "h2pods.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

#define REFRESH_EVERY 10     /* calls (~s) between lookups of new pods of the selectors */
#define MISSING_EVERY 2      /* ... while a named pod is not found */

struct sel {
	char ns[64];
	char name[256];          /* "": every pod of ns */
};

struct probed {
	char path[512];          /* the pod's cgroup, relative to the cgroup2 root */
	char uid[40];
	char label[330];
	uint64_t until_ns;       /* auto: when its time is up; 0: named, no end */
	bool seen;               /* named: found at this lookup */
};

struct h2pods {
	struct pod_resolver *r;
	bool is_auto;
	uint64_t for_ns;
	struct sel *sel;
	size_t nsel;
	struct probed pod[H2PODS_MAX];
	size_t npod;
	unsigned calls;
	bool missing;            /* a named pod was not found at the last lookup */
};

struct h2pods *h2pods_new(struct pod_resolver *r, const char *list, double for_s)
{
	struct h2pods *p = calloc(1, sizeof(*p));
	const char *s = list;

	if (!p)
		return NULL;
	p->r = r;
	p->is_auto = !list;
	p->for_ns = (uint64_t)(for_s * 1e9);
	while (s && *s) {
		const char *slash = strchr(s, '/'), *end = s + strcspn(s, ",");
		struct sel *n;

		if (!slash || slash > end)
			break;  /* the command line checked the form */
		n = realloc(p->sel, (p->nsel + 1) * sizeof(*n));
		if (!n)
			break;
		p->sel = n;
		n = &p->sel[p->nsel++];
		snprintf(n->ns, sizeof(n->ns), "%.*s", (int)(slash - s), s);
		snprintf(n->name, sizeof(n->name), "%.*s", (int)(end - slash - 1), slash + 1);
		s = *end ? end + 1 : end;
	}
	p->missing = true;
	return p;
}

static struct probed *by_uid(struct h2pods *p, const char *uid)
{
	for (size_t i = 0; i < p->npod; i++)
		if (!strcmp(p->pod[i].uid, uid))
			return &p->pod[i];
	return NULL;
}

static void drop(struct h2pods *p, size_t i)
{
	p->pod[i] = p->pod[--p->npod];
}

bool h2pods_flag(struct h2pods *p, const char *kind, const struct pod_info *pi)
{
	struct probed *e;
	char path[512], uid[40];

	if (!p || !p->is_auto || !kind || !pi ||
	    (strcmp(kind, "h2_reuse_churn") && strcmp(kind, "h2_goaway")))
		return false;
	/* Pods only: a cgroup outside the kubelet's layout (the node's own services,
	 * or the root) could hold every process of the node. */
	if (!pi->is_pod || !pods_pod_path(pi->cgroup_path, path, sizeof(path), uid))
		return false;
	e = by_uid(p, uid);
	if (e) {
		e->until_ns = cs_mono_ns() + p->for_ns;
		return false;
	}
	if (p->npod == H2PODS_MAX)
		return false;
	e = &p->pod[p->npod++];
	memset(e, 0, sizeof(*e));
	snprintf(e->path, sizeof(e->path), "%s", path);
	snprintf(e->uid, sizeof(e->uid), "%s", uid);
	if (pi->known)
		snprintf(e->label, sizeof(e->label), "%s/%s", pi->namespace_, pi->name);
	else
		snprintf(e->label, sizeof(e->label), "pod:%s", uid);
	e->until_ns = cs_mono_ns() + p->for_ns;
	return true;
}

struct found_ctx {
	struct h2pods *p;
	const struct sel *sel;
};

static void on_found(const char *path, const char *uid, const char *name, void *arg)
{
	struct found_ctx *c = arg;
	struct probed *e = by_uid(c->p, uid);

	if (!e) {
		if (c->p->npod == H2PODS_MAX)
			return;
		e = &c->p->pod[c->p->npod++];
		memset(e, 0, sizeof(*e));
		snprintf(e->uid, sizeof(e->uid), "%s", uid);
	}
	snprintf(e->path, sizeof(e->path), "%s", path);
	snprintf(e->label, sizeof(e->label), "%s/%s", c->sel->ns, name);
	e->seen = true;
}

/* Named pods: look them up (new pods of an NS/ selector, a pod recreated under its
 * name with a new UID); those not found any more are dropped. */
static void lookup_named(struct h2pods *p)
{
	bool refresh = p->calls > 1;

	for (size_t i = 0; i < p->npod; i++)
		p->pod[i].seen = false;
	p->missing = false;
	for (size_t i = 0; i < p->nsel; i++) {
		struct found_ctx c = { p, &p->sel[i] };

		if (!pods_find(p->r, p->sel[i].ns, p->sel[i].name[0] ? p->sel[i].name : NULL,
			       refresh, on_found, &c))
			p->missing = true;
		refresh = false;  /* once per lookup is enough */
	}
	for (size_t i = p->npod; i-- > 0;)
		if (!p->pod[i].seen)
			drop(p, i);
}

void h2pods_pids(struct h2pods *p, struct pid_list *l)
{
	uint64_t now = cs_mono_ns();

	l->n = 0;
	if (!p)
		return;
	p->calls++;
	if (!p->is_auto && (p->calls == 1 || p->calls % REFRESH_EVERY == 0 ||
			    (p->missing && p->calls % MISSING_EVERY == 0)))
		lookup_named(p);
	for (size_t i = p->npod; i-- > 0;) {
		struct probed *e = &p->pod[i];

		if ((e->until_ns && now >= e->until_ns) || pods_cgroup_procs(p->r, e->path, l)) {
			/* Time is up, or the pod's cgroup is gone (a named pod is looked
			 * up again: recreated, it has a new UID). */
			if (!e->until_ns)
				p->missing = true;
			drop(p, i);
		}
	}
}

size_t h2pods_count(const struct h2pods *p)
{
	return p ? p->npod : 0;
}

const char *h2pods_label(const struct h2pods *p, size_t i)
{
	return p && i < p->npod ? p->pod[i].label : NULL;
}

void h2pods_free(struct h2pods *p)
{
	if (!p)
		return;
	free(p->sel);
	free(p);
}
