// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The tracker's parts, in the order the core calls their hooks (the order of the
 * summary record's members). The core (track.c) walks this list and names none.
 */
#include "track_priv.h"

const struct track_part *const track_parts[] = {
	&tcp_part,
	&tls_part,
	&h2_part,
	&ct_part,
	NULL,
};
