// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "sigend.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "output.h"
#include "util.h"

volatile sig_atomic_t sigend_stop;
static volatile sig_atomic_t done, done_rc;
static uint64_t when_ns;
static sem_t armed;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void sigend_exit(int rc)
{
	pid_t me = getpid();

	/* Closing a uprobe's link waits for an RCU grace period: tens of ms each, and
	 * the kernel does it one by one as the process exits, before its parent can see
	 * it gone. A child that holds the same descriptors until we are gone takes that
	 * wait upon itself. stdin and stdout are closed first: their readers see the end
	 * now, not when the child goes. Only async-signal-safe calls: a signal handler
	 * and the guard call this too. */
	close(STDIN_FILENO);
	close(STDOUT_FILENO);
	if (_Fork() == 0) {
		struct timespec ts = { 0, 5000000 };

		close(STDERR_FILENO);
		while (getppid() == me)
			nanosleep(&ts, NULL);
		_exit(0);
	}
	_exit(rc);
}

/* Only async-signal-safe calls here: clock_gettime, sem_post, write, _Fork, _exit. */
static void on_signal(int sig)
{
	static const char msg[] = "connscope: second signal: exiting now\n";
	int e = errno;

	if (sigend_stop) {
		if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
			sigend_exit(128 + sig);
		sigend_exit(128 + sig);
	}
	__atomic_store_n(&when_ns, mono_ns(), __ATOMIC_RELEASE);
	sigend_stop = 1;
	sem_post(&armed);
	errno = e;
}

static void *guard(void *arg)
{
	static const char msg[] = "connscope: the run did not end within " "900" " ms of the "
				  "signal: exiting now, without the end stats record\n";
	struct timespec ts;
	uint64_t deadline;

	(void)arg;
	while (sem_wait(&armed) && errno == EINTR)
		;
	deadline = __atomic_load_n(&when_ns, __ATOMIC_ACQUIRE) + SIGEND_GUARD_MS * 1000000ull;
	ts.tv_sec = (time_t)(deadline / 1000000000ull);
	ts.tv_nsec = (long)(deadline % 1000000000ull);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
	if (done)
		sigend_exit(done_rc);
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		sigend_exit(1);
	out_report(STDERR_FILENO, "the run was ended before stdout took them");
	sigend_exit(1);
	return NULL;
}

_Static_assert(SIGEND_GUARD_MS == 900, "the guard's message says 900 ms");

int sigend_install(void)
{
	struct sigaction sa;
	sigset_t set, old;
	pthread_t t;
	int rc;

	sem_init(&armed, 0, 0);
	/* The guard takes no signal: they go to the thread that runs the loop. */
	sigfillset(&set);
	pthread_sigmask(SIG_SETMASK, &set, &old);
	rc = pthread_create(&t, NULL, guard, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!rc)
		pthread_detach(t);
	else
		cs_warn("no guard for the end of the run: %s", strerror(rc));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A parent may start us with them blocked; one sent already is taken now. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	return rc ? -1 : 0;
}

uint64_t sigend_when_ns(void)
{
	return sigend_stop ? __atomic_load_n(&when_ns, __ATOMIC_ACQUIRE) : 0;
}

void sigend_done(int rc)
{
	done_rc = rc;
	done = 1;
}
