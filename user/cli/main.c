// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * connscope: why connections between services go wrong.
 * One binary, five commands: top, trace, daemon, replay, check.
 */
#include <argp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "live.h"
#include "loader.h"
#include "replay.h"
#include "opts.h"
#include "util.h"
#include "holders.h"

static const struct {
	const char *name;
	enum cs_cmd cmd;
	const char *args;
	const char *doc;
} commands[] = {
	{ "top", CMD_TOP, "",
	  "Live per-pod table for an incident: connections, failed connects, resets and "
	  "sockets stuck in CLOSE_WAIT, problems first.\v"
	  "EXAMPLES:\n"
	  "  connscope top                       every pod of this node, every 2 s\n"
	  "  connscope top --namespace shop -i 5\n" },
	{ "trace", CMD_TRACE, "",
	  "Live stream of connection and finding records.\v"
	  "EXAMPLES:\n"
	  "  connscope trace                     aligned text columns\n"
	  "  connscope trace -o json --pod shop/frontend -d 60\n"
	  "  connscope trace --port 5432 --close-wait-threshold 30\n" },
	{ "daemon", CMD_DAEMON, "",
	  "DaemonSet mode: JSON lines on stdout, with per-pod summaries every interval.\v"
	  "EXAMPLES:\n"
	  "  connscope daemon -i 30\n" },
	{ "replay", CMD_REPLAY, "FILE...",
	  "Offline replay of pcap/pcapng files into the same records.\v"
	  "EXAMPLES:\n"
	  "  connscope replay node1.pcap --pods pods.json -o json\n" },
	{ "check", CMD_CHECK, "",
	  "Show what this kernel supports and which attach points and fallbacks are chosen.\v"
	  "EXAMPLES:\n"
	  "  connscope check\n" },
};

enum {
	OPT_POD = 0x100, OPT_NS, OPT_PORT, OPT_CW, OPT_TLS, OPT_CONNECT, OPT_PODS_DIR,
	OPT_METRICS, OPT_METRICS_REMOTES, OPT_KEYLOG, OPT_PODS_FILE, OPT_ATTACH, OPT_NO_SNAPSHOT, OPT_WINDOW, OPT_CGROUP,
	OPT_H2_WINDOW, OPT_H2_CHURN_CONNS, OPT_H2_CHURN_STREAMS, OPT_H2_GOAWAY_RUNS,
	OPT_CONNTRACK, OPT_CONNTRACK_NETNS, OPT_CONNTRACK_PRESSURE, OPT_CONNTRACK_MAX,
	OPT_STACKS, OPT_H2_PLAINTEXT, OPT_USAGE, OPT_CONNECTIONS, OPT_OUTPUT_QUEUE,
	OPT_IDLE_CUT, OPT_H2_PLAINTEXT_FOR,
};

/* Which commands take an option: one bit per enum cs_cmd. */
#define ON_TOP    (1u << CMD_TOP)
#define ON_TRACE  (1u << CMD_TRACE)
#define ON_DAEMON (1u << CMD_DAEMON)
#define ON_REPLAY (1u << CMD_REPLAY)
#define ON_CHECK  (1u << CMD_CHECK)
#define ON_LIVE   (ON_TOP | ON_TRACE | ON_DAEMON)
#define ON_ALL    (ON_LIVE | ON_REPLAY | ON_CHECK)

enum { G_FILTERS = 1, G_THRESHOLDS, G_OUTPUT, G_ENV, G_INPUT };

/*
 * Every option of every command, each with the commands that take it. A command
 * parses, lists in --help and --usage, and accepts only its own rows; an option
 * whose meaning differs per command has a row per meaning. Group headers are
 * listed where at least one option of their group is.
 */
static const struct cs_option {
	unsigned cmds;
	struct argp_option opt;
} all_options[] = {
	{ 0, { NULL, 0, NULL, 0, "Filters:", G_FILTERS } },
	{ ON_LIVE | ON_REPLAY, { "pod", OPT_POD, "[NS/]NAME", 0, "Only this pod", G_FILTERS } },
	{ ON_LIVE | ON_REPLAY,
	  { "namespace", OPT_NS, "NS", 0, "Only pods in this namespace", G_FILTERS } },
	{ ON_LIVE | ON_REPLAY,
	  { "port", OPT_PORT, "N", 0, "Only connections with this local or remote port", G_FILTERS } },

	{ 0, { NULL, 0, NULL, 0, "Thresholds:", G_THRESHOLDS } },
	{ ON_LIVE | ON_REPLAY, { "close-wait-threshold", OPT_CW, "SEC", 0,
	  "A socket in CLOSE_WAIT longer than this is stuck (default 5)", G_THRESHOLDS } },
	{ ON_LIVE | ON_REPLAY, { "connect-timeout", OPT_CONNECT, "SEC", 0,
	  "A connect still unanswered after this is a timeout (default 3)", G_THRESHOLDS } },
	{ ON_LIVE | ON_REPLAY, { "tls-timeout", OPT_TLS, "SEC", 0,
	  "TLS handshake timeout (default 10, Go's default)", G_THRESHOLDS } },
	{ ON_LIVE | ON_REPLAY, { "finding-window", OPT_WINDOW, "SEC", 0,
	  "Repeats of a finding for one pod and remote within this window are folded "
	  "into one record with a count (default 10)", G_THRESHOLDS } },
	{ ON_LIVE | ON_REPLAY, { "idle-cut", OPT_IDLE_CUT, "SEC", 0,
	  "peer_reset: a reset after SEC or more without anything received names the "
	  "cause idle_cut, an idle timeout in between (default 30)", G_THRESHOLDS } },
	{ ON_LIVE | ON_REPLAY, { "h2-window", OPT_H2_WINDOW, "SEC", 0,
	  "Sliding window of the HTTP/2 reuse figures and findings (default 30)", G_THRESHOLDS } },
	{ ON_LIVE | ON_REPLAY, { "h2-churn-conns", OPT_H2_CHURN_CONNS, "N", 0,
	  "h2_reuse_churn: at least N connections to one remote closed in the window "
	  "(default 20)...", G_THRESHOLDS } },
	{ ON_LIVE | ON_REPLAY, { "h2-churn-streams", OPT_H2_CHURN_STREAMS, "X", 0,
	  "...carrying at most X streams each on average (default 1.5)", G_THRESHOLDS } },
	{ ON_LIVE | ON_REPLAY, { "h2-goaway-runs", OPT_H2_GOAWAY_RUNS, "N", 0,
	  "h2_goaway: N connections to one remote ended by GOAWAY in the window (default 3; "
	  "a GOAWAY with an error code is reported at once)", G_THRESHOLDS } },
	/* Replay reads no conntrack table: these two are live only. */
	{ ON_LIVE, { "conntrack-pressure", OPT_CONNTRACK_PRESSURE, "PCT", 0,
	  "conntrack_pressure: when the table is this full, in % of nf_conntrack_max "
	  "(default 90)", G_THRESHOLDS } },
	{ ON_LIVE, { "conntrack-max", OPT_CONNTRACK_MAX, "N", 0,
	  "conntrack_pressure: measure the table against N entries instead of the kernel's "
	  "nf_conntrack_max (to be warned before a limit of your own)", G_THRESHOLDS } },

	{ 0, { NULL, 0, NULL, 0, "Output and run time:", G_OUTPUT } },
	{ ON_TRACE | ON_REPLAY,
	  { "output", 'o', "text|json", 0, "Record format (default text)", G_OUTPUT } },
	/* daemon writes JSON lines only; -o json stays accepted, as it always was. */
	{ ON_DAEMON, { "output", 'o', "json", 0,
	  "Record format: JSON lines, the only one daemon writes", G_OUTPUT } },
	{ ON_TOP, { "interval", 'i', "SEC", 0,
	  "Refresh the table every SEC seconds (default 2)", G_OUTPUT } },
	{ ON_TRACE, { "interval", 'i', "SEC", 0,
	  "Also write summary and stats records every SEC seconds (default: never)", G_OUTPUT } },
	{ ON_DAEMON, { "interval", 'i', "SEC", 0,
	  "Write summary and stats records every SEC seconds (default 10)", G_OUTPUT } },
	{ ON_TRACE | ON_REPLAY, { "connections", OPT_CONNECTIONS, "all|problems|none", 0,
	  "Which connection records to write: every connection (the default), only "
	  "problems (failed, refused, timed-out or reset connects, resets, stuck CLOSE_WAIT, "
	  "TLS failures, HTTP/2 errors), or none (findings and summaries only)", G_OUTPUT } },
	{ ON_DAEMON, { "connections", OPT_CONNECTIONS, "all|problems|none", 0,
	  "Which connection records to write (default problems: healthy connections are "
	  "counted in the kernel and cost no record)", G_OUTPUT } },
	{ ON_LIVE, { "duration", 'd', "SEC", 0, "Stop by itself after SEC seconds", G_OUTPUT } },
	{ ON_TRACE | ON_DAEMON, { "output-queue", OPT_OUTPUT_QUEUE, "MIB", 0,
	  "Hold at most MIB MiB of records that stdout has not taken yet (default 8); past "
	  "it, records are dropped and counted, never waited for", G_OUTPUT } },
	{ ON_DAEMON, { "metrics-addr", OPT_METRICS, "HOST:PORT", 0,
	  "Serve Prometheus /metrics on this address", G_OUTPUT } },
	{ ON_DAEMON, { "metrics-remotes", OPT_METRICS_REMOTES, "N", 0,
	  "Per pod, remotes with a label of their own in /metrics (default 5; the rest: "
	  "\"other\")", G_OUTPUT } },

	{ 0, { NULL, 0, NULL, 0, "Environment:", G_ENV } },
	{ ON_LIVE | ON_CHECK, { "pods-dir", OPT_PODS_DIR, "DIR", 0,
	  "Kubelet pod log directory for pod names (default /var/log/pods)", G_ENV } },
	{ ON_LIVE | ON_CHECK, { "cgroup", OPT_CGROUP, "DIR", 0,
	  "Attach the packet programs (TLS) to this cgroup2 directory instead of the "
	  "cgroup2 root; only its sockets are watched for TLS", G_ENV } },
	{ ON_LIVE | ON_CHECK, { "attach", OPT_ATTACH, "auto|tp_btf|raw_tp", 0,
	  "Force an attach type instead of the run-time choice (default auto)", G_ENV } },
	{ ON_LIVE, { "no-snapshot", OPT_NO_SNAPSHOT, NULL, 0,
	  "Do not read the sockets that existed before start", G_ENV } },
	{ ON_LIVE | ON_CHECK, { "conntrack", OPT_CONNTRACK, "auto|bpf|netlink|off", 0,
	  "How conntrack is watched, for NAT and forwarded flows (default auto: the BPF "
	  "netfilter program, else ctnetlink)", G_ENV } },
	{ ON_LIVE | ON_CHECK, { "conntrack-netns", OPT_CONNTRACK_NETNS, "PATH", 0,
	  "Watch conntrack in this network namespace (a /run/netns or /proc/PID/ns/net path; "
	  "default: connscope's own, the node's for a hostNetwork DaemonSet)", G_ENV } },
	{ ON_LIVE | ON_CHECK, { "stacks", OPT_STACKS, "auto|all|off", 0,
	  "User stacks of the connect()/accept() that made a socket, for close_wait_stuck "
	  "(default auto: only in pods that had a socket in CLOSE_WAIT for half the "
	  "threshold; all: every connect and accept; off: never)", G_ENV } },

	{ ON_LIVE | ON_CHECK, { "h2-plaintext", OPT_H2_PLAINTEXT, "off|all|NS/POD,...|auto", 0,
	  "HTTP/2 inside TLS, stream by stream: off (the default) probes nothing, and TLS "
	  "costs no trap per request; all: uprobes on the TLS calls (OpenSSL, Go) of every "
	  "process of the node; NS/POD[,NS/POD...] (NS/ for a whole namespace): only on the "
	  "processes of those pods, no other process takes a trap; auto: only on the "
	  "processes of a pod an h2_reuse_churn or h2_goaway finding names, for "
	  "--h2-plaintext-for seconds", G_ENV } },
	{ ON_LIVE | ON_CHECK, { "h2-plaintext-for", OPT_H2_PLAINTEXT_FOR, "SEC", 0,
	  "--h2-plaintext auto: how long a pod's processes stay probed after its last "
	  "HTTP/2 finding (default 60)", G_ENV } },

	{ 0, { NULL, 0, NULL, 0, "Input:", G_INPUT } },
	{ ON_REPLAY, { "keylog", OPT_KEYLOG, "FILE", 0,
	  "TLS key log (SSLKEYLOGFILE format), to count HTTP/2 inside TLS", G_INPUT } },
	{ ON_REPLAY, { "pods", OPT_PODS_FILE, "FILE", 0,
	  "`kubectl get pods -A -o json` output, to map addresses to pods", G_INPUT } },

	{ ON_LIVE, { "verbose", 'v', NULL, 0, "Show libbpf's own diagnostics", -1 } },
	{ ON_CHECK, { "verbose", 'v', NULL, 0,
	  "Also show libbpf's own diagnostics and the instructions the verifier processed "
	  "per program", -1 } },
	{ ON_REPLAY, { "verbose", 'v', NULL, 0,
	  "Text: list every connection too; say how many pods --pods held", -1 } },

	{ ON_ALL, { "help", 'h', NULL, 0, "Give this help list", -1 } },
	{ ON_ALL, { "usage", OPT_USAGE, NULL, 0, "Give a short usage message", -1 } },
};

#define N_OPTIONS (sizeof(all_options) / sizeof(all_options[0]))
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static bool is_header(const struct argp_option *a)
{
	return !a->name && !a->key && a->doc;
}

/* The options of one command, in argp's shape (ending with a zeroed entry). */
static void command_options(enum cs_cmd cmd, struct argp_option *out)
{
	unsigned groups = 0;
	size_t i, n = 0;

	for (i = 0; i < N_OPTIONS; i++)
		if (all_options[i].cmds & (1u << cmd) && all_options[i].opt.group > 0)
			groups |= 1u << all_options[i].opt.group;
	for (i = 0; i < N_OPTIONS; i++) {
		const struct argp_option *a = &all_options[i].opt;

		if (is_header(a) ? groups & (1u << a->group) : all_options[i].cmds & (1u << cmd))
			out[n++] = *a;
	}
	memset(&out[n], 0, sizeof(out[n]));
}

/* What a command-line token names among the rows of some commands. */
struct token_match {
	const struct argp_option *opt;  /* NULL: none, or an ambiguous prefix */
	bool exact;                     /* a long name in full, not a prefix of one */
	bool ambiguous;
	bool needs_value;               /* opt takes a value the token does not carry */
	char bad[64];                   /* the option as written, to name it */
};

/*
 * Read a token as getopt_long does: "--name", "--name=value" or an unambiguous
 * prefix of a long name; "-c...", a cluster of short options that one taking a
 * value ends. Only the rows of `cmds` count.
 */
static void match_token(const char *tok, unsigned cmds, struct token_match *m)
{
	size_t i;

	memset(m, 0, sizeof(*m));
	if (tok[1] == '-') {
		const char *name = tok + 2;
		size_t len = strcspn(name, "=");

		snprintf(m->bad, sizeof(m->bad), "--%.*s", (int)len, name);
		for (i = 0; i < N_OPTIONS; i++) {
			const struct argp_option *a = &all_options[i].opt;

			if (!(all_options[i].cmds & cmds) || !a->name || strncmp(a->name, name, len))
				continue;
			if (!a->name[len]) {
				m->opt = a;
				m->exact = true;
				m->ambiguous = false;
				break;
			}
			/* Rows of one option for different commands are one option. */
			if (m->opt && m->opt->key != a->key)
				m->ambiguous = true;
			m->opt = a;
		}
		if (m->ambiguous)
			m->opt = NULL;
		m->needs_value = m->opt && m->opt->arg && !name[len];
		return;
	}
	for (const char *c = tok + 1; *c; c++) {
		m->opt = NULL;
		snprintf(m->bad, sizeof(m->bad), "-%c", *c);
		for (i = 0; i < N_OPTIONS && !m->opt; i++)
			if (all_options[i].cmds & cmds && all_options[i].opt.key == *c &&
			    all_options[i].opt.name)
				m->opt = &all_options[i].opt;
		if (!m->opt)
			return;
		if (m->opt->arg) {
			m->needs_value = !c[1];
			return;
		}
	}
}

static bool is_option_token(const char *tok)
{
	return tok[0] == '-' && tok[1] && strcmp(tok, "--");
}

/* "trace, daemon and replay": the commands whose rows have this key. */
static void commands_taking(int key, char *buf, size_t len)
{
	unsigned cmds = 0;
	size_t i, n = 0, k = 0;

	for (i = 0; i < N_OPTIONS; i++)
		if (all_options[i].opt.key == key && all_options[i].opt.name)
			cmds |= all_options[i].cmds;
	for (i = 0; i < N_COMMANDS; i++)
		n += !!(cmds & (1u << i));
	buf[0] = 0;
	for (i = 0; i < N_COMMANDS; i++) {
		if (!(cmds & (1u << i)))
			continue;
		k++;
		snprintf(buf + strlen(buf), len - strlen(buf), "%s%s",
			 k == 1 ? "" : k == n ? " and " : ", ", commands[i].name);
	}
}

static void foreign_option(const char *tok, const struct argp_option *a, enum cs_cmd cmd)
{
	const char *name = commands[cmd].name;
	char who[64];

	commands_taking(a->key, who, sizeof(who));
	if (tok[1] == '-')
		cs_warn("--%s is an option of %s, not of %s (see connscope %s --help)",
			a->name, who, name, name);
	else
		cs_warn("-%c is an option of %s, not of %s (see connscope %s --help)",
			a->key, who, name, name);
}

/*
 * Before argp: a long option that another command takes, written in full, is
 * refused, even where getopt_long would read it as an abbreviation of one of this
 * command's (trace --pods F is not trace --pods-dir F).
 */
static void refuse_foreign_names(int argc, char **argv, enum cs_cmd cmd)
{
	struct token_match own, any;

	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!is_option_token(argv[i]))
			continue;
		match_token(argv[i], 1u << cmd, &own);
		if (argv[i][1] == '-' && !own.exact) {
			match_token(argv[i], ON_ALL, &any);
			if (any.exact) {
				foreign_option(argv[i], any.opt, cmd);
				exit(2);
			}
		}
		if (own.needs_value)
			i++;    /* its value, whatever it looks like */
	}
}

/*
 * One line for what argp refused, which it does not name (ARGP_NO_ERRS): the
 * token getopt stopped at is the one before state->next, or state->next itself
 * when it stopped inside a cluster of short options ("-ojson").
 */
static void bad_option(const struct argp_state *state, enum cs_cmd cmd)
{
	const char *name = commands[cmd].name;
	struct token_match own, any;

	for (int at = state->next - 1; at <= state->next; at++) {
		const char *tok;

		if (at < 1 || at >= state->argc || !is_option_token(state->argv[at]))
			continue;
		tok = state->argv[at];
		match_token(tok, 1u << cmd, &own);
		if (own.opt && own.needs_value && at == state->argc - 1) {
			cs_warn("%s needs a value (see connscope %s --help)", own.bad, name);
			return;
		}
		if (own.opt)
			continue;
		if (own.ambiguous) {
			cs_warn("ambiguous option '%s' (see connscope %s --help)", own.bad, name);
			return;
		}
		/* Not this command's: another command's (say whose), or nobody's. */
		match_token(tok, ON_ALL, &any);
		if (any.opt)
			foreign_option(tok, any.opt, cmd);
		else
			cs_warn("unknown option '%s' (see connscope %s --help)", own.bad, name);
		return;
	}
	cs_warn("unknown option or missing value near '%s' (see connscope %s --help)",
		state->next > 0 && state->next <= state->argc ? state->argv[state->next - 1] : "?",
		name);
}

static int parse_seconds(const char *opt, const char *arg, double min, double *out)
{
	if (cs_parse_double(arg, min, 86400 * 365, out)) {
		cs_warn("bad value for %s: '%s' (seconds, %g or more)", opt, arg, min);
		return -1;
	}
	return 0;
}

/* --h2-plaintext NS/NAME[,NS/NAME...]: each item a namespace, '/', and a pod name or
 * nothing (every pod of the namespace); names of letters, digits, '-' and '.'. */
static bool h2_pods_ok(const char *arg)
{
	const char *p = arg;

	while (*p) {
		size_t ns = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789-.");
		size_t name;

		if (!ns || p[ns] != '/')
			return false;
		p += ns + 1;
		name = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789-.");
		p += name;
		if (*p == ',' && p[1])
			p++;
		else if (*p)
			return false;
	}
	return p != arg;
}

/* The index of arg among the NULL-terminated names of an option's values; any
 * other value ends the run: "bad value for OPT: 'x' (a, b or c)". */
static int one_of(const char *opt, const char *arg, const char *const names[])
{
	char list[128] = "";
	size_t at = 0;
	int n;

	for (n = 0; names[n]; n++)
		if (!strcmp(arg, names[n]))
			return n;
	for (int i = 0; i < n && at < sizeof(list); i++)
		at += (size_t)snprintf(list + at, sizeof(list) - at, "%s%s",
				       !i ? "" : i == n - 1 ? " or " : ", ", names[i]);
	cs_warn("bad value for %s: '%s' (%s)", opt, arg, list);
	exit(2);
}

static error_t parse_opt(int key, char *arg, struct argp_state *state)
{
	struct cs_opts *o = state->input;
	uint64_t v;

	switch (key) {
	case OPT_POD: o->pod = arg; break;
	case OPT_NS: o->ns = arg; break;
	case OPT_PORT:
		if (cs_parse_u64(arg, 1, 65535, &v)) {
			cs_warn("bad value for --port: '%s' (1-65535)", arg);
			exit(2);
		}
		o->port = v;
		break;
	case OPT_CW:
		if (parse_seconds("--close-wait-threshold", arg, 0.1, &o->close_wait_threshold_s))
			exit(2);
		break;
	case OPT_TLS:
		if (parse_seconds("--tls-timeout", arg, 0.1, &o->tls_timeout_s))
			exit(2);
		break;
	case OPT_CONNECT:
		if (parse_seconds("--connect-timeout", arg, 0.1, &o->connect_timeout_s))
			exit(2);
		break;
	case OPT_WINDOW:
		if (parse_seconds("--finding-window", arg, 0, &o->finding_window_s))
			exit(2);
		break;
	case OPT_IDLE_CUT:
		if (parse_seconds("--idle-cut", arg, 0.1, &o->idle_cut_s))
			exit(2);
		break;
	case OPT_H2_WINDOW:
		if (parse_seconds("--h2-window", arg, 1, &o->h2_window_s))
			exit(2);
		break;
	case OPT_H2_CHURN_CONNS:
	case OPT_H2_GOAWAY_RUNS:
		if (cs_parse_u64(arg, 1, 100000, &v)) {
			cs_warn("bad value for --%s: '%s' (1-100000)",
				key == OPT_H2_CHURN_CONNS ? "h2-churn-conns" : "h2-goaway-runs", arg);
			exit(2);
		}
		if (key == OPT_H2_CHURN_CONNS)
			o->h2_churn_conns = (unsigned)v;
		else
			o->h2_goaway_runs = (unsigned)v;
		break;
	case OPT_H2_CHURN_STREAMS:
		if (cs_parse_double(arg, 0, 1000, &o->h2_churn_streams)) {
			cs_warn("bad value for --h2-churn-streams: '%s' (0-1000)", arg);
			exit(2);
		}
		break;
	case 'i':
		if (parse_seconds("-i", arg, 0.1, &o->interval_s))
			exit(2);
		break;
	case 'd':
		if (parse_seconds("-d", arg, 0.1, &o->duration_s))
			exit(2);
		break;
	case 'o':
		if (!strcmp(arg, "json")) {
			o->fmt = FMT_JSON;
		} else if (o->cmd == CMD_DAEMON) {
			cs_warn("bad value for -o: '%s' (daemon writes json only)", arg);
			exit(2);
		} else if (!strcmp(arg, "text")) {
			o->fmt = FMT_TEXT;
		} else {
			cs_warn("bad value for -o: '%s' (text or json)", arg);
			exit(2);
		}
		break;
	case OPT_ATTACH:  /* enum cs_attach's order */
		o->attach = (enum cs_attach)one_of("--attach", arg,
						   (const char *const[]){ "auto", "tp_btf", "raw_tp", NULL });
		break;
	case OPT_PODS_DIR: o->pods_dir = arg; break;
	case OPT_CGROUP: o->cgroup = arg; break;
	case OPT_METRICS: o->metrics_addr = arg; break;
	case OPT_METRICS_REMOTES:
		if (cs_parse_u64(arg, 1, 100, &v)) {
			cs_warn("bad value for --metrics-remotes: '%s' (1-100)", arg);
			exit(2);
		}
		o->metrics_remotes = (unsigned)v;
		break;
	case OPT_KEYLOG: o->keylog = arg; break;
	case OPT_CONNTRACK:  /* enum cs_conntrack's order */
		o->conntrack = (enum cs_conntrack)one_of("--conntrack", arg,
			(const char *const[]){ "auto", "bpf", "netlink", "off", NULL });
		break;
	case OPT_CONNTRACK_NETNS: o->conntrack_netns = arg; break;
	case OPT_CONNECTIONS:  /* enum cs_conns' order, after CONNS_DEFAULT */
		o->connections = (enum cs_conns)(CONNS_ALL + one_of("--connections", arg,
			(const char *const[]){ "all", "problems", "none", NULL }));
		break;
	case OPT_H2_PLAINTEXT:
		if (!strcmp(arg, "off")) {
			o->h2_plaintext = H2P_OFF;
		} else if (!strcmp(arg, "all")) {
			o->h2_plaintext = H2P_ALL;
		} else if (!strcmp(arg, "auto")) {
			o->h2_plaintext = H2P_AUTO;
		} else if (h2_pods_ok(arg)) {
			o->h2_plaintext = H2P_PODS;
			o->h2_pods = arg;
		} else {
			cs_warn("bad value for --h2-plaintext: '%s' (off, all, auto, or pods as "
				"NS/NAME[,NS/NAME...], NS/ for every pod of a namespace)", arg);
			exit(2);
		}
		break;
	case OPT_H2_PLAINTEXT_FOR:
		if (parse_seconds("--h2-plaintext-for", arg, 1, &o->h2_plaintext_for_s))
			exit(2);
		break;
	case OPT_STACKS: {
		enum hs_stack_mode m;

		if (holders_parse_mode(arg, &m)) {
			cs_warn("bad value for --stacks: '%s' (auto, all or off)", arg);
			exit(2);
		}
		o->stacks = m;
		break;
	}
	case OPT_OUTPUT_QUEUE: {
		uint64_t mib;

		if (cs_parse_u64(arg, 1, 4096, &mib)) {
			cs_warn("bad value for --output-queue: '%s' (1-4096 MiB)", arg);
			exit(2);
		}
		o->output_queue_mib = (unsigned)mib;
		break;
	}
	case OPT_CONNTRACK_MAX:
		if (cs_parse_u64(arg, 1, UINT32_MAX, &o->ct_max)) {
			cs_warn("bad value for --conntrack-max: '%s' (1-4294967295)", arg);
			exit(2);
		}
		break;
	case OPT_CONNTRACK_PRESSURE:
		if (cs_parse_double(arg, 1, 100, &o->ct_pressure_pct)) {
			cs_warn("bad value for --conntrack-pressure: '%s' (1-100)", arg);
			exit(2);
		}
		break;
	case OPT_PODS_FILE: o->pods_file = arg; break;
	case OPT_NO_SNAPSHOT: o->no_snapshot = true; break;
	case 'v': o->verbose = true; break;
	/* Our own help: with ARGP_NO_ERRS (one-line errors), argp's stays silent. */
	case 'h':
		argp_help(state->root_argp, stdout, ARGP_HELP_STD_HELP & ~ARGP_HELP_EXIT_OK & ~ARGP_HELP_EXIT_ERR, state->name);
		exit(0);
	case OPT_USAGE:
		argp_help(state->root_argp, stdout, ARGP_HELP_USAGE, state->name);
		exit(0);
	case ARGP_KEY_ARG:
		if (o->cmd != CMD_REPLAY) {
			cs_warn("unexpected argument '%s' (see connscope --help)", arg);
			exit(2);
		}
		o->files = realloc(o->files, sizeof(*o->files) * (o->nfiles + 1));
		if (!o->files)
			exit(1);
		o->files[o->nfiles++] = arg;
		break;
	case ARGP_KEY_ERROR:
		bad_option(state, o->cmd);
		exit(2);
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: connscope COMMAND [OPTION...]\n"
		   "Why connections between services go wrong, per pod.\n\nCommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const char *d = commands[i].doc;

		fprintf(f, "  %-8s %.*s\n", commands[i].name, (int)strcspn(d, "\v"), d);
	}
	fprintf(f, "\nRun 'connscope COMMAND --help' for its options; see connscope(8).\n");
}

int main(int argc, char **argv)
{
	struct cs_opts o = {
		.close_wait_threshold_s = 5,
		.tls_timeout_s = 10,
		.connect_timeout_s = 3,
		.finding_window_s = 10,
		.idle_cut_s = 30,
		.h2_window_s = 30,
		.h2_churn_conns = 20,
		.h2_churn_streams = 1.5,
		.h2_goaway_runs = 3,
		.h2_plaintext_for_s = 60,
		.ct_pressure_pct = 90,
		.stacks = HS_STACKS_AUTO,
		.interval_s = -1,
	};
	char progname[64];
	size_t c;
	int rc;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
		printf("connscope %s\n", CONNSCOPE_VERSION);
		return 0;
	}
	for (c = 0; c < sizeof(commands) / sizeof(commands[0]); c++)
		if (!strcmp(argv[1], commands[c].name))
			break;
	if (c == sizeof(commands) / sizeof(commands[0])) {
		cs_warn("unknown command '%s' (top, trace, daemon, replay or check)", argv[1]);
		return 2;
	}
	o.cmd = commands[c].cmd;
	snprintf(progname, sizeof(progname), "connscope %s", commands[c].name);
	argv[1] = progname;
	{
		struct argp_option options[N_OPTIONS + 1];
		struct argp argp = { options, parse_opt, commands[c].args, commands[c].doc };

		command_options(o.cmd, options);
		refuse_foreign_names(argc - 1, argv + 1, o.cmd);

		if (argp_parse(&argp, argc - 1, argv + 1, ARGP_NO_ERRS | ARGP_NO_HELP, NULL, &o))
			return 2;
	}
	if (o.interval_s < 0)
		o.interval_s = o.cmd == CMD_TOP ? 2 : o.cmd == CMD_DAEMON ? 10 : 0;
	if (o.cmd == CMD_DAEMON)
		o.fmt = FMT_JSON;
	/* trace and replay show every connection; top shows none, and daemon only
	 * problems: on a busy node, a record per healthy connection is noise. */
	if (o.connections == CONNS_DEFAULT)
		o.connections = o.cmd == CMD_DAEMON ? CONNS_PROBLEMS :
				o.cmd == CMD_TOP ? CONNS_NONE : CONNS_ALL;
	{
		const char *rb = getenv("CONNSCOPE_RINGBUF_BYTES");
		const char *crb = getenv("CONNSCOPE_CONN_RINGBUF_BYTES");
		const char *trb = getenv("CONNSCOPE_TLS_RINGBUF_BYTES");
		const char *rr = getenv("CONNSCOPE_RESET_RATE"), *lean = getenv("CONNSCOPE_LEAN");
		const char *rescue = getenv("CONNSCOPE_RESCUE");
		const char *skip_runs = getenv("CONNSCOPE_TEST_SKIP_RUNS");

		if (rb && cs_parse_u64(rb, 4096, 1ull << 30, &o.ringbuf_bytes)) {
			cs_warn("bad CONNSCOPE_RINGBUF_BYTES: '%s' (4096 to 2^30, a power of 2)", rb);
			return 2;
		}
		if (crb && cs_parse_u64(crb, 4096, 1ull << 30, &o.conn_ringbuf_bytes)) {
			cs_warn("bad CONNSCOPE_CONN_RINGBUF_BYTES: '%s' (4096 to 2^30, a power of 2)", crb);
			return 2;
		}
		if (trb && cs_parse_u64(trb, 4096, 1ull << 30, &o.tls_ringbuf_bytes)) {
			cs_warn("bad CONNSCOPE_TLS_RINGBUF_BYTES: '%s' (4096 to 2^30, a power of 2)", trb);
			return 2;
		}
		if (rr && cs_parse_u64(rr, 0, 1000000, &o.reset_rate)) {
			cs_warn("bad CONNSCOPE_RESET_RATE: '%s' (0 to 1000000 records/s per CPU; "
				"0: no limit)", rr);
			return 2;
		}
		o.reset_rate_set = rr != NULL;
		o.lean_off = lean && !strcmp(lean, "0");
		o.rescue_off = rescue && !strcmp(rescue, "0");
		if (skip_runs) {
			uint64_t v;

			if (cs_parse_u64(skip_runs, 2, 1000000, &v)) {
				cs_warn("bad CONNSCOPE_TEST_SKIP_RUNS: '%s' (2 to 1000000)", skip_runs);
				return 2;
			}
			o.test_skip_runs = (uint32_t)v;
		}
	}
	loader_set_verbose(o.verbose);

	switch (o.cmd) {
	case CMD_CHECK:
		rc = check_run(&o);
		break;
	case CMD_REPLAY:
		rc = replay_run(&o);
		break;
	default:
		rc = live_run(&o);
	}
	free(o.files);
	return rc;
}
