// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Test driver for user/live/ctnl.c and user/live/ctstat.c: watch one network namespace
 * and print what is seen as JSON lines on stdout, one flush per line.
 *
 *   built by tests/live/test_ct_netlink.py (its driver fixture)
 *   ct_nl_dump NETNS_PATH [--dump] [--no-events] [--stat-ms N] [--max N] [--seconds N]
 *             [--rcvbuf N]
 *
 * Lines: {"kind":"ready",...} once subscribed; {"kind":"event",...} per edge
 * ("dump":true for entries listed at start); {"kind":"stat",...} every
 * --stat-ms; {"kind":"end",...} with the counters. Stops after --seconds or on
 * SIGTERM/SIGINT. --no-events reads and counts events but prints none (a
 * reader that does not drain a pipe must not block the driver). --rcvbuf
 * shrinks the event socket's buffer, so that a test can overrun it. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include "ctnl.h"
#include "ctstat.h"
#include "util.h"

static volatile sig_atomic_t stop;
static bool quiet;

static void on_sig(int sig)
{
	stop = 1;
}

static const char *const states[] = {
	"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
	"LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2",
};

static const char *st_name(unsigned s)
{
	return s < sizeof(states) / sizeof(states[0]) ? states[s] : "?";
}

static void tuple(const char *name, const struct ct_tuple *t)
{
	char s[INET6_ADDRSTRLEN] = "", d[INET6_ADDRSTRLEN] = "";
	int af = t->l3 == AF_INET6 ? AF_INET6 : AF_INET;

	inet_ntop(af, t->src, s, sizeof(s));
	inet_ntop(af, t->dst, d, sizeof(d));
	printf("\"%s\":{\"src\":\"%s\",\"sport\":%u,\"dst\":\"%s\",\"dport\":%u,\"l3\":%u,\"l4\":%u}",
	       name, s, t->sport, d, t->dport, t->l3, t->l4);
}

static void on_event(void *arg, const struct ct_event *e)
{
	static const char *const types[] = { "?", "new", "update", "destroy" };

	if (quiet)
		return;

	printf("{\"kind\":\"event\",\"dump\":%s,\"type\":\"%s\",\"id\":%llu,\"netns\":%u,"
	       "\"status\":%u,\"mark\":%u,\"state\":\"%s\",\"old_state\":\"%s\","
	       "\"source\":%u,\"ts_ns\":%llu,",
	       arg ? "true" : "false", e->type <= 3 ? types[e->type] : "?",
	       (unsigned long long)e->id, e->netns, e->status, e->mark,
	       st_name(e->tcp_state), st_name(e->old_tcp_state), e->source,
	       (unsigned long long)e->ts_ns);
	tuple("orig", &e->orig);
	putchar(',');
	tuple("reply", &e->reply);
	puts("}");
	fflush(stdout);
}

static int stat_line(struct ctstat *s)
{
	struct ctstat_vals v;
	int err = ctstat_read(s, &v);

	if (err) {
		printf("{\"kind\":\"stat_error\",\"error\":\"%s\"}\n", strerror(-err));
		fflush(stdout);
		return -1;
	}
	printf("{\"kind\":\"stat\",\"count\":%llu,\"max\":%llu,\"drop\":%llu,"
	       "\"early_drop\":%llu,\"insert_failed\":%llu}\n",
	       (unsigned long long)v.count, (unsigned long long)v.max,
	       (unsigned long long)v.drop, (unsigned long long)v.early_drop,
	       (unsigned long long)v.insert_failed);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t stat_ms = 0, max = 0, secs = 30, ev = 0, lost = 0, rcvbuf = 0;
	const char *ns = NULL;
	struct ctstat *s = NULL;
	struct ctnl *c;
	bool dump = false;
	char why[256], desc[256];
	uint64_t end, next_stat;

	for (int i = 1; i < argc; i++) {
		uint64_t *num = NULL;

		if (!strcmp(argv[i], "--dump"))
			dump = true;
		else if (!strcmp(argv[i], "--no-events"))
			quiet = true;
		else if (!strcmp(argv[i], "--stat-ms"))
			num = &stat_ms;
		else if (!strcmp(argv[i], "--max"))
			num = &max;
		else if (!strcmp(argv[i], "--seconds"))
			num = &secs;
		else if (!strcmp(argv[i], "--rcvbuf"))
			num = &rcvbuf;
		else if (argv[i][0] != '-' && !ns)
			ns = argv[i];
		else
			goto usage;
		if (num && (++i == argc || cs_parse_u64(argv[i], 0, 1u << 30, num) < 0))
			goto usage;
	}
	signal(SIGTERM, on_sig);
	signal(SIGINT, on_sig);

	c = ctnl_open(ns, why, sizeof(why));
	if (!c) {
		cs_fail("watch conntrack", "%s", why);
		return 1;
	}
	if (rcvbuf) {
		int b = (int)rcvbuf;

		setsockopt(ctnl_fd(c), SOL_SOCKET, SO_RCVBUF, &b, sizeof(b));
	}
	if (stat_ms) {
		s = ctstat_open(ns, why, sizeof(why));
		if (!s) {
			cs_fail("open conntrack statistics", "%s", why);
			return 1;
		}
		if (max)
			ctstat_set_max(s, max);
	}
	ctnl_describe(c, desc, sizeof(desc));
	printf("{\"kind\":\"ready\",\"describe\":\"%s\"}\n", desc);
	fflush(stdout);
	if (dump) {
		int n = ctnl_dump(c, on_event, (void *)1);

		printf("{\"kind\":\"dumped\",\"n\":%d}\n", n);
		fflush(stdout);
	}
	end = cs_mono_ns() + secs * 1000000000ull;
	next_stat = cs_mono_ns();
	while (!stop && cs_mono_ns() < end) {
		struct pollfd pfd = { .fd = ctnl_fd(c), .events = POLLIN };
		int r;

		if (s && cs_mono_ns() >= next_stat) {
			stat_line(s);
			next_stat = cs_mono_ns() + stat_ms * 1000000ull;
		}
		r = poll(&pfd, 1, 50);
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0 && ctnl_read(c, on_event, NULL) < 0)
			break;
	}
	ctnl_read(c, on_event, NULL);
	if (s)
		stat_line(s);
	ctnl_counters(c, &ev, &lost);
	printf("{\"kind\":\"end\",\"events\":%llu,\"lost\":%llu}\n",
	       (unsigned long long)ev, (unsigned long long)lost);
	ctstat_close(s);
	ctnl_close(c);
	return 0;
usage:
	fprintf(stderr, "usage: %s [NETNS_PATH] [--dump] [--no-events] [--stat-ms N] "
		"[--max N] [--seconds N] [--rcvbuf N]\n", argv[0]);
	return 2;
}
