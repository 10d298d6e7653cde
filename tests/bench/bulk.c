// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * bulk: one TCP connection, bulk transfer, for `make bench` (the DNAT part).
 *
 * A receiver thread listens on --listen ADDR:PORT, accepts one connection and reads
 * (and discards) until EOF. The sender connects to --connect ADDR:PORT (a Service
 * VIP: the node's DNAT rule leads it to the receiver), writes 64 KiB buffers for
 * --seconds, then closes. --server-netns / --client-netns name network namespace
 * files (/run/netns/X): the listener is made in the first, the sending socket in the
 * second (a socket stays in the namespace it was made in).
 *
 * Output: one JSON line: bytes received, seconds, MB/s (10^6 bytes per second,
 * received bytes over the sender's time from connect to the receiver's EOF), and the
 * process's CPU time. Diagnostics on stderr; a watchdog alarm ends a stuck run.
 *   gcc -O2 -pthread -o .output/bulk tests/bench/bulk.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF (64 * 1024)

static struct sockaddr_in listen_sa = { .sin_family = AF_INET };
static struct sockaddr_in connect_sa = { .sin_family = AF_INET };
static double seconds = 4;
static int lfd = -1;
static uint64_t received;
static uint64_t recv_end_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "bulk: failed to %s: %s\n", what, strerror(errno));
	exit(2);
}

static void on_alarm(int sig)
{
	static const char msg[] = "bulk: failed to finish: watchdog expired\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing left to do */
	}
	_exit(3);
}

static void parse_sa(const char *opt, const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		goto bad;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535 || inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		goto bad;
	sa->sin_port = htons((uint16_t)port);
	return;
bad:
	fprintf(stderr, "bulk: failed to parse %s: '%s' (IPv4:PORT)\n", opt, s);
	exit(2);
}

static void enter_netns(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || setns(fd, CLONE_NEWNET)) {
		fprintf(stderr, "bulk: failed to enter the network namespace %s: %s\n", path,
			strerror(errno));
		exit(2);
	}
	close(fd);
}

static void *receiver(void *arg)
{
	static char buf[BUF];
	int fd;

	(void)arg;
	do
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		die("accept");
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n > 0) {
			received += (uint64_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("receive");
		break;
	}
	recv_end_ns = now_ns();
	close(fd);
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: bulk --listen ADDR:PORT --connect ADDR:PORT [--seconds S]\n"
		   "            [--server-netns FILE] [--client-netns FILE]\n"
		   "One TCP connection, 64 KiB writes for S seconds (default 4). One JSON line.\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, 's' },
		{ "server-netns", required_argument, NULL, 'S' },
		{ "client-netns", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static char buf[BUF];
	const char *server_ns = NULL, *client_ns = NULL;
	int have_l = 0, have_c = 0, one = 1, fd, opt;
	uint64_t sent = 0, t0, end;
	struct rusage ru;
	pthread_t tid;
	char *e;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l': parse_sa("--listen", optarg, &listen_sa); have_l = 1; break;
		case 'c': parse_sa("--connect", optarg, &connect_sa); have_c = 1; break;
		case 's':
			seconds = strtod(optarg, &e);
			if (*e || seconds < 0.1 || seconds > 3600) {
				fprintf(stderr, "bulk: failed to parse --seconds: '%s'\n", optarg);
				return 2;
			}
			break;
		case 'S': server_ns = optarg; break;
		case 'C': client_ns = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || !have_l || !have_c) {
		usage(stderr);
		return 2;
	}
	signal(SIGALRM, on_alarm);
	alarm((unsigned)seconds + 30);
	signal(SIGPIPE, SIG_IGN);
	memset(buf, 'x', sizeof(buf));

	if (server_ns)
		enter_netns(server_ns);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("create the listening socket");
	if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
		die("set SO_REUSEADDR");
	if (bind(lfd, (struct sockaddr *)&listen_sa, sizeof(listen_sa)))
		die("bind the listening socket");
	if (listen(lfd, 16))
		die("listen");
	errno = pthread_create(&tid, NULL, receiver, NULL);
	if (errno)
		die("start the receiver");

	if (client_ns)
		enter_netns(client_ns);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("create the sending socket");
	t0 = now_ns();
	end = t0 + (uint64_t)(seconds * 1e9);
	while (connect(fd, (struct sockaddr *)&connect_sa, sizeof(connect_sa))) {
		if (errno != EINTR)
			die("connect");
	}
	while (now_ns() < end) {
		ssize_t n = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("send");
		sent += (uint64_t)n;
	}
	shutdown(fd, SHUT_WR);
	pthread_join(tid, NULL);
	close(fd);
	close(lfd);
	getrusage(RUSAGE_SELF, &ru);
	{
		double secs = (double)(recv_end_ns - t0) / 1e9;

		printf("{\"mode\":\"bulk\",\"sent\":%llu,\"received\":%llu,\"seconds\":%.3f,"
		       "\"mb_per_s\":%.2f,\"cpu_ms\":%.0f}\n",
		       (unsigned long long)sent, (unsigned long long)received, secs,
		       secs > 0 ? received / 1e6 / secs : 0.0,
		       (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
			       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3);
	}
	return received == sent ? 0 : 1;
}
