// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "output.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "util.h"

static enum cs_fmt fmt;
static bool header_due;
static char outbuf[1 << 16];

void out_init(enum cs_fmt f, bool text_header)
{
	fmt = f;
	header_due = f == FMT_TEXT && text_header;
	setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
}

double out_ms(uint64_t ns)
{
	return (double)(ns / 1000) / 1000.0;
}

cJSON *out_record(const char *type, uint64_t ts_real)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "type", type);
	out_add_ts(o, "ts", ts_real);
	return o;
}

void out_add_ts(cJSON *o, const char *name, uint64_t ts_real)
{
	char ts[40];

	if (!ts_real) {
		cJSON_AddNullToObject(o, name);
		return;
	}
	cs_fmt_ts(ts_real, ts, sizeof(ts));
	cJSON_AddStringToObject(o, name, ts);
}

void out_add_pod(cJSON *o, const struct pod_info *p)
{
	if (p && p->is_pod) {
		cJSON *pod = cJSON_AddObjectToObject(o, "pod");

		if (p->known) {
			cJSON_AddStringToObject(pod, "namespace", p->namespace_);
			cJSON_AddStringToObject(pod, "name", p->name);
		} else {
			cJSON_AddNullToObject(pod, "namespace");
			cJSON_AddNullToObject(pod, "name");
		}
		cJSON_AddStringToObject(pod, "uid", p->uid);
		if (p->container[0])
			cJSON_AddStringToObject(pod, "container", p->container);
		else
			cJSON_AddNullToObject(pod, "container");
	} else {
		cJSON_AddNullToObject(o, "pod");
	}
	if (p && p->cgroup_path[0])
		cJSON_AddStringToObject(o, "cgroup", p->cgroup_path);
	else
		cJSON_AddNullToObject(o, "cgroup");
}

const char *out_ip(int family, const uint8_t *addr, char *buf, unsigned len)
{
	if (!inet_ntop(family == AF_INET6 ? AF_INET6 : AF_INET, addr, buf, len))
		snprintf(buf, len, "?");
	return buf;
}

void out_add_endpoint(cJSON *o, const char *name, int family, const uint8_t *addr,
		      uint16_t port)
{
	cJSON *ep = cJSON_AddObjectToObject(o, name);
	char ip[INET6_ADDRSTRLEN];

	cJSON_AddStringToObject(ep, "ip", out_ip(family, addr, ip, sizeof(ip)));
	cJSON_AddNumberToObject(ep, "port", port);
}

/* ---- text rendering: read back the fields of the record ---- */

static const char *str(const cJSON *o, const char *k, const char *dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double num(const cJSON *o, const char *k, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const cJSON *obj(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* "12:34:56.789" out of the RFC 3339 stamp. */
static void short_time(const cJSON *o, char *buf, size_t len)
{
	const char *ts = str(o, "ts", "");

	snprintf(buf, len, "%.12s", strlen(ts) > 11 ? ts + 11 : ts);
}

static void pod_text(const cJSON *o, char *buf, size_t len)
{
	const cJSON *pod = obj(o, "pod");

	if (cJSON_IsObject(pod)) {
		const char *ns = str(pod, "namespace", NULL), *name = str(pod, "name", NULL);

		if (ns && name)
			snprintf(buf, len, "%s/%s", ns, name);
		else
			snprintf(buf, len, "pod:%.8s", str(pod, "uid", "?"));
	} else {
		snprintf(buf, len, "%s", str(o, "cgroup", "-"));
	}
}

static void ep_text(const cJSON *o, const char *k, char *buf, size_t len)
{
	const cJSON *ep = obj(o, k);
	const char *ip = str(ep, "ip", "?");

	if (strchr(ip, ':'))
		snprintf(buf, len, "[%s]:%.0f", ip, num(ep, "port", 0));
	else
		snprintf(buf, len, "%s:%.0f", ip, num(ep, "port", 0));
}

static void owner_text(const cJSON *o, char *buf, size_t len)
{
	double pid = num(o, "pid", 0);

	if (pid > 0)
		snprintf(buf, len, "%.0f/%s", pid, str(o, "comm", "?"));
	else
		snprintf(buf, len, "-");
}

static void text_connection(const cJSON *o)
{
	const cJSON *tcp = obj(o, "tcp");
	char t[16], pod[64], cl[64], sv[64], own[48];

	if (header_due) {
		printf("%-12s %-6s %-28s %-22s %-22s %-11s %-9s %8s %9s %8s %9s %9s %s\n", "TIME",
		       "SIDE", "POD", "CLIENT", "SERVER", "OUTCOME", "CLOSE", "CONN_MS", "DUR_MS",
		       "CW_MS", "IN", "OUT", "PID/COMM");
		header_due = false;
	}
	short_time(o, t, sizeof(t));
	pod_text(o, pod, sizeof(pod));
	ep_text(o, "client", cl, sizeof(cl));
	ep_text(o, "server", sv, sizeof(sv));
	owner_text(o, own, sizeof(own));
	printf("%-12s %-6s %-28.28s %-22s %-22s %-11s %-9s %8.3f %9.1f %8.0f %9.0f %9.0f %s%s\n", t,
	       str(o, "side", "?"), pod, cl, sv, str(tcp, "outcome", "?"), str(tcp, "close", "?"),
	       num(tcp, "connect_ms", 0), num(o, "duration_ms", 0), num(tcp, "close_wait_ms", 0),
	       num(tcp, "bytes_in", 0), num(tcp, "bytes_out", 0), own,
	       cJSON_IsTrue(obj(o, "preexisting")) ? " (pre-existing)" : "");
}

static void text_finding(const cJSON *o)
{
	char t[16], pod[96];

	short_time(o, t, sizeof(t));
	pod_text(o, pod, sizeof(pod));
	printf("%-12s FINDING %-8s %-22s %s: %s\n", t, str(o, "severity", "?"),
	       str(o, "kind", "?"), pod, str(o, "message", ""));
}

static void text_summary(const cJSON *o)
{
	const cJSON *tcp = obj(o, "tcp"), *cw = obj(o, "close_wait");
	char t[16], pod[96];

	short_time(o, t, sizeof(t));
	pod_text(o, pod, sizeof(pod));
	printf("%-12s SUMMARY %s: opened=%.0f closed=%.0f active=%.0f refused=%.0f timeouts=%.0f "
	       "resets=%.0f close_wait=%.0f stuck=%.0f max_age_s=%.1f\n",
	       t, pod, num(tcp, "opened", 0), num(tcp, "closed", 0), num(tcp, "active", 0),
	       num(tcp, "refused", 0), num(tcp, "timeouts", 0), num(tcp, "resets", 0),
	       num(cw, "current", 0), num(cw, "stuck", 0), num(cw, "max_age_s", 0));
}

static void text_stats(const cJSON *o)
{
	char t[16];

	short_time(o, t, sizeof(t));
	printf("%-12s STATS   phase=%s events=%.0f lost=%.0f map_full=%.0f parser_desync=%.0f "
	       "cpu_ms=%.0f\n",
	       t, str(o, "phase", "?"), num(o, "events", 0), num(o, "lost", 0),
	       num(o, "map_full", 0), num(o, "parser_desync", 0), num(o, "cpu_ms", 0));
}

void out_emit(cJSON *o)
{
	if (fmt == FMT_JSON) {
		char buf[8192];

		if (cJSON_PrintPreallocated(o, buf, sizeof(buf), 0)) {
			fputs(buf, stdout);
		} else {
			char *s = cJSON_PrintUnformatted(o);

			if (s)
				fputs(s, stdout);
			free(s);
		}
		fputc('\n', stdout);
	} else {
		const char *type = str(o, "type", "");

		if (!strcmp(type, "connection"))
			text_connection(o);
		else if (!strcmp(type, "finding"))
			text_finding(o);
		else if (!strcmp(type, "summary"))
			text_summary(o);
		else if (!strcmp(type, "stats"))
			text_stats(o);
	}
	cJSON_Delete(o);
}

void out_flush(void)
{
	fflush(stdout);
}
