/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The one JSON writer: every record goes out through it. Built for the hot path:
 * `connection` records come at tens of thousands a second, and building them as
 * cJSON trees costs a malloc per field and a printf round trip per number. This
 * writes straight into a buffer.
 */
#ifndef CONNSCOPE_JSONW_H
#define CONNSCOPE_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JW_DEPTH 8

struct jw {
	char *buf;
	size_t len, cap;
	bool overflow;
	int depth;
	bool first[JW_DEPTH];
};

void jw_init(struct jw *w, char *buf, size_t cap);
void jw_obj(struct jw *w, const char *key);   /* key NULL at the top level */
void jw_end(struct jw *w);
void jw_arr(struct jw *w, const char *key); /* elements: the value calls with key NULL */
void jw_end_arr(struct jw *w);
void jw_str(struct jw *w, const char *key, const char *val); /* val NULL -> null */
void jw_u64(struct jw *w, const char *key, uint64_t val);
/* Nanoseconds as milliseconds with microsecond precision: 12345678 -> 12.345 */
void jw_ms(struct jw *w, const char *key, uint64_t ns);
/* A JSON number as the records have always printed it: 15 significant digits, or
 * 17 when 15 do not read back the same; NaN and infinities as null. */
void jw_num(struct jw *w, const char *key, double val);
void jw_bool(struct jw *w, const char *key, bool val);
void jw_null(struct jw *w, const char *key);

#endif
