// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The return instructions of a function, found by disassembling it (capstone).
 *
 * A Go function cannot take a return probe: the kernel swaps the return address on
 * the stack for its trampoline's, and Go's runtime, when it grows a goroutine's
 * stack, walks and copies the frames by their return addresses, meets the
 * trampoline's and aborts the process. A probe on each RET instruction sees the
 * return values in their registers (RAX first, ABIInternal) and leaves the stack
 * alone. Finding the RETs takes a real disassembler: x86-64 instructions have no
 * fixed length, and the byte 0xc3 is as likely an immediate or a ModRM byte.
 */
#include "goret.h"

#include <capstone/capstone.h>

int x86_ret_offsets(const uint8_t *code, size_t len, uint32_t *out, int max)
{
	const uint8_t *p = code;
	uint64_t addr = 0;
	size_t left = len;
	cs_insn *insn;
	csh h;
	int n = 0;

	if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK)
		return -1;
	insn = cs_malloc(h);
	if (!insn) {
		cs_close(&h);
		return -1;
	}
	/* One instruction at a time over the whole body: an undecodable byte ends
	 * the walk with an error rather than a guess at where the next one starts. */
	while (left) {
		if (!cs_disasm_iter(h, &p, &left, &addr, insn)) {
			n = -1;
			break;
		}
		if (insn->id == X86_INS_RET) {
			if (n >= max) {
				n = -1;
				break;
			}
			out[n++] = (uint32_t)insn->address;
		}
	}
	cs_free(insn, 1);
	cs_close(&h);
	return n;
}
