// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Which conntrack watcher runs (--conntrack auto|bpf|netlink|off), in which network
 * namespace (--conntrack-netns, default connscope's own: the node's, for a
 * hostNetwork DaemonSet), and the table's pressure once a second.
 *
 * auto takes the BPF netfilter-link program (kernel 6.4 and later), and falls back
 * to ctnetlink events when it cannot load or attach; `connscope check` prints which
 * and why.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ct_events.h"
#include "ctbpf.h"
#include "ctnl.h"
#include "ctstat.h"
#include "ctwatch.h"
#include "track.h"
#include "util.h"

#define PRESSURE_NS 1000000000ull

/* Quiet: GETs of entries the kernel did not keep, at most this many a second
 * (a burst of problem records through a Service, a few microseconds each). */
#define NAT_GETS_PER_S 1000

struct ctwatch {
	struct tracker *t;
	struct ctbpf *bpf;
	struct ctnl *nl;
	struct ctnl *query;       /* quiet: GETs in the watched namespace; NULL: none */
	double tokens;            /* GETs allowed now (NAT_GETS_PER_S, refilled) */
	uint64_t tokens_ns;
	uint64_t nat_gets, nat_gets_skipped;
	struct ctstat *stat;      /* NULL: the table's fill cannot be read there */
	uint64_t next_stat_ns;
	char desc[512];
};

static void on_ct(void *arg, const struct ct_event *e)
{
	struct ctwatch *w = arg;

	if (w->t)
		track_ct_event(w->t, e);
}

static bool get_allowed(struct ctwatch *w)
{
	uint64_t now = cs_mono_ns();

	w->tokens += (double)(now - w->tokens_ns) * NAT_GETS_PER_S / 1e9;
	if (w->tokens > NAT_GETS_PER_S)
		w->tokens = NAT_GETS_PER_S;
	w->tokens_ns = now;
	if (w->tokens < 1)
		return false;
	w->tokens -= 1;
	return true;
}

/* The tracker's way to a socket's translated entry in quiet mode: what the BPF
 * program kept (a flow that turned into a problem conntrack sees), else
 * conntrack's own entry by a GET (a problem it cannot see: a TLS failure, a
 * GOAWAY), tried as the client's socket (original tuple) and as the backend's
 * (reply tuple). An entry that nothing translated is not a NAT. */
static int kept_nat(void *arg, const struct ct_tuple *key, struct ct_event *out)
{
	struct ctwatch *w = arg;
	static bool eperm_told;
	int err;

	if (!ctbpf_nat(w->bpf, key, out))
		return 0;
	if (!w->query)
		return -1;
	if (!get_allowed(w)) {
		w->nat_gets_skipped++;
		return -1;
	}
	w->nat_gets++;
	err = ctnl_get(w->query, key, false, out);
	if (err == -EPERM && !eperm_told) {
		eperm_told = true;
		cs_warn("conntrack: ctnetlink GET: %s (needs CAP_NET_ADMIN): the problems conntrack "
			"does not see (a TLS failure) have no nat", strerror(EPERM));
	}
	if (err && ctnl_get(w->query, key, true, out))
		return -1;
	return out->status & (CT_S_SRC_NAT | CT_S_DST_NAT) ? 0 : -1;
}

struct ctwatch *ctwatch_open(const struct cs_opts *o, struct tracker *t)
{
	struct ctwatch *w = calloc(1, sizeof(*w));
	char why_bpf[256] = "", why_nl[256] = "";
	const char *where = o->conntrack_netns ? o->conntrack_netns : "connscope's own netns";

	if (!w)
		return NULL;
	w->t = t;
	if (o->conntrack == CT_OFF) {
		snprintf(w->desc, sizeof(w->desc), "off (--conntrack=off)");
		return w;
	}
	if (o->conntrack == CT_AUTO || o->conntrack == CT_BPF)
		/* With only problem records asked for, healthy flows stay in the
		 * kernel (a record's NAT needs only translated entries). */
		w->bpf = ctbpf_open_hooks(o->conntrack_netns, CTBPF_DEFAULT_HOOKS |
					  (o->connections != CONNS_ALL ? CTBPF_QUIET : 0),
					  why_bpf, sizeof(why_bpf));
	if (w->bpf && o->connections != CONNS_ALL && t) {
		struct track_ct_kernel k = { w, kept_nat };
		char why[256];

		w->query = ctnl_open_query(o->conntrack_netns, why, sizeof(why));
		if (!w->query)
			cs_warn("conntrack: no ctnetlink GET (%s): a problem that conntrack does "
				"not see (a TLS failure) has no nat", why);
		w->tokens = NAT_GETS_PER_S;
		w->tokens_ns = cs_mono_ns();
		track_set_ct_kernel(t, &k);
	}
	if (!w->bpf && (o->conntrack == CT_AUTO || o->conntrack == CT_NETLINK)) {
		w->nl = ctnl_open(o->conntrack_netns, why_nl, sizeof(why_nl));
		if (w->nl)
			ctnl_dump(w->nl, on_ct, w);  /* entries older than us */
	}
	if (w->bpf || w->nl) {
		char why[256];

		w->stat = ctstat_open(o->conntrack_netns, why, sizeof(why));
		if (w->stat && o->ct_max)
			ctstat_set_max(w->stat, o->ct_max);
		if (!w->stat)
			cs_warn("conntrack_pressure is not watched: %s", why);
	}
	if (w->bpf) {
		char d[384];

		ctbpf_describe(w->bpf, d, sizeof(d));
		snprintf(w->desc, sizeof(w->desc), "BPF netfilter link in %s: %s", where, d);
	} else if (w->nl) {
		char d[256];

		ctnl_describe(w->nl, d, sizeof(d));
		snprintf(w->desc, sizeof(w->desc), "ctnetlink events in %s: %s%s%s", where, d,
			 why_bpf[0] ? " (BPF netfilter link not used: " : "", why_bpf[0] ? why_bpf : "");
		if (why_bpf[0])
			strncat(w->desc, ")", sizeof(w->desc) - strlen(w->desc) - 1);
	} else {
		snprintf(w->desc, sizeof(w->desc), "NOT observed in %s: %s%s%s", where,
			 why_bpf[0] ? why_bpf : "", why_bpf[0] && why_nl[0] ? "; " : "",
			 why_nl[0] ? why_nl : "");
	}
	return w;
}


void ctwatch_poll(struct ctwatch *w)
{
	struct ctstat_vals st;
	uint64_t now;

	if (!w || (!w->bpf && !w->nl))
		return;
	if (w->bpf)
		ctbpf_poll(w->bpf, 0, on_ct, w);
	if (w->nl)
		ctnl_read(w->nl, on_ct, w);
	now = cs_mono_ns();
	if (now < w->next_stat_ns)
		return;
	w->next_stat_ns = now + PRESSURE_NS;
	if (w->stat && ctstat_read(w->stat, &st) == 0 && w->t)
		track_ct_pressure(w->t, st.count, st.max, st.drop, st.insert_failed, st.early_drop);
}

int ctwatch_fd(const struct ctwatch *w)
{
	if (w && w->bpf)
		return ctbpf_fd(w->bpf);
	return w && w->nl ? ctnl_fd(w->nl) : -1;
}

void ctwatch_counters(const struct ctwatch *w, uint64_t *events, uint64_t *lost,
		      uint64_t *map_full, uint64_t *map_evictions)
{
	*events = *lost = *map_full = *map_evictions = 0;
	if (w && w->bpf) {
		ctbpf_counters(w->bpf, events, lost, map_full);
		*map_evictions = ctbpf_evictions(w->bpf);
	}
	if (w && w->nl)
		ctnl_counters(w->nl, events, lost);
}

void ctwatch_nat_gets(const struct ctwatch *w, uint64_t *gets, uint64_t *skipped)
{
	*gets = w ? w->nat_gets : 0;
	*skipped = w ? w->nat_gets_skipped : 0;
}

const char *ctwatch_describe(const struct ctwatch *w)
{
	return w ? w->desc : "not started";
}

void ctwatch_close(struct ctwatch *w)
{
	if (!w)
		return;
	ctbpf_close(w->bpf);
	ctnl_close(w->nl);
	ctnl_close(w->query);
	ctstat_close(w->stat);
	free(w);
}
