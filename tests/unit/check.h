/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* One line per check ("ok: ..." / "FAIL: ..."), counted for the closing
 * "N passed, N failed" line the unit tests print. */
#ifndef CONNSCOPE_TEST_CHECK_H
#define CONNSCOPE_TEST_CHECK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

/* An exactly-sized heap copy: reading past n is an ASan error. */
static inline unsigned char *dup_n(const unsigned char *p, size_t n)
{
	unsigned char *q = malloc(n ? n : 1);

	if (!q)
		abort();
	if (n)
		memcpy(q, p, n);
	return q;
}

__attribute__((format(printf, 2, 3)))
static void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s: ", ok ? "ok" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (ok)
		passed++;
	else
		failed++;
}

#endif
