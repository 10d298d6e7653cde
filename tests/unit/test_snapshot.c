// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Live test of user/live/snapshot.c and user/lib/procfd.c. Needs root.
 *
 *   scripts/test.sh unit    (built against connscope's libraries)
 *
 * This process moves itself into a fresh cgroup2 directory (when it can), makes
 * a server socket in CLOSE_WAIT on 127.0.0.1, a connected pair inside a named
 * network namespace held by a child, and an orphan TIME_WAIT socket inside a
 * named namespace with no process at all; then checks what
 * snapshot_tcp and procfd_lookup{,_many} report. It removes everything it made. */
#define _GNU_SOURCE
#include "procfd.h"
#include "snapshot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TCP_ESTABLISHED 1
#define TCP_FIN_WAIT1   4
#define TCP_FIN_WAIT2   5
#define TCP_TIME_WAIT   6
#define TCP_CLOSE_WAIT  8

static int passed, failed;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s: ", ok ? "PASS" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	ok ? passed++ : failed++;
}

static uint64_t ino_of_path(const char *p)
{
	struct stat st;

	return stat(p, &st) ? 0 : st.st_ino;
}

static uint64_t ino_of_fd(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? 0 : st.st_ino;
}

static uint16_t port_of(int fd)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);

	return getsockname(fd, (struct sockaddr *)&a, &l) ? 0 : ntohs(a.sin_port);
}

/* Listener on 127.0.0.1:<any>, a client connected to it, and the accepted end. */
static int tcp_pair(int *lfd, int *cfd, int *sfd)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	*lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	*cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	*sfd = -1;
	if (*lfd < 0 || *cfd < 0 || bind(*lfd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(*lfd, 4) || getsockname(*lfd, (struct sockaddr *)&a, &l) ||
	    connect(*cfd, (struct sockaddr *)&a, sizeof(a)))
		return -1;
	*sfd = accept4(*lfd, NULL, NULL, SOCK_CLOEXEC);
	return *sfd < 0 ? -1 : 0;
}

/* cgroup2 mount point from /proc/self/mountinfo:
 *   id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
static int cgroup2_mount(char *mnt, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096], root[1024], mp[1024];
	int ok = -1;

	if (!f)
		return -1;
	while (ok && fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, " - ");

		if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
			continue;
		if (sscanf(line, "%*s %*s %*s %1023s %1023s", root, mp) == 2 &&
		    strcmp(root, "/") == 0) {
			snprintf(mnt, len, "%s", mp);
			ok = 0;
		}
	}
	fclose(f);
	return ok;
}

/* This process's cgroup2 path, from the "0::<path>" line of /proc/self/cgroup. */
static int cgroup2_path(char *path, size_t len)
{
	FILE *f = fopen("/proc/self/cgroup", "r");
	char line[4096];
	int ok = -1;

	if (!f)
		return -1;
	while (ok && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3) != 0)
			continue;
		line[strcspn(line, "\n")] = '\0';
		snprintf(path, len, "%s", line + 3);
		ok = 0;
	}
	fclose(f);
	return ok;
}

static int write_pid(const char *dir)
{
	char p[8300];
	FILE *f;
	int ok;

	snprintf(p, sizeof(p), "%s/cgroup.procs", dir);
	f = fopen(p, "w");
	if (!f)
		return -1;
	ok = fprintf(f, "%d\n", (int)getpid()) > 0;
	return (fclose(f) == 0 && ok) ? 0 : -1;
}

static int run(const char *cmd)
{
	int st = system(cmd);

	return (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) ? 0 : -1;
}

/* A named netns (ip netns add) and the child that made a TCP pair in it. */
struct test_ns {
	char name[64], path[128];
	uint64_t ino;
	bool made;
	pid_t child;
	struct kid_msg { uint16_t port; uint64_t ino; } kid; /* listener port, server ino */
};

/* Child: enter the netns, make a connected pair, report it through the pipe.
 * stay: keep the pair and wait to be killed. Otherwise close the client
 * first (an orphan TIME_WAIT socket stays behind) and exit, so that the
 * namespace holds no process and only /run/netns reaches it. */
static void netns_child(const struct test_ns *t, int wfd, bool stay)
{
	struct kid_msg msg = { 0 };
	int nfd, l, c, s;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Drop the parent's sockets, so that each has exactly one holder. */
	close_range(3, wfd - 1, 0);
	close_range(wfd + 1, ~0u, 0);
	nfd = open(t->path, O_RDONLY | O_CLOEXEC);
	if (nfd >= 0 && setns(nfd, CLONE_NEWNET) == 0 && tcp_pair(&l, &c, &s) == 0) {
		msg.port = port_of(l);
		msg.ino = ino_of_fd(s);
	}
	if (!stay) {
		struct pollfd p = { .fd = s, .events = POLLIN | POLLRDHUP };

		close(c);
		poll(&p, 1, 2000); /* the client's FIN, so the client side closes actively */
		close(s);
		close(l);
	}
	if (write(wfd, &msg, sizeof(msg)) != (ssize_t)sizeof(msg) || !stay)
		_exit(0);
	for (;;)
		pause();
}

static int test_ns_start(struct test_ns *t, const char *tag, bool stay)
{
	char cmd[256];
	int pfd[2], ok;

	snprintf(t->name, sizeof(t->name), "cs-snaptest%s-%d", tag, (int)getpid());
	snprintf(t->path, sizeof(t->path), "/run/netns/%s", t->name);
	snprintf(cmd, sizeof(cmd), "ip netns add %s", t->name);
	t->made = run(cmd) == 0;
	snprintf(cmd, sizeof(cmd), "ip netns exec %s ip link set lo up", t->name);
	if (!t->made || run(cmd) != 0 || pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	t->ino = ino_of_path(t->path);
	t->child = fork();
	if (t->child == 0)
		netns_child(t, pfd[1], stay);
	close(pfd[1]);
	ok = t->child > 0 && read(pfd[0], &t->kid, sizeof(t->kid)) == (ssize_t)sizeof(t->kid) &&
	     t->kid.port != 0;
	close(pfd[0]);
	if (t->child > 0 && !stay) {
		waitpid(t->child, NULL, 0);
		t->child = -1;
	}
	return ok ? 0 : -1;
}

static void test_ns_stop(struct test_ns *t)
{
	char cmd[256];

	if (t->child > 0) {
		kill(t->child, SIGKILL);
		waitpid(t->child, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "ip netns del %s", t->name);
	if (t->made && run(cmd) != 0)
		fprintf(stderr, "warning: could not remove netns %s\n", t->name);
}

static const struct snap_sock *find(const struct snap_sock *v, int n, uint32_t netns,
				    uint16_t sport, uint16_t dport)
{
	for (int i = 0; i < n; i++)
		if (v[i].netns == netns && v[i].family == AF_INET &&
		    v[i].sport == sport && v[i].dport == dport)
			return &v[i];
	return NULL;
}

int main(void)
{
	char mnt[1024] = "", orig[4096] = "", mine[4096] = "";
	char newcg[8192] = "", cgdir[8192] = "";
	char comm[16] = "";
	int lfd = -1, cfd = -1, sfd = -1;
	struct test_ns ns[2] = { { .child = -1 }, { .child = -1 } };
	bool made_cg = false;
	struct snap_sock *socks = NULL;
	uint64_t self_ns;
	char buf[8];
	int n;

	if (geteuid() != 0) {
		fprintf(stderr, "test_snapshot: needs root\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* A cgroup of our own, so that the cgroup id check means something. */
	if (cgroup2_mount(mnt, sizeof(mnt)) == 0 && cgroup2_path(orig, sizeof(orig)) == 0) {
		snprintf(newcg, sizeof(newcg), "%s%s%scs-snaptest-%d", mnt, orig,
			 strcmp(orig, "/") ? "/" : "", (int)getpid());
		if (mkdir(newcg, 0755) == 0) {
			made_cg = true;
			if (write_pid(newcg) != 0)
				fprintf(stderr, "note: cannot move into %s, staying put\n", newcg);
		}
	}
	check(cgroup2_mount(mnt, sizeof(mnt)) == 0 && cgroup2_path(mine, sizeof(mine)) == 0,
	      "cgroup2 mount %s, this process in %s", mnt, mine);
	snprintf(cgdir, sizeof(cgdir), "%s%s", mnt, mine);

	/* (a) CLOSE_WAIT on the server side, after a little data each way. */
	if (tcp_pair(&lfd, &cfd, &sfd) < 0 || write(sfd, "abc", 3) != 3 ||
	    read(cfd, buf, 3) != 3 || write(cfd, "hello", 5) != 5 ||
	    read(sfd, buf, 5) != 5 || shutdown(cfd, SHUT_WR) < 0) {
		check(false, "set up a TCP pair on 127.0.0.1: %s", strerror(errno));
		goto cleanup;
	}
	{	/* wait for the FIN to arrive, so the server is in CLOSE_WAIT */
		struct pollfd p = { .fd = sfd, .events = POLLIN | POLLRDHUP };

		poll(&p, 1, 2000);
	}

	/* (b) named netns: one with a process holding a pair, one with none */
	if (test_ns_start(&ns[0], "", true) < 0 || test_ns_start(&ns[1], "-empty", false) < 0) {
		check(false, "set up TCP pairs in network namespaces %s, %s",
		      ns[0].name, ns[1].name);
		goto cleanup;
	}

	/* (c) the snapshot */
	self_ns = ino_of_path("/proc/self/ns/net");
	n = snapshot_tcp(&socks);
	check(n > 0, "snapshot_tcp returned %d sockets", n);
	check(ino_of_path("/proc/thread-self/ns/net") == self_ns,
	      "the calling thread is still in its own network namespace");
	if (n > 0) {
		const struct snap_sock *s = find(socks, n, self_ns, port_of(lfd), port_of(cfd));
		const struct snap_sock *c = find(socks, n, self_ns, port_of(cfd), port_of(lfd));
		const struct snap_sock *k = NULL, *tw = NULL;
		uint64_t cg = ino_of_path(cgdir);
		bool listener = false;

		check(s != NULL, "server socket 127.0.0.1:%u found", port_of(lfd));
		if (s) {
			uint8_t lo[4] = { 127, 0, 0, 1 };

			check(s->state == TCP_CLOSE_WAIT, "server state %u == CLOSE_WAIT (8)", s->state);
			check(!memcmp(s->saddr, lo, 4) && !memcmp(s->daddr, lo, 4),
			      "server addresses are 127.0.0.1");
			check(s->cookie != 0, "server cookie %llu != 0",
			      (unsigned long long)s->cookie);
			check(s->ino == ino_of_fd(sfd), "server inode %llu == fstat %llu",
			      (unsigned long long)s->ino, (unsigned long long)ino_of_fd(sfd));
			check(s->cgroup_id == cg && cg != 0, "server cgroup_id %llu == inode %llu of %s",
			      (unsigned long long)s->cgroup_id, (unsigned long long)cg, cgdir);
			check(s->netns == self_ns, "server netns %u == %llu",
			      s->netns, (unsigned long long)self_ns);
			check(s->uid == 0, "server uid %u == 0", s->uid);
			/* bytes_received follows rcv_nxt, so the FIN counts as one */
			check(s->bytes_received == 6 && s->bytes_acked == 3,
			      "server tcp_info bytes_received %llu == 5 + FIN, bytes_acked %llu == 3",
			      (unsigned long long)s->bytes_received,
			      (unsigned long long)s->bytes_acked);
		}
		/* FIN_WAIT1 until the peer's ACK of our FIN is in */
		check(c && (c->state == TCP_FIN_WAIT1 || c->state == TCP_FIN_WAIT2),
		      "client found in FIN_WAIT1/2 (state %d)", c ? c->state : -1);
		for (int i = 0; i < n; i++) {
			const struct snap_sock *x = &socks[i];

			if (x->netns == self_ns && x->sport == port_of(lfd) && x->dport == 0)
				listener = true;
			if (x->netns == ns[0].ino && x->sport == ns[0].kid.port && x->dport)
				k = x;
			if (x->netns == ns[1].ino && x->dport == ns[1].kid.port)
				tw = x;
		}
		check(!listener, "the LISTEN socket is left out");
		check(k != NULL, "socket in netns %s (inode %llu) found, port %u",
		      ns[0].name, (unsigned long long)ns[0].ino, ns[0].kid.port);
		if (k)
			check(k->state == TCP_ESTABLISHED && k->ino == ns[0].kid.ino,
			      "that socket is ESTABLISHED (%u) with inode %llu == %llu",
			      k->state, (unsigned long long)k->ino,
			      (unsigned long long)ns[0].kid.ino);
		check(tw && tw->state == TCP_TIME_WAIT && tw->ino == 0,
		      "TIME_WAIT socket in process-less netns %s (inode %llu) found (state %d)",
		      ns[1].name, (unsigned long long)ns[1].ino, tw ? tw->state : -1);
	}

	/* (d) socket owners */
	{
		FILE *f = fopen("/proc/self/comm", "r");
		struct sock_owner one[4], many[5];
		uint64_t inos[5] = { ino_of_fd(sfd), 0xFFFFFFFFFFFFull, ino_of_fd(cfd),
				     ns[0].kid.ino, ino_of_fd(sfd) };
		int m;

		if (f) {
			if (fgets(comm, sizeof(comm), f))
				comm[strcspn(comm, "\n")] = '\0';
			fclose(f);
		}
		m = procfd_lookup(ino_of_fd(sfd), one, 4);
		check(m == 1 && one[0].pid == (uint32_t)getpid() && !strcmp(one[0].comm, comm),
		      "procfd_lookup: %d owner(s), pid %u comm \"%s\" (want %d \"%s\")", m,
		      m > 0 ? one[0].pid : 0, m > 0 ? one[0].comm : "", (int)getpid(), comm);
		m = procfd_lookup_many(inos, many, 5);
		check(m == 4 && many[0].pid == (uint32_t)getpid() && many[1].pid == 0 &&
		      many[2].pid == (uint32_t)getpid() && many[3].pid == (uint32_t)ns[0].child &&
		      many[4].pid == (uint32_t)getpid() && !strcmp(many[0].comm, comm),
		      "procfd_lookup_many: %d of 5 (pids %u %u %u %u %u; child %d)", m,
		      many[0].pid, many[1].pid, many[2].pid, many[3].pid, many[4].pid,
		      (int)ns[0].child);
		check(procfd_lookup(0xFFFFFFFFFFFFull, one, 4) == 0,
		      "procfd_lookup of an unknown inode finds nobody");
	}

cleanup:
	free(socks);
	test_ns_stop(&ns[0]);
	test_ns_stop(&ns[1]);
	if (sfd >= 0)
		close(sfd);
	if (cfd >= 0)
		close(cfd);
	if (lfd >= 0)
		close(lfd);
	if (made_cg) {
		char p[8192];

		snprintf(p, sizeof(p), "%s%s", mnt, orig);
		write_pid(p);
		if (rmdir(newcg) != 0)
			fprintf(stderr, "warning: could not remove cgroup %s: %s\n", newcg,
				strerror(errno));
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
