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

#define VERSION "0.1.0"

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
	  "  connscope top                       every pod on this node, refreshed every 2 s\n"
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
	OPT_METRICS, OPT_KEYLOG, OPT_PODS_FILE, OPT_ATTACH, OPT_NO_SNAPSHOT, OPT_WINDOW, OPT_CGROUP,
	OPT_H2_WINDOW, OPT_H2_CHURN_CONNS, OPT_H2_CHURN_STREAMS, OPT_H2_GOAWAY_RUNS,
	OPT_CONNTRACK, OPT_CONNTRACK_NETNS, OPT_CONNTRACK_PRESSURE, OPT_CONNTRACK_MAX,
	OPT_STACKS, OPT_USAGE,
};

static const struct argp_option options[] = {
	{ NULL, 0, NULL, 0, "Filters:", 1 },
	{ "pod", OPT_POD, "[NS/]NAME", 0, "Only this pod", 1 },
	{ "namespace", OPT_NS, "NS", 0, "Only pods in this namespace", 1 },
	{ "port", OPT_PORT, "N", 0, "Only connections with this local or remote port", 1 },
	{ NULL, 0, NULL, 0, "Thresholds:", 2 },
	{ "close-wait-threshold", OPT_CW, "SEC", 0,
	  "A socket in CLOSE_WAIT longer than this is stuck (default 5)", 2 },
	{ "connect-timeout", OPT_CONNECT, "SEC", 0,
	  "A connect still unanswered after this is a timeout (default 3)", 2 },
	{ "tls-timeout", OPT_TLS, "SEC", 0, "TLS handshake timeout (default 10, Go's default)", 2 },
	{ "finding-window", OPT_WINDOW, "SEC", 0,
	  "Repeats of a finding for one pod and remote within this window are folded "
	  "into one record with a count (default 10)", 2 },
	{ "h2-window", OPT_H2_WINDOW, "SEC", 0,
	  "Sliding window of the HTTP/2 reuse figures and findings (default 30)", 2 },
	{ "h2-churn-conns", OPT_H2_CHURN_CONNS, "N", 0,
	  "h2_reuse_churn: at least N connections to one remote closed in the window "
	  "(default 20)...", 2 },
	{ "h2-churn-streams", OPT_H2_CHURN_STREAMS, "X", 0,
	  "...carrying at most X streams each on average (default 1.5)", 2 },
	{ "h2-goaway-runs", OPT_H2_GOAWAY_RUNS, "N", 0,
	  "h2_goaway: N connections to one remote ended by GOAWAY in the window (default 3; "
	  "a GOAWAY with an error code is reported at once)", 2 },
	{ NULL, 0, NULL, 0, "Output:", 3 },
	{ "output", 'o', "text|json", 0, "Record format (default text; daemon: json)", 3 },
	{ "interval", 'i', "SEC", 0,
	  "Refresh (top, default 2) or summary interval (daemon, default 10; trace: off)", 3 },
	{ "duration", 'd', "SEC", 0, "Stop by itself after SEC seconds", 3 },
	{ "metrics-addr", OPT_METRICS, "HOST:PORT", 0, "daemon: serve Prometheus /metrics", 3 },
	{ NULL, 0, NULL, 0, "Environment:", 4 },
	{ "pods-dir", OPT_PODS_DIR, "DIR", 0,
	  "Kubelet pod log directory for pod names (default /var/log/pods)", 4 },
	{ "cgroup", OPT_CGROUP, "DIR", 0,
	  "Attach the packet programs (TLS) to this cgroup2 directory instead of the "
	  "cgroup2 root; only its sockets are watched for TLS", 4 },
	{ "attach", OPT_ATTACH, "auto|tp_btf|raw_tp", 0,
	  "Force an attach type instead of the run-time choice (default auto)", 4 },
	{ "no-snapshot", OPT_NO_SNAPSHOT, NULL, 0,
	  "Do not read the sockets that existed before start", 4 },
	{ "conntrack", OPT_CONNTRACK, "auto|bpf|netlink|off", 0,
	  "How conntrack is watched, for NAT and forwarded flows (default auto: the BPF "
	  "netfilter program, else ctnetlink)", 4 },
	{ "conntrack-netns", OPT_CONNTRACK_NETNS, "PATH", 0,
	  "Watch conntrack in this network namespace (a /run/netns or /proc/PID/ns/net path; "
	  "default: connscope's own, the node's for a hostNetwork DaemonSet)", 4 },
	{ "conntrack-pressure", OPT_CONNTRACK_PRESSURE, "PCT", 0,
	  "conntrack_pressure: when the table is this full, in % of nf_conntrack_max "
	  "(default 90)", 2 },
	{ "conntrack-max", OPT_CONNTRACK_MAX, "N", 0,
	  "conntrack_pressure: measure the table against N entries instead of the kernel's "
	  "nf_conntrack_max (to be warned before a limit of your own)", 2 },
	{ "stacks", OPT_STACKS, "auto|all|off", 0,
	  "User stacks of the connect()/accept() that made a socket, for close_wait_stuck "
	  "(default auto: only in pods that had a socket in CLOSE_WAIT for half the "
	  "threshold; all: every connect and accept; off: never)", 4 },
	{ "keylog", OPT_KEYLOG, "FILE", 0, "replay: TLS key log (SSLKEYLOGFILE format)", 4 },
	{ "pods", OPT_PODS_FILE, "FILE", 0, "replay: `kubectl get pods -A -o json` output", 4 },
	{ "verbose", 'v', NULL, 0, "Show libbpf's own diagnostics", 4 },
	{ "help", 'h', NULL, 0, "Give this help list", -1 },
	{ "usage", OPT_USAGE, NULL, 0, "Give a short usage message", -1 },
	{},
};

static int parse_seconds(const char *opt, const char *arg, double min, double *out)
{
	if (cs_parse_double(arg, min, 86400 * 365, out)) {
		cs_warn("bad value for %s: '%s' (seconds, %g or more)", opt, arg, min);
		return -1;
	}
	return 0;
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
		} else if (!strcmp(arg, "text")) {
			o->fmt = FMT_TEXT;
		} else {
			cs_warn("bad value for -o: '%s' (text or json)", arg);
			exit(2);
		}
		break;
	case OPT_ATTACH:
		if (!strcmp(arg, "auto")) {
			o->attach = ATTACH_AUTO;
		} else if (!strcmp(arg, "tp_btf")) {
			o->attach = ATTACH_TP_BTF;
		} else if (!strcmp(arg, "raw_tp")) {
			o->attach = ATTACH_RAW_TP;
		} else {
			cs_warn("bad value for --attach: '%s' (auto, tp_btf or raw_tp)", arg);
			exit(2);
		}
		break;
	case OPT_PODS_DIR: o->pods_dir = arg; break;
	case OPT_CGROUP: o->cgroup = arg; break;
	case OPT_METRICS: o->metrics_addr = arg; break;
	case OPT_KEYLOG: o->keylog = arg; break;
	case OPT_CONNTRACK:
		if (!strcmp(arg, "auto")) {
			o->conntrack = CT_AUTO;
		} else if (!strcmp(arg, "bpf")) {
			o->conntrack = CT_BPF;
		} else if (!strcmp(arg, "netlink")) {
			o->conntrack = CT_NETLINK;
		} else if (!strcmp(arg, "off")) {
			o->conntrack = CT_OFF;
		} else {
			cs_warn("bad value for --conntrack: '%s' (auto, bpf, netlink or off)", arg);
			exit(2);
		}
		break;
	case OPT_CONNTRACK_NETNS: o->conntrack_netns = arg; break;
	case OPT_STACKS: {
		enum hs_stack_mode m;

		if (holders_parse_mode(arg, &m)) {
			cs_warn("bad value for --stacks: '%s' (auto, all or off)", arg);
			exit(2);
		}
		o->stacks = m;
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
		cs_warn("unknown option or missing value near '%s' (see connscope %s --help)",
			state->next > 0 && state->next <= state->argc ? state->argv[state->next - 1] : "?",
			commands[o->cmd].name);
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
		.h2_window_s = 30,
		.h2_churn_conns = 20,
		.h2_churn_streams = 1.5,
		.h2_goaway_runs = 3,
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
		printf("connscope %s\n", VERSION);
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
		struct argp argp = { options, parse_opt, commands[c].args, commands[c].doc };

		if (argp_parse(&argp, argc - 1, argv + 1, ARGP_NO_ERRS | ARGP_NO_HELP, NULL, &o))
			return 2;
	}
	if (o.interval_s < 0)
		o.interval_s = o.cmd == CMD_TOP ? 2 : o.cmd == CMD_DAEMON ? 10 : 0;
	if (o.cmd == CMD_DAEMON)
		o.fmt = FMT_JSON;
	loader_set_verbose(o.verbose);

	switch (o.cmd) {
	case CMD_CHECK:
		rc = check_run(&o);
		break;
	case CMD_REPLAY:
		rc = replay_run(&o);
		break;
	default:
		if (o.metrics_addr && o.cmd != CMD_DAEMON) {
			cs_warn("--metrics-addr goes with the daemon command");
			rc = 2;
			break;
		}
		rc = live_run(&o);
	}
	free(o.files);
	return rc;
}
