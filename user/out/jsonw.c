// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "jsonw.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jw_init(struct jw *w, char *buf, size_t cap)
{
	w->buf = buf;
	w->cap = cap;
	w->len = 0;
	w->overflow = false;
	w->depth = 0;
}

static void put(struct jw *w, const char *s, size_t n)
{
	if (w->len + n >= w->cap) {
		w->overflow = true;
		return;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = 0;
}

static void putc_(struct jw *w, char c)
{
	put(w, &c, 1);
}

/* Bytes a JSON string cannot hold as they are (RFC 8259 section 7: quote,
 * backslash, control characters; DEL too): one table load per byte. */
static const unsigned char must_escape[256] = {
	[0x00 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x7f] = 1,
};

/* Runs of plain bytes are copied whole; the NUL ends the string. */
static void put_string(struct jw *w, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s, *run = p;

	putc_(w, '"');
	for (;; p++) {
		if (!must_escape[*p])
			continue;
		put(w, (const char *)run, (size_t)(p - run));
		if (!*p)
			break;
		if (*p == '"' || *p == '\\') {
			char e[2] = { '\\', (char)*p };

			put(w, e, 2);
		} else {
			char e[6] = { '\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15] };

			put(w, e, 6);
		}
		run = p + 1;
	}
	putc_(w, '"');
}

/* A member's key: the callers' keys are literals of plain ASCII (no byte that
 * needs escaping), copied whole. */
static void key(struct jw *w, const char *k)
{
	if (w->depth > 0) {
		if (!w->first[w->depth - 1])
			putc_(w, ',');
		w->first[w->depth - 1] = false;
	}
	if (k) {
		putc_(w, '"');
		put(w, k, strlen(k));
		put(w, "\":", 2);
	}
}

/* { or [: a new nesting level whose first member needs no comma. */
static void open_(struct jw *w, const char *k, char c)
{
	key(w, k);
	putc_(w, c);
	if (w->depth < JW_DEPTH)
		w->first[w->depth] = true;
	w->depth++;
}

static void close_(struct jw *w, char c)
{
	putc_(w, c);
	if (w->depth > 0)
		w->depth--;
}

void jw_obj(struct jw *w, const char *k) { open_(w, k, '{'); }
void jw_end(struct jw *w) { close_(w, '}'); }
void jw_arr(struct jw *w, const char *k) { open_(w, k, '['); }
void jw_end_arr(struct jw *w) { close_(w, ']'); }

void jw_str(struct jw *w, const char *k, const char *val)
{
	key(w, k);
	if (val)
		put_string(w, val);
	else
		put(w, "null", 4);
}

static char *u64_text(uint64_t v, char *end)
{
	*--end = 0;
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

void jw_u64(struct jw *w, const char *k, uint64_t val)
{
	char tmp[24], *s = u64_text(val, tmp + sizeof(tmp));

	key(w, k);
	put(w, s, strlen(s));
}

void jw_ms(struct jw *w, const char *k, uint64_t ns)
{
	uint64_t us = ns / 1000;
	char tmp[24], *s = u64_text(us / 1000, tmp + sizeof(tmp));
	unsigned frac = (unsigned)(us % 1000);

	key(w, k);
	put(w, s, strlen(s));
	if (frac) {
		char f[4] = { '.', (char)('0' + frac / 100), (char)('0' + frac / 10 % 10),
			      (char)('0' + frac % 10) };
		size_t n = 4;

		/* No trailing zeros, as cJSON prints the same values. */
		while (f[n - 1] == '0')
			n--;
		put(w, f, n);
	}
}

void jw_num(struct jw *w, const char *k, double val)
{
	char tmp[32];
	double back;
	int n;

	key(w, k);
	if (isnan(val) || isinf(val)) {
		put(w, "null", 4);
		return;
	}
	n = snprintf(tmp, sizeof(tmp), "%1.15g", val);
	back = strtod(tmp, NULL);
	/* Reads back equal within the last bit's worth: 15 digits are enough. */
	if (fabs(back - val) > fmax(fabs(back), fabs(val)) * DBL_EPSILON)
		n = snprintf(tmp, sizeof(tmp), "%1.17g", val);
	put(w, tmp, (size_t)n);
}

void jw_bool(struct jw *w, const char *k, bool val)
{
	key(w, k);
	put(w, val ? "true" : "false", val ? 4 : 5);
}

void jw_null(struct jw *w, const char *k)
{
	key(w, k);
	put(w, "null", 4);
}
