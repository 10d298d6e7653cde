/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
#ifndef CONNSCOPE_GORET_H
#define CONNSCOPE_GORET_H

#include <stddef.h>
#include <stdint.h>

/*
 * The offsets (from code[0]) of every RET instruction in code[0..len), a whole
 * x86-64 function body, decoded instruction by instruction. Returns how many were
 * found (at most max), or -1 if a byte does not decode or there are more than max:
 * then no offset is to be trusted, and nothing should be probed.
 */
int x86_ret_offsets(const uint8_t *code, size_t len, uint32_t *out, int max);

#endif
