// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The Prometheus exposition from summaries made here: the pod labels, a
 * histogram's cumulative buckets, sum and count, the findings by kind, and the
 * bounded remote label: at most N remotes of a pod with a label, the rest under
 * "other", every series a counter that never goes down while remotes take and
 * lose labels across renders. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "check.h"
#include "expo.h"
#include "pods.h"
#include "record.h"
#include "util.h"

#define NR 8

static uint8_t addrs[NR][16];

/* The value of the series `line` (name{labels}) in text, or -1 when absent. */
static double value(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p += n)
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

static char *render(struct expo *x, const struct summary_rec *s, int n)
{
	struct metrics_self self = { .attach = "tp_btf" };
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	check(expo_render_views(x, f, s, n, &self) == 0, "rendered");
	fclose(f);
	return buf;
}

static void set_remote(struct summary_rec *s, int i, uint64_t conns, uint64_t refused)
{
	struct remote_rec *r = &s->all_remotes[i];

	r->ep.family = AF_INET;
	r->ep.addr = addrs[i];
	r->ep.port = 8080;
	r->connections = conns;
	r->refused = refused;
}

static double remote_val(const char *text, const char *fam, int i)
{
	char line[256];

	if (i < 0)
		snprintf(line, sizeof(line), "%s{namespace=\"shop\",pod=\"web\",remote=\"other\"}",
			 fam);
	else
		snprintf(line, sizeof(line),
			 "%s{namespace=\"shop\",pod=\"web\",remote=\"10.0.0.%d:8080\"}", fam, i + 1);
	return value(text, line);
}

static int labelled(const char *text)
{
	int n = 0;

	for (int i = 0; i < NR; i++)
		n += remote_val(text, "connscope_tcp_remote_connections_total", i) >= 0;
	return n;
}

static void remotes(void)
{
	struct pod_info pod = { .is_pod = true, .known = true };
	struct summary_rec s;
	struct expo *x = expo_new(2);
	double last_other = 0, last[NR] = { 0 };
	char *t;

	strcpy(pod.namespace_, "shop");
	strcpy(pod.name, "web");
	for (int i = 0; i < NR; i++) {
		addrs[i][0] = 10;
		addrs[i][3] = (uint8_t)(i + 1);
	}
	memset(&s, 0, sizeof(s));
	s.pod = &pod;
	s.key = "k";
	/* Render 1: remotes 0..5; 2 and 4 have refusals: they take the two labels. */
	s.nall_remotes = 6;
	for (int i = 0; i < 6; i++)
		set_remote(&s, i, 10 + i, i == 2 ? 3 : i == 4 ? 5 : 0);
	t = render(x, &s, 1);
	check(labelled(t) == 2, "two remotes labelled (%d)", labelled(t));
	check(remote_val(t, "connscope_tcp_remote_refused_total", 4) == 5 &&
	      remote_val(t, "connscope_tcp_remote_refused_total", 2) == 3,
	      "the two most troubled have their labels, with their counts");
	check(remote_val(t, "connscope_tcp_remote_connections_total", -1) == 10 + 11 + 13 + 15,
	      "the others' connections are under other (%g)",
	      remote_val(t, "connscope_tcp_remote_connections_total", -1));
	check(strstr(t, "# TYPE connscope_tcp_remote_connections_total counter\n") != NULL,
	      "a counter family");
	free(t);

	/* Render 2: remote 0 starts failing: 4 refusals, above 3 but not twice: no
	 * change of labels; its counts go on under other. */
	set_remote(&s, 0, 20, 4);
	t = render(x, &s, 1);
	check(remote_val(t, "connscope_tcp_remote_refused_total", 0) < 0 &&
	      remote_val(t, "connscope_tcp_remote_refused_total", -1) == 4,
	      "4 refusals against the weakest label's 3: still under other");
	last_other = remote_val(t, "connscope_tcp_remote_connections_total", -1);
	check(last_other == 20 + 11 + 13 + 15, "other grew by the delta (%g)", last_other);
	free(t);

	/* Render 3: remote 0 reaches 7 refusals, twice and more the weakest's 3:
	 * it takes remote 2's label and counts from now; 2's series ends. */
	set_remote(&s, 0, 24, 7);
	set_remote(&s, 2, 12, 3);
	t = render(x, &s, 1);
	check(remote_val(t, "connscope_tcp_remote_refused_total", 0) == 3 &&
	      remote_val(t, "connscope_tcp_remote_connections_total", 0) == 4,
	      "remote 0 took a label, counting from the render that gave it (%g, %g)",
	      remote_val(t, "connscope_tcp_remote_refused_total", 0),
	      remote_val(t, "connscope_tcp_remote_connections_total", 0));
	check(remote_val(t, "connscope_tcp_remote_refused_total", 2) < 0,
	      "remote 2 lost its label: its series is gone");
	check(labelled(t) == 2, "still two labels (%d)", labelled(t));
	check(remote_val(t, "connscope_tcp_remote_connections_total", -1) == last_other,
	      "other unchanged (%g)", remote_val(t, "connscope_tcp_remote_connections_total", -1));
	free(t);

	/* Renders 4..20: counts grow in random steps, remotes come and go from the
	 * table (the tracker keeps 32): every series only grows while it lasts, and
	 * labels stay <= 2. */
	srand(7);
	for (int i = 0; i < NR; i++)
		last[i] = -1;
	uint64_t conns[NR] = { 24, 11, 13, 13, 14, 15, 0, 0 }, ref[NR] = { 7, 0, 3, 0, 5, 0, 0, 0 };
	for (int round = 0; round < 17; round++) {
		s.nall_remotes = 0;
		for (int i = 0; i < NR; i++) {
			conns[i] += (uint64_t)(rand() % 5);
			ref[i] += (uint64_t)(rand() % 3 == 0 ? rand() % 6 : 0);
			if (rand() % 4 == 0)
				continue;  /* not in the table this time */
			int j = s.nall_remotes++;
			struct remote_rec *r = &s.all_remotes[j];

			r->ep.family = AF_INET;
			r->ep.addr = addrs[i];
			r->ep.port = 8080;
			r->connections = conns[i];
			r->refused = ref[i];
		}
		t = render(x, &s, 1);
		check(labelled(t) <= 2, "round %d: at most two labels (%d)", round, labelled(t));
		double o = remote_val(t, "connscope_tcp_remote_refused_total", -1);
		check(o >= last_other || round == 0, "round %d: other never goes down", round);
		last_other = o;
		for (int i = 0; i < NR; i++) {
			double v = remote_val(t, "connscope_tcp_remote_refused_total", i);

			if (v >= 0) {
				check(last[i] < 0 || v >= last[i], "round %d: remote %d never goes down",
				      round, i);
			}
			last[i] = v;
		}
		free(t);
	}
	expo_free(x);
}

/* A remote the tracker's table lets go of and takes back (live, the kernel's
 * counts went on growing meanwhile) adds to "other" only what it did since. */
static void remote_comes_back(void)
{
	struct pod_info pod = { .is_pod = true, .known = true };
	struct summary_rec s;
	struct expo *x = expo_new(1);
	char *t;

	strcpy(pod.namespace_, "shop");
	strcpy(pod.name, "web");
	memset(&s, 0, sizeof(s));
	s.pod = &pod;
	s.key = "k";
	s.nall_remotes = 2;
	set_remote(&s, 0, 5, 2);   /* the label */
	set_remote(&s, 1, 10, 0);  /* other */
	t = render(x, &s, 1);
	check(remote_val(t, "connscope_tcp_remote_connections_total", -1) == 10,
	      "other: 10 (%g)", remote_val(t, "connscope_tcp_remote_connections_total", -1));
	free(t);
	s.nall_remotes = 1;        /* remote 1 out of the table */
	t = render(x, &s, 1);
	check(remote_val(t, "connscope_tcp_remote_connections_total", -1) == 10,
	      "gone from the table: other stays 10");
	free(t);
	s.nall_remotes = 2;
	set_remote(&s, 1, 15, 0);  /* back, 5 more than when it left */
	t = render(x, &s, 1);
	check(remote_val(t, "connscope_tcp_remote_connections_total", -1) == 15,
	      "back with 15: other 15, not 25 (%g)",
	      remote_val(t, "connscope_tcp_remote_connections_total", -1));
	free(t);
	expo_free(x);
}

static void histogram_and_findings(void)
{
	struct pod_info pod = { .is_pod = true, .known = false };
	struct summary_rec s;
	struct expo *x = expo_new(0);
	struct finding_rec f = { .kind = "close_wait_stuck", .about = FINDING_SOCKET };
	struct finding_rec node = { .kind = "conntrack_pressure", .about = FINDING_NODE };
	const char *L = "{namespace=\"\",pod=\"1b2c-uid\"";
	char line[256], *t;

	strcpy(pod.uid, "1b2c-uid");
	memset(&s, 0, sizeof(s));
	s.pod = &pod;
	s.key = "k";
	/* 3 connects under 256 us (slots <= 8), 2 of 1-2 ms (slot 11), 1 of 20 s (slot 25). */
	s.tcp.connect_hist[3] = 1;
	s.tcp.connect_hist[8] = 2;
	s.tcp.connect_hist[11] = 2;
	s.tcp.connect_hist[25] = 1;
	s.tcp.connect_sum_us = 20003000;
	s.has_tls = true;
	s.tls.all.ok = 4;
	s.tls.all.timeouts = 1;
	f.pod = &pod;
	expo_finding(x, &f);
	expo_finding(x, &f);
	expo_finding(x, &node);
	t = render(x, &s, 1);
#define V(fmt, ...) (snprintf(line, sizeof(line), fmt, __VA_ARGS__), value(t, line))
	check(V("connscope_tcp_connect_duration_seconds_bucket%s,le=\"0.000256\"}", L) == 3,
	      "le 256 us: the 3 under it");
	check(V("connscope_tcp_connect_duration_seconds_bucket%s,le=\"0.001024\"}", L) == 3,
	      "le 1.024 ms: still 3 (slot 11 holds 1.024-2.048 ms)");
	check(V("connscope_tcp_connect_duration_seconds_bucket%s,le=\"0.004096\"}", L) == 5,
	      "le 4.096 ms: 5");
	check(V("connscope_tcp_connect_duration_seconds_bucket%s,le=\"16.777216\"}", L) == 5,
	      "le 16.8 s: 5");
	check(V("connscope_tcp_connect_duration_seconds_bucket%s,le=\"+Inf\"}", L) == 6,
	      "+Inf: all 6");
	check(V("connscope_tcp_connect_duration_seconds_count%s}", L) == 6, "count 6");
	check(V("connscope_tcp_connect_duration_seconds_sum%s}", L) == 20.003, "sum in seconds");
	check(V("connscope_tls_handshakes_total%s,outcome=\"timeout\"}", L) == 1 &&
	      V("connscope_tls_handshakes_total%s,outcome=\"ok\"}", L) == 4,
	      "TLS handshakes by outcome");
	check(V("connscope_findings_total%s,kind=\"close_wait_stuck\"}", L) == 2,
	      "findings by pod and kind");
	check(value(t, "connscope_findings_total{kind=\"conntrack_pressure\"}") == 1,
	      "a node's finding has no pod labels");
	check(V("connscope_findings_total%s,kind=\"tcp_connect_refused\"}", L) == 0 &&
	      V("connscope_findings_total%s,kind=\"tls_handshake_failed\"}", L) == 0,
	      "the kinds a pod can have start at 0 (rate() sees the first)");
	check(V("connscope_findings_total%s,kind=\"h2_goaway\"}", L) < 0,
	      "no HTTP/2 kinds for a pod without HTTP/2");
	check(value(t, "connscope_build_info{version=\"" CONNSCOPE_VERSION "\",attach=\"tp_btf\"}")
	      == 1, "build info");
	check(!strstr(t, "connscope_h2_streams_total{"), "no HTTP/2 series for a pod without");
	check(!strstr(t, "connscope_conntrack_entries "), "no table series where it was not read");
#undef V
	free(t);
	expo_free(x);
}

int main(void)
{
	remotes();
	remote_comes_back();
	histogram_and_findings();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
