/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The capabilities connscope uses, and what cannot work without each. */
#ifndef CONNSCOPE_PRIVS_H
#define CONNSCOPE_PRIVS_H

#include <stdio.h>

/* For `connscope check`: one line per capability connscope uses, saying whether
 * this process holds it in its effective set, what it is for, and when it is
 * missing, which parts will not work (CAP_SYS_ADMIN stands in for CAP_BPF,
 * CAP_PERFMON and the BPF uses of CAP_NET_ADMIN, as the kernel accepts it for
 * them). Returns the number of missing capabilities that leave a part broken. */
int privs_report(FILE *f);

#endif
