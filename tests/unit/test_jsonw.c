// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The hot-path JSON writer: escaping, numbers, nesting, overflow. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jsonw.h"

static int pass, fail;

static void expect(const char *what, const char *got, const char *want)
{
	if (!strcmp(got, want)) {
		pass++;
		printf("ok: %s\n", what);
	} else {
		fail++;
		printf("FAIL: %s: got %s want %s\n", what, got, want);
	}
}

int main(void)
{
	char buf[256];
	struct jw w;

	jw_init(&w, buf, sizeof(buf));
	jw_obj(&w, NULL);
	jw_str(&w, "s", "a\"b\\c\n\x01\x7f" "d");
	jw_u64(&w, "n", 18446744073709551615ull);
	jw_u64(&w, "z", 0);
	jw_ms(&w, "ms1", 12345678);
	jw_ms(&w, "ms2", 5000000);
	jw_ms(&w, "ms3", 120000);
	jw_ms(&w, "ms4", 999);
	jw_obj(&w, "o");
	jw_bool(&w, "t", true);
	jw_null(&w, "x");
	jw_str(&w, "u", NULL);
	jw_end(&w);
	jw_bool(&w, "f", false);
	jw_end(&w);
	expect("record", buf,
	       "{\"s\":\"a\\\"b\\\\c\\u000a\\u0001\\u007fd\",\"n\":18446744073709551615,\"z\":0,"
	       "\"ms1\":12.345,\"ms2\":5,\"ms3\":0.12,\"ms4\":0,\"o\":{\"t\":true,\"x\":null,"
	       "\"u\":null},\"f\":false}");
	expect("not overflowed", w.overflow ? "yes" : "no", "no");

	jw_init(&w, buf, 16);
	jw_obj(&w, NULL);
	jw_str(&w, "long", "0123456789abcdef");
	jw_end(&w);
	expect("overflow is flagged", w.overflow ? "yes" : "no", "yes");
	expect("overflow stays terminated", strlen(buf) < 16 ? "yes" : "no", "yes");

	/* Numbers print as they did when records went out through cJSON's printer:
	 * counters, rounded seconds and ratios, whole and not. */
	{
		static const double v[] = { 0, -0.0, 1, -1, 42, 2147483647.0, 2147483648.0,
					    -2147483648.0, -2147483649.0, 4294967296.0,
					    123456789012.0, 1e15, 1e16, 0.1, 0.125, 1.5, 12.345,
					    0.001, 3.0 / 7, 2.0 / 3, 1e-7, 1e300, 29.5, 99.999,
					    1234.5678, 18446744073709551615.0 };
		int bad = 0;

		for (size_t i = 0; i < sizeof(v) / sizeof(v[0]) + 2; i++) {
			double d = i < sizeof(v) / sizeof(v[0]) ? v[i] : i % 2 ? NAN : INFINITY;
			cJSON *n = cJSON_CreateNumber(d);
			char *want = cJSON_PrintUnformatted(n);

			jw_init(&w, buf, sizeof(buf));
			jw_num(&w, NULL, d);
			if (strcmp(buf, want)) {
				printf("FAIL: jw_num(%.17g): got %s want %s\n", d, buf, want);
				bad++;
			}
			free(want);
			cJSON_Delete(n);
		}
		expect("jw_num prints every number as cJSON did", bad ? "no" : "yes", "yes");
	}

	printf("%d passed, %d failed\n", pass, fail);
	return fail != 0;
}
