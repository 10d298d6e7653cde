// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "top.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include "kmap.h"
#include "output.h"
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
static uint64_t trouble(const struct summary_rec *a)
{
	return a->close_wait.stuck * 1000 +
	       (a->tcp.timeouts + a->tcp.refused + a->tls.all.timeouts + a->tls.all.failed) * 10 +
	       a->tcp.resets + a->tcp.failed;
}

static int cmp(const void *pa, const void *pb)
{
	const struct summary_rec *a = pa, *b = pb;
	uint64_t ta = trouble(a), tb = trouble(b);

	if (ta != tb)
		return ta < tb ? 1 : -1;
	if (a->tcp.active != b->tcp.active)
		return a->tcp.active < b->tcp.active ? 1 : -1;
	return strcmp(a->key, b->key);
}

static void pod_name(const struct summary_rec *a, char *buf, size_t len)
{
	if (a->pod->known)
		snprintf(buf, len, "%s/%s", a->pod->namespace_, a->pod->name);
	else if (a->pod->is_pod)
		snprintf(buf, len, "pod:%s", a->pod->uid);
	else
		snprintf(buf, len, "%s", a->pod->cgroup_path[0] ? a->pod->cgroup_path : a->key);
}

/* The summary's remotes come most troubled first, then busiest. */
static void top_remote(const struct summary_rec *a, char *buf, size_t len)
{
	char ip[64];

	if (!a->nremotes) {
		snprintf(buf, len, "-");
		return;
	}
	out_ip(a->remotes[0].ep.family, a->remotes[0].ep.addr, ip, sizeof(ip));
	if (a->remotes[0].ep.port)
		snprintf(buf, len, "%s:%u (%llu)", ip, a->remotes[0].ep.port,
			 (unsigned long long)a->remotes[0].connections);
	else
		snprintf(buf, len, "%s (%llu)", ip, (unsigned long long)a->remotes[0].connections);
}

/* New connections per second: what each pod had opened at the last frame. */
static struct kmap prev_opened;  /* pod key -> uint64_t (malloc'd) */

static double open_rate(const struct summary_rec *a, double interval_s)
{
	char key[sizeof(((struct pod_agg *)0)->key)] = { 0 };
	uint64_t *prev;
	double rate;

	if (!prev_opened.klen)
		kmap_init(&prev_opened, sizeof(key), NULL);
	snprintf(key, sizeof(key), "%s", a->key);
	prev = kmap_get(&prev_opened, key);
	if (!prev) {
		if (!(prev = calloc(1, sizeof(*prev))) || kmap_put(&prev_opened, key, prev)) {
			free(prev);
			return 0;
		}
	}
	rate = interval_s > 0 ? (a->tcp.opened - *prev) / interval_s : 0;
	*prev = a->tcp.opened;
	return rate;
}

void top_render(struct tracker *t, const struct top_stats *st, double interval_s, bool final)
{
	struct summary_rec *pods = NULL;
	int n = track_views(t, &pods);
	bool tty = isatty(STDOUT_FILENO);
	double *rate;

	if (n < 0)
		return;
	rate = calloc((size_t)n + 1, sizeof(*rate));
	if (!rate) {
		track_views_free(pods, n);
		return;
	}
	qsort(pods, n, sizeof(*pods), cmp);
	for (int i = 0; i < n; i++)
		rate[i] = open_rate(&pods[i], interval_s);
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
		const struct summary_rec *a = &pods[i];
		char name[64], rem[96], p99[16], spc[16];

		pod_name(a, name, sizeof(name));
		top_remote(a, rem, sizeof(rem));
		if (a->has_tls && a->tls.all.p99_ms >= 0)
			snprintf(p99, sizeof(p99), "%.1fms", a->tls.all.p99_ms);
		else
			snprintf(p99, sizeof(p99), "-");
		if (a->has_h2 && a->h2.streams_per_conn >= 0)
			snprintf(spc, sizeof(spc), "%.1f", a->h2.streams_per_conn);
		else if (a->has_h2)
			snprintf(spc, sizeof(spc), "tls");  /* streams unseen: TLS on the wire */
		else
			snprintf(spc, sizeof(spc), "-");
		printf("%-36.36s %7llu %7.1f %8llu %8llu %8llu %7llu %5llu %6llu %7.1fs %7llu %8llu %8s "
		       "%7llu %8s %6llu  %s\n",
		       name, (unsigned long long)a->tcp.active, rate[i],
		       (unsigned long long)a->tcp.closed, (unsigned long long)a->tcp.refused,
		       (unsigned long long)a->tcp.timeouts, (unsigned long long)a->tcp.resets,
		       (unsigned long long)a->close_wait.current, (unsigned long long)a->close_wait.stuck,
		       a->close_wait.max_age_s, (unsigned long long)a->tls.all.handshakes,
		       (unsigned long long)(a->tls.all.failed + a->tls.all.timeouts), p99,
		       (unsigned long long)a->h2.connections, spc, (unsigned long long)a->h2.goaway, rem);
	}
	free(rate);
	if (nrecent) {
		printf("\nRECENT FINDINGS\n");
		for (int i = 0; i < nrecent; i++)
			printf("  %s\n", recent[(recent_pos - nrecent + i + RECENT) % RECENT]);
	}
	if (!tty || final)
		putchar('\n');
	fflush(stdout);
	track_views_free(pods, n);
}
