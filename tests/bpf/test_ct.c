// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The BPF conntrack watcher on real traffic through a DNAT, like a kube-proxy
 * ClusterIP. Three network namespaces joined by veth pairs, routed (not
 * bridged) through the node:
 *
 *   client 10.77.1.10 --- 10.77.1.1 [node: nft dnat 10.96.0.10:80 ->
 *                                           10.77.2.20:8080] 10.77.2.1 --- 10.77.2.20 backend
 *
 * The program is attached in the node netns only, never in the machine's own.
 * Checks: a closed connection goes NEW (both tuples, DST_NAT) -> ... ->
 * ESTABLISHED -> ... -> DESTROY; a backend that never closes after the
 * client's FIN leaves the entry in CLOSE_WAIT with no DESTROY; a bulk transfer
 * makes a handful of edges, not one per packet, and its per-packet cost is
 * printed (kernel.bpf_stats_enabled). Needs root, ip, nft and python3;
 * bounded by an alarm, and removes every namespace it made, even on failure.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "ctbpf.h"

#define TEST_TIMEOUT_S 90
#define MAX_EV 4096

static int pass, fail;
static char ns_node[32], ns_client[32], ns_backend[32], ready_file[64];
static pid_t server_pid = -1;
static char old_stats[8] = "";

#define CHECK(cond, ...)                                   \
	do {                                               \
		if (cond) {                                \
			pass++;                            \
		} else {                                   \
			fail++;                            \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);      \
			fputc('\n', stderr);               \
		}                                          \
	} while (0)

/* The backend: the first byte a client sends picks its behaviour.
 * c: read to EOF, answer, close.  h: read to EOF, then hold the socket open
 * (CLOSE_WAIT).  b: read to EOF (bulk sink), then close. */
static const char server_py[] =
	"import socket,sys,threading\n"
	"held=[]\n"
	"def serve(c):\n"
	"  mode=c.recv(1)\n"
	"  while c.recv(1<<16): pass\n"
	"  if mode==b'h': held.append(c); return\n"
	"  try: c.sendall(b'ok')\n"
	"  except OSError: pass\n"
	"  c.close()\n"
	"def listen(fam,addr):\n"
	"  s=socket.socket(fam); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
	"  s.bind((addr,8080)); s.listen(64); return s\n"
	"def loop(s):\n"
	"  while True:\n"
	"    c,_=s.accept(); threading.Thread(target=serve,args=(c,),daemon=True).start()\n"
	"s4=listen(socket.AF_INET,'10.77.2.20'); s6=listen(socket.AF_INET6,'fd00:77:2::20')\n"
	"open(sys.argv[1],'w').close()\n"
	"threading.Thread(target=loop,args=(s6,),daemon=True).start()\n"
	"loop(s4)\n";

/* The client: connect to the ClusterIP, send the mode byte (and for 'b' a
 * bulk payload), half-close, print the local port. */
static const char client_py[] =
	"import socket,sys,time\n"
	"mode=sys.argv[1].encode(); n=int(sys.argv[2])\n"
	"dst=('10.96.0.10',80) if len(sys.argv)<4 else (sys.argv[3],8080)\n"
	"c=socket.create_connection(dst,timeout=5)\n"
	"print(c.getsockname()[1],flush=True)\n"
	"c.sendall(mode); buf=b'x'*(1<<16)\n"
	"while n>0: c.sendall(buf[:n]); n-=len(buf)\n"
	"c.shutdown(socket.SHUT_WR)\n"
	"if mode==b'h': time.sleep(1); sys.exit(0)\n"
	"while c.recv(1<<16): pass\n"
	"c.close(); time.sleep(0.3)\n";

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	if (rc)
		fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
	return rc;
}

static void cleanup(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		server_pid = -1;
	}
	if (old_stats[0]) {
		FILE *f = fopen("/proc/sys/kernel/bpf_stats_enabled", "w");

		if (f) {
			fputs(old_stats, f);
			fclose(f);
		}
		old_stats[0] = 0;
	}
	/* Deleting a netns also removes the veth ends inside it. */
	if (ns_node[0])
		sh("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null; "
		   "ip netns del %s 2>/dev/null; true", ns_node, ns_client, ns_backend);
	ns_node[0] = 0;
	if (ready_file[0])
		unlink(ready_file);
}

static void on_alarm(int sig)
{
	(void)sig;
	fprintf(stderr, "FAIL: test_ct timed out after %d s\n", TEST_TIMEOUT_S);
	cleanup();
	_exit(1);
}

static int setup(void)
{
	char nft[768];

	snprintf(ns_node, sizeof(ns_node), "csct%dn", getpid());
	snprintf(ns_client, sizeof(ns_client), "csct%dc", getpid());
	snprintf(ns_backend, sizeof(ns_backend), "csct%db", getpid());
	snprintf(nft, sizeof(nft),
		 "add table ip kube; "
		 "add chain ip kube pre { type nat hook prerouting priority dstnat; }; "
		 "add rule ip kube pre ip daddr 10.96.0.10 tcp dport 80 dnat to 10.77.2.20:8080; "
		 /* Conntrack runs per netns and family only once a rule needs
		  * it; a ct match turns it on for IPv6. */
		 "add table ip6 ct6; "
		 "add chain ip6 ct6 pass { type filter hook forward priority 0; }; "
		 "add rule ip6 ct6 pass ct state new,established counter");
	if (sh("ip netns add %s && ip netns add %s && ip netns add %s", ns_node, ns_client,
	       ns_backend) ||
	    sh("ip link add cv0 netns %s type veth peer name nc0 netns %s", ns_client, ns_node) ||
	    sh("ip link add bv0 netns %s type veth peer name nb0 netns %s", ns_backend, ns_node) ||
	    sh("ip -n %s addr add 10.77.1.10/24 dev cv0 && ip -n %s link set cv0 up && "
	       "ip -n %s link set lo up && ip -n %s route add default via 10.77.1.1",
	       ns_client, ns_client, ns_client, ns_client) ||
	    sh("ip -n %s addr add 10.77.2.20/24 dev bv0 && ip -n %s link set bv0 up && "
	       "ip -n %s link set lo up && ip -n %s route add default via 10.77.2.1",
	       ns_backend, ns_backend, ns_backend, ns_backend) ||
	    sh("ip -n %s addr add 10.77.1.1/24 dev nc0 && ip -n %s addr add 10.77.2.1/24 dev nb0 && "
	       "ip -n %s link set nc0 up && ip -n %s link set nb0 up && ip -n %s link set lo up",
	       ns_node, ns_node, ns_node, ns_node, ns_node) ||
	    sh("ip -n %s addr add fd00:77:1::10/64 dev cv0 nodad && "
	       "ip -n %s route add default via fd00:77:1::1", ns_client, ns_client) ||
	    sh("ip -n %s addr add fd00:77:2::20/64 dev bv0 nodad && "
	       "ip -n %s route add default via fd00:77:2::1", ns_backend, ns_backend) ||
	    sh("ip -n %s addr add fd00:77:1::1/64 dev nc0 nodad && "
	       "ip -n %s addr add fd00:77:2::1/64 dev nb0 nodad", ns_node, ns_node) ||
	    sh("ip netns exec %s sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
	       ns_node) ||
	    sh("ip netns exec %s nft '%s'", ns_node, nft))
		return -1;

	snprintf(ready_file, sizeof(ready_file), "/tmp/csct%d.ready", getpid());
	unlink(ready_file);
	server_pid = fork();
	if (server_pid < 0)
		return -1;
	if (server_pid == 0) {
		execlp("ip", "ip", "netns", "exec", ns_backend, "/usr/bin/python3", "-c", server_py,
		       ready_file, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100; i++) {
		if (!access(ready_file, F_OK))
			return 0;
		usleep(50 * 1000);
	}
	fprintf(stderr, "backend did not start\n");
	return -1;
}

static struct ct_event evs[MAX_EV];
static int nev;

static void on_event(void *arg, const struct ct_event *e)
{
	(void)arg;
	if (nev < MAX_EV)
		evs[nev++] = *e;
}

/* Run a client; returns its local port, or -1. */
static int run_client_to(char mode, long bytes, const char *dst)
{
	char cmd[2048], out[32] = "";
	FILE *p;
	int port;

	snprintf(cmd, sizeof(cmd), "ip netns exec %s /usr/bin/python3 -c \"$CT_CLIENT\" %c %ld %s",
		 ns_client, mode, bytes, dst ? dst : "");
	setenv("CT_CLIENT", client_py, 1);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	if (!fgets(out, sizeof(out), p))
		out[0] = 0;
	if (pclose(p))
		return -1;
	port = atoi(out);
	return port > 0 ? port : -1;
}

static int run_client(char mode, long bytes)
{
	return run_client_to(mode, bytes, NULL);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ull + ts.tv_nsec / 1000000;
}

/* Poll until pred() holds or ms pass. */
static void poll_for(struct ctbpf *c, int ms, bool (*pred)(int), int port)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end && !(pred && pred(port)))
		ctbpf_poll(c, 50, on_event, NULL);
}

static bool mine(const struct ct_event *e, int port)
{
	return e->orig.sport == port && e->orig.l3 == AF_INET;
}

static bool has_destroy(int port)
{
	for (int i = 0; i < nev; i++)
		if (mine(&evs[i], port) && evs[i].type == CT_EV_DESTROY)
			return true;
	return false;
}

static const char *st_name(int s)
{
	static const char *n[] = { "NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
				   "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2" };
	return s >= 0 && s < 10 ? n[s] : "?";
}

static void print_events(int port)
{
	for (int i = 0; i < nev; i++) {
		const struct ct_event *e = &evs[i];
		char a[4][INET6_ADDRSTRLEN];

		if (!mine(e, port))
			continue;
		inet_ntop(AF_INET, e->orig.src, a[0], sizeof(a[0]));
		inet_ntop(AF_INET, e->orig.dst, a[1], sizeof(a[1]));
		inet_ntop(AF_INET, e->reply.src, a[2], sizeof(a[2]));
		inet_ntop(AF_INET, e->reply.dst, a[3], sizeof(a[3]));
		printf("  %-7s %-11s (was %-11s) status %#06x  %s:%u -> %s:%u | %s:%u -> %s:%u\n",
		       e->type == CT_EV_NEW ? "NEW" : e->type == CT_EV_UPDATE ? "UPDATE" : "DESTROY",
		       st_name(e->tcp_state), st_name(e->old_tcp_state), e->status, a[0],
		       e->orig.sport, a[1], e->orig.dport, a[2], e->reply.sport, a[3],
		       e->reply.dport);
	}
}

/* The edges of one connection must form a chain: NEW first, each event's old
 * state the previous one's state, no repeats, and DESTROY (if any) last. */
static void check_chain(int port, const char *what, bool *seen)
{
	int prev = -1, n = 0;
	bool ended = false;

	memset(seen, 0, 10 * sizeof(*seen));
	for (int i = 0; i < nev; i++) {
		const struct ct_event *e = &evs[i];

		if (!mine(e, port))
			continue;
		CHECK(!ended, "%s: event after DESTROY", what);
		if (n++ == 0)
			CHECK(e->type == CT_EV_NEW, "%s: first event is type %u, not NEW", what, e->type);
		else
			CHECK(e->type != CT_EV_NEW && e->old_tcp_state == prev,
			      "%s: event %d type %u old %u, previous state %d", what, n, e->type,
			      e->old_tcp_state, prev);
		if (e->type == CT_EV_DESTROY)
			ended = true;
		if (e->tcp_state < 10)
			seen[e->tcp_state] = true;
		prev = e->tcp_state;
	}
	CHECK(n > 0, "%s: no events for client port %d", what, port);
}

static void check_new(int port, const char *what, unsigned netns)
{
	for (int i = 0; i < nev; i++) {
		const struct ct_event *e = &evs[i];
		struct in_addr a;

		if (!mine(e, port) || e->type != CT_EV_NEW)
			continue;
		CHECK(e->source == CT_SRC_BPF && e->orig.l4 == 6 && e->reply.l3 == AF_INET,
		      "%s: source/l3/l4 %u/%u/%u", what, e->source, e->reply.l3, e->orig.l4);
		CHECK(e->netns == netns, "%s: netns %u, node netns is %u", what, e->netns, netns);
		CHECK(e->tcp_state == CT_TCP_SYN_SENT, "%s: NEW in %s", what, st_name(e->tcp_state));
		CHECK(e->status & CT_S_DST_NAT, "%s: DST_NAT not set (status %#x)", what, e->status);
		inet_pton(AF_INET, "10.77.1.10", &a);
		CHECK(!memcmp(e->orig.src, &a, 4) && !memcmp(e->reply.dst, &a, 4) &&
		      e->reply.dport == port, "%s: client address wrong", what);
		inet_pton(AF_INET, "10.96.0.10", &a);
		CHECK(!memcmp(e->orig.dst, &a, 4) && e->orig.dport == 80, "%s: orig dst not the VIP",
		      what);
		inet_pton(AF_INET, "10.77.2.20", &a);
		CHECK(!memcmp(e->reply.src, &a, 4) && e->reply.sport == 8080,
		      "%s: reply src not the backend", what);
		return;
	}
	CHECK(false, "%s: no NEW event", what);
}

/* A connection that closes normally: the whole chain, NEW to DESTROY. */
static void closed_connection(struct ctbpf *c, const char *what, unsigned netns)
{
	bool seen[10];
	int port = run_client('c', 1000);

	CHECK(port > 0, "%s: client failed", what);
	poll_for(c, 3000, has_destroy, port);
	printf("%s connection (client port %d):\n", what, port);
	print_events(port);
	check_new(port, what, netns);
	check_chain(port, what, seen);
	CHECK(seen[CT_TCP_ESTABLISHED], "%s: never ESTABLISHED", what);
	CHECK(seen[CT_TCP_FIN_WAIT] || seen[CT_TCP_CLOSE_WAIT] || seen[CT_TCP_LAST_ACK],
	      "%s: no closing state", what);
	CHECK(has_destroy(port), "%s: no DESTROY", what);
	for (int i = 0; i < nev; i++)
		if (mine(&evs[i], port) && evs[i].type == CT_EV_DESTROY)
			CHECK(evs[i].tcp_state == CT_TCP_TIME_WAIT || evs[i].tcp_state == CT_TCP_CLOSE,
			      "%s: DESTROY in %s", what, st_name(evs[i].tcp_state));
}

static void prog_stats(uint32_t id, uint64_t *ns, uint64_t *cnt)
{
	struct bpf_prog_info info;
	uint32_t len = sizeof(info);
	int fd = bpf_prog_get_fd_by_id(id);

	*ns = *cnt = 0;
	if (fd < 0)
		return;
	memset(&info, 0, sizeof(info));
	if (!bpf_obj_get_info_by_fd(fd, &info, &len)) {
		*ns = info.run_time_ns;
		*cnt = info.run_cnt;
	}
	close(fd);
}

static void stats_on(void)
{
	FILE *f = fopen("/proc/sys/kernel/bpf_stats_enabled", "r");

	if (f) {
		if (!fgets(old_stats, sizeof(old_stats), f))
			old_stats[0] = 0;
		fclose(f);
	}
	f = fopen("/proc/sys/kernel/bpf_stats_enabled", "w");
	if (f) {
		fputs("1", f);
		fclose(f);
	}
}

int main(void)
{
	char why[256], path[96], desc[512];
	struct ctbpf *c = NULL;
	struct stat st;
	bool seen[10];
	int port;

	setvbuf(stdout, NULL, _IOLBF, 0);

	if (geteuid()) {
		printf("SKIP test_ct: needs root\n");
		return 0;
	}
	signal(SIGALRM, on_alarm);
	alarm(TEST_TIMEOUT_S);
	atexit(cleanup);
	if (setup()) {
		fprintf(stderr, "FAIL: namespace setup\n");
		return 1;
	}
	snprintf(path, sizeof(path), "/run/netns/%s", ns_node);
	CHECK(!stat(path, &st), "stat %s", path);
	c = ctbpf_open(path, why, sizeof(why));
	if (!c) {
		fprintf(stderr, "FAIL: ctbpf_open: %s\n", why);
		return 1;
	}
	ctbpf_describe(c, desc, sizeof(desc));
	printf("check: %s\n", desc);
	CHECK(strstr(desc, "ipv4/prerouting@-99 attached") != NULL, "describe: %s", desc);

	/* 1. A connection that closes normally. */
	closed_connection(c, "closed", st.st_ino);
	/* 2. A backend that never closes after the client's FIN. */
	port = run_client('h', 1000);
	CHECK(port > 0, "client h failed");
	poll_for(c, 1500, NULL, port);
	printf("held connection (client port %d):\n", port);
	print_events(port);
	check_new(port, "held", st.st_ino);
	check_chain(port, "held", seen);
	CHECK(seen[CT_TCP_CLOSE_WAIT], "held: never CLOSE_WAIT");
	CHECK(!has_destroy(port), "held: DESTROY while the backend holds the socket");

	/* 3. Bulk transfer: edges only, and the per-packet cost. */
	{
		uint64_t ns0, cnt0, ns1, cnt1, events, lost, map_full, evictions;
		long bytes = 256l << 20;
		int n = 0;

		stats_on();
		prog_stats(ctbpf_prog_id(c), &ns0, &cnt0);
		port = run_client('b', bytes);
		CHECK(port > 0, "client b failed");
		prog_stats(ctbpf_prog_id(c), &ns1, &cnt1);
		poll_for(c, 3000, has_destroy, port);
		for (int i = 0; i < nev; i++)
			n += mine(&evs[i], port);
		printf("bulk connection (client port %d): %d events\n", port, n);
		print_events(port);
		CHECK(n >= 3 && n <= 12, "bulk: %d events, expected a handful", n);
		CHECK(has_destroy(port), "bulk: no DESTROY");
		CHECK(cnt1 > cnt0, "bulk: no program runs counted (bpf_stats_enabled?)");
		if (cnt1 > cnt0)
			printf("cost: %lu MiB through the DNAT: %lu program runs, %.1f ns per run "
			       "(%lu ns total)\n", bytes >> 20, (unsigned long)(cnt1 - cnt0),
			       (double)(ns1 - ns0) / (cnt1 - cnt0), (unsigned long)(ns1 - ns0));
		ctbpf_counters(c, &events, &lost, &map_full);
		evictions = ctbpf_evictions(c);
		printf("counters: events %lu lost %lu map_full %lu evictions %lu\n",
		       (unsigned long)events, (unsigned long)lost, (unsigned long)map_full,
		       (unsigned long)evictions);
		CHECK(events >= (uint64_t)nev && lost == 0 && map_full == 0 && evictions == 0,
		      "counters");
	}

	/* 4. IPv6, routed without NAT: the ipv6 hooks see it end to end. */
	{
		struct in6_addr a6;
		bool v6_new = false, v6_end = false;

		port = run_client_to('c', 1000, "fd00:77:2::20");
		CHECK(port > 0, "client v6 failed");
		inet_pton(AF_INET6, "fd00:77:2::20", &a6);
		for (uint64_t end = now_ms() + 3000; now_ms() < end && !v6_end;) {
			ctbpf_poll(c, 50, on_event, NULL);
			for (int i = 0; i < nev; i++) {
				const struct ct_event *e = &evs[i];

				if (e->orig.l3 != AF_INET6 || e->orig.sport != port ||
				    memcmp(e->orig.dst, &a6, 16) || memcmp(e->reply.src, &a6, 16))
					continue;
				v6_new |= e->type == CT_EV_NEW && !(e->status & CT_S_DST_NAT);
				v6_end |= e->type == CT_EV_DESTROY;
			}
		}
		printf("ipv6 connection (client port %d): NEW %s, DESTROY %s\n", port,
		       v6_new ? "seen" : "missing", v6_end ? "seen" : "missing");
		CHECK(v6_new && v6_end, "ipv6: NEW %d DESTROY %d", v6_new, v6_end);
	}

	/* Closing the links detaches the program: once closed, it is gone. */
	{
		uint32_t id = ctbpf_prog_id(c);
		int fd;

		ctbpf_close(c);
		/* The kernel frees the program after an RCU grace period. */
		for (int i = 0; i < 40; i++) {
			fd = bpf_prog_get_fd_by_id(id);
			if (fd < 0)
				break;
			close(fd);
			usleep(50 * 1000);
		}
		CHECK(fd < 0 && errno == ENOENT, "program %u still loaded after close", id);
		if (fd >= 0)
			close(fd);
	}

	/* 5. The probe-read fallback, with every hook (POST_ROUTING too). */
	c = ctbpf_open_hooks(path, CTBPF_DEFAULT_HOOKS | CTBPF_POST_ROUTING | CTBPF_PROBE_READ,
			     why, sizeof(why));
	CHECK(c != NULL, "ctbpf_open_hooks (probe reads): %s", why);
	if (c) {
		ctbpf_describe(c, desc, sizeof(desc));
		printf("check: %s\n", desc);
		CHECK(strstr(desc, "probe reads") && strstr(desc, "ipv4/postrouting@101 attached"),
		      "describe: %s", desc);
		closed_connection(c, "probe-read", st.st_ino);
		ctbpf_close(c);
	}

	/* 6. A namespace that is not there: a reason, no crash. */
	c = ctbpf_open("/run/netns/connscope-no-such-netns", why, sizeof(why));
	CHECK(c == NULL && strstr(why, "no-such-netns"), "missing netns: %s", why);
	ctbpf_close(c);

	cleanup();
	printf("test_ct: %d passed, %d failed\n", pass, fail);
	return fail ? 1 : 0;
}
