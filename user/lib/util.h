/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Small helpers shared by every part of the connscope user space. */
#ifndef CONNSCOPE_UTIL_H
#define CONNSCOPE_UTIL_H

#define CONNSCOPE_VERSION "0.1.0"

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

/* One diagnostic line on stderr: "connscope: failed to <what>: <reason>". */
void cs_fail(const char *what, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A plain diagnostic line on stderr: "connscope: <text>". */
void cs_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Strict number parsing: the whole string, in range, no overflow.
 * Return 0 on success, -1 (and leave *out alone) otherwise. */
int cs_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
int cs_parse_double(const char *s, double min, double max, double *out);

/* The kernel's ephemeral port range (ip_local_port_range; 32768-60999 if unreadable). */
void cs_ephemeral_range(uint16_t *lo, uint16_t *hi);
/* Monotonic clock in nanoseconds (CLOCK_MONOTONIC, the clock bpf_ktime_get_ns uses). */
uint64_t cs_mono_ns(void);
/* Realtime in nanoseconds since the epoch. */
uint64_t cs_real_ns(void);
/* Convert a BPF monotonic timestamp to wall time with the clock pair taken at start. */
void cs_clock_init(void);
uint64_t cs_mono_to_real(uint64_t mono_ns);
/* RFC 3339 UTC with microseconds: 2026-11-22T04:36:00.123456Z. buf >= 32 bytes. */
void cs_fmt_ts(uint64_t real_ns, char *buf, size_t len);

#endif
