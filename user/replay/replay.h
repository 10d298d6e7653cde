/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* connscope replay: capture files in, the live tool's records out (user/replay/replay.c). */
#ifndef CONNSCOPE_REPLAY_H
#define CONNSCOPE_REPLAY_H

#include <stddef.h>
#include "opts.h"

/* 0 when every file was read (a truncated file still counts as read: what it
 * held was reported), 1 when a file or the key log or pod list could not be. */
int replay_run(const struct cs_opts *o);
/* One line for `connscope check`: the capture and crypto libraries replay uses. */
void replay_describe(char *buf, size_t len);

#endif
