// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "top.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include "util.h"

#define RECENT 6

static char recent[RECENT][256];
static int nrecent, recent_pos;

void top_note_finding(const struct finding_rec *f)
{
	char ts[40] = "";

	if (f->ts_real)
		cs_fmt_ts(f->ts_real, ts, sizeof(ts));
	snprintf(recent[recent_pos], sizeof(recent[0]), "%.8s %-20s %s",
		 strlen(ts) > 19 ? ts + 11 : "", f->kind, f->message);
	recent_pos = (recent_pos + 1) % RECENT;
	if (nrecent < RECENT)
		nrecent++;
}

/* How bad a pod looks: stuck sockets and failed connects first. */
static uint64_t trouble(const struct pod_agg *a)
{
	return a->cw_stuck * 1000 + (a->timeouts + a->refused + a->tls.timeouts + a->tls.failed) * 10 +
	       a->resets + a->failed;
}

static int cmp(const void *pa, const void *pb)
{
	const struct pod_agg *a = *(struct pod_agg *const *)pa, *b = *(struct pod_agg *const *)pb;
	uint64_t ta = trouble(a), tb = trouble(b);

	if (ta != tb)
		return ta < tb ? 1 : -1;
	if (a->active != b->active)
		return a->active < b->active ? 1 : -1;
	return strcmp(a->key, b->key);
}

static void pod_name(const struct pod_agg *a, char *buf, size_t len)
{
	if (a->pod.known)
		snprintf(buf, len, "%s/%s", a->pod.namespace_, a->pod.name);
	else if (a->pod.is_pod)
		snprintf(buf, len, "pod:%s", a->pod.uid);
	else
		snprintf(buf, len, "%s", a->pod.cgroup_path[0] ? a->pod.cgroup_path : a->key);
}

static void top_remote(const struct pod_agg *a, char *buf, size_t len)
{
	const struct remote_agg *best = NULL;
	char ip[64];

	for (int i = 0; i < a->nremotes; i++) {
		const struct remote_agg *r = &a->remotes[i];
		uint64_t p = r->refused + r->timeouts + r->resets;

		if (!best || p > best->refused + best->timeouts + best->resets ||
		    (p == best->refused + best->timeouts + best->resets && r->conns > best->conns))
			best = r;
	}
	if (!best) {
		snprintf(buf, len, "-");
		return;
	}
	if (!inet_ntop(best->family == AF_INET6 ? AF_INET6 : AF_INET, best->addr, ip, sizeof(ip)))
		snprintf(ip, sizeof(ip), "?");
	if (best->port)
		snprintf(buf, len, "%s:%u (%llu)", ip, best->port, (unsigned long long)best->conns);
	else
		snprintf(buf, len, "%s (%llu)", ip, (unsigned long long)best->conns);
}

void top_render(struct tracker *t, const struct top_stats *st, double interval_s, bool final)
{
	struct pod_agg **pods = NULL;
	int n = track_pods(t, &pods);
	bool tty = isatty(STDOUT_FILENO);

	if (n < 0)
		return;
	for (int i = 0; i < n; i++) {
		struct pod_agg *a = pods[i];

		a->open_rate = interval_s > 0 ? (a->opened - a->rate_prev_opened) / interval_s : 0;
		a->rate_prev_opened = a->opened;
	}
	qsort(pods, n, sizeof(*pods), cmp);
	if (tty && !final)
		fputs("\033[H\033[2J", stdout);
	printf("connscope top - %.0fs, %d pods, events %llu, lost %llu, map_full %llu, cpu %.0f ms, "
	       "attach %s%s\n",
	       st->elapsed_s, n, (unsigned long long)st->events, (unsigned long long)st->lost,
	       (unsigned long long)st->map_full, st->cpu_ms, st->attach, final ? " (final)" : "");
	printf("%-36s %7s %7s %8s %8s %8s %7s %5s %6s %8s %7s %8s %8s %7s %8s %6s  %s\n", "POD",
	       "ACTIVE", "NEW/s", "CLOSED", "REFUSED", "TIMEOUT", "RESETS", "CW", "STUCK", "CW_AGE",
	       "TLS", "TLS_BAD", "TLS_P99", "H2_CONN", "H2_S/CON", "GOAWAY", "TOP REMOTE");
	for (int i = 0; i < n; i++) {
		const struct pod_agg *a = pods[i];
		char name[64], rem[96], p99[16], spc[16];
		double p = track_tls_pct(&a->tls, 99), s = h2_streams_per_conn(a);

		pod_name(a, name, sizeof(name));
		top_remote(a, rem, sizeof(rem));
		if (p >= 0)
			snprintf(p99, sizeof(p99), "%.1fms", p);
		else
			snprintf(p99, sizeof(p99), "-");
		if (s >= 0)
			snprintf(spc, sizeof(spc), "%.1f", s);
		else
			snprintf(spc, sizeof(spc), "-");
		printf("%-36.36s %7lld %7.1f %8llu %8llu %8llu %7llu %5llu %6llu %7.1fs %7llu %8llu %8s "
		       "%7llu %8s %6llu  %s\n",
		       name, (long long)(a->active > 0 ? a->active : 0), a->open_rate,
		       (unsigned long long)a->closed, (unsigned long long)a->refused,
		       (unsigned long long)a->timeouts, (unsigned long long)a->resets,
		       (unsigned long long)a->cw_current, (unsigned long long)a->cw_stuck,
		       a->cw_max_age_s, (unsigned long long)a->tls.handshakes,
		       (unsigned long long)(a->tls.failed + a->tls.timeouts), p99,
		       (unsigned long long)a->h2.connections, spc, (unsigned long long)a->h2.goaway, rem);
	}
	if (nrecent) {
		printf("\nRECENT FINDINGS\n");
		for (int i = 0; i < nrecent; i++)
			printf("  %s\n", recent[(recent_pos - nrecent + i + RECENT) % RECENT]);
	}
	if (!tty || final)
		putchar('\n');
	fflush(stdout);
	free(pods);
}
