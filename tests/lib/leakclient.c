// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* A client that leaks its sockets: leak_connection() connects and forgets the
 * fd, so once the server closes, each socket sits in CLOSE_WAIT. Built by the
 * live tests with frame pointers, so connscope's stack names leak_connection.
 *
 *   leakclient IP PORT COUNT [mt]    prints "LEAKED <n>", then sleeps until killed
 *
 * mt: start a second thread first, so that glibc's syscall wrappers take their
 * multi-threaded path (which lowers the stack pointer before the syscall). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((noinline)) static int leak_connection(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0)
		return -1;
	return 0; /* the leak: fd is never closed */
}

static void *idle(void *arg)
{
	for (int i = 0; i < 600; i++)
		sleep(1);
	return arg;
}

int main(int argc, char **argv)
{
	pthread_t th;

	struct sockaddr_in sa = { .sin_family = AF_INET };
	int n = 0, count;

	if (argc < 4 || argc > 5 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1)
		return 2;
	if (argc == 5 && pthread_create(&th, NULL, idle, NULL))
		return 1;
	sa.sin_port = htons((unsigned short)atoi(argv[2]));
	count = atoi(argv[3]);
	for (int i = 0; i < count; i++)
		n += leak_connection(&sa) == 0;
	printf("LEAKED %d\n", n);
	fflush(stdout);
	for (int i = 0; i < 600; i++)
		sleep(1);
	return 0;
}
