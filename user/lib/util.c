// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cs_fail(const char *what, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "connscope: failed to %s: ", what);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void cs_warn(const char *fmt, ...)
{
	va_list ap;

	fputs("connscope: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cs_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int cs_parse_double(const char *s, double min, double max, double *out)
{
	double v;
	char *end;

	if (!s || !*s || *s == ' ')
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static uint64_t ts_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t cs_mono_ns(void) { return ts_ns(CLOCK_MONOTONIC); }
uint64_t cs_real_ns(void) { return ts_ns(CLOCK_REALTIME); }

static int64_t real_minus_mono;

void cs_clock_init(void)
{
	/* Take the pair as close together as we can: bracket the realtime read. */
	uint64_t m1 = cs_mono_ns(), r = cs_real_ns(), m2 = cs_mono_ns();

	real_minus_mono = (int64_t)r - (int64_t)(m1 + (m2 - m1) / 2);
}

uint64_t cs_mono_to_real(uint64_t mono_ns)
{
	return (uint64_t)((int64_t)mono_ns + real_minus_mono);
}

void cs_fmt_ts(uint64_t real_ns, char *buf, size_t len)
{
	/* Records come thousands a second: format each second's text once. */
	static time_t cached_sec = -1;
	static char base[24];
	time_t sec = (time_t)(real_ns / 1000000000ull);
	unsigned usec = (unsigned)((real_ns % 1000000000ull) / 1000);

	if (sec != cached_sec) {
		struct tm tm;

		gmtime_r(&sec, &tm);
		strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = sec;
	}
	if (len < sizeof(base) + 9) {
		snprintf(buf, len, "%s.%06uZ", base, usec);
		return;
	}
	/* Hand-formatted: this runs for every record. */
	size_t n = strlen(base);

	memcpy(buf, base, n);
	buf[n++] = '.';
	for (int i = 5; i >= 0; i--, usec /= 10)
		buf[n + i] = (char)('0' + usec % 10);
	n += 6;
	buf[n++] = 'Z';
	buf[n] = 0;
}

void cs_ephemeral_range(uint16_t *lo, uint16_t *hi)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	unsigned l = 32768, h = 60999;

	if (f) {
		if (fscanf(f, "%u %u", &l, &h) != 2 || l > 65535 || h > 65535 || l > h) {
			l = 32768;
			h = 60999;
		}
		fclose(f);
	}
	*lo = (uint16_t)l;
	*hi = (uint16_t)h;
}
