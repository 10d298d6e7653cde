/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
#ifndef CONNSCOPE_LIVE_H
#define CONNSCOPE_LIVE_H

#include "opts.h"

/* top, trace and daemon: load, attach, stream. Returns the exit code. */
int live_run(const struct cs_opts *o);
/* check: what this kernel supports and which attach points were chosen. */
int check_run(const struct cs_opts *o);

#endif
