// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* x86_ret_offsets: the RETs a disassembler finds, not the 0xc3 bytes. */
#include "check.h"
#include "goret.h"

/* A Go-shaped function: stack check, two exits, and 0xc3 bytes that are no RET
 * (an immediate, a ModRM byte, a displacement). */
static const unsigned char body[] = {
	0x49, 0x3b, 0x66, 0x10,                   /*  0 cmp rsp, [r14+0x10] */
	0x76, 0x1c,                               /*  4 jbe +0x1c */
	0xb8, 0xc3, 0x00, 0x00, 0x00,             /*  6 mov eax, 0xc3 */
	0x48, 0x89, 0xc3,                         /* 11 mov rbx, rax */
	0x48, 0x8b, 0x43, 0xc3,                   /* 14 mov rax, [rbx-0x3d] */
	0x48, 0x85, 0xc0,                         /* 18 test rax, rax */
	0x74, 0x01,                               /* 21 je +1 */
	0xc3,                                     /* 23 ret */
	0x31, 0xc0,                               /* 24 xor eax, eax */
	0xc3,                                     /* 26 ret */
	0xe8, 0x00, 0x00, 0x00, 0x00,             /* 27 call (morestack) */
	0xeb, 0xda,                               /* 32 jmp to the start */
};

int main(void)
{
	uint32_t off[8];
	int n = x86_ret_offsets(body, sizeof(body), off, 8);

	check(n == 2 && off[0] == 23 && off[1] == 26,
	      "two RETs at 23 and 26, none at the 0xc3 bytes of 7, 13 and 17 (got %d: %u %u)", n,
	      n > 0 ? off[0] : 0, n > 1 ? off[1] : 0);
	check(x86_ret_offsets(body, sizeof(body), off, 1) == -1,
	      "more RETs than room: nothing to trust");
	/* A body cut inside an instruction: the walk does not guess past it. */
	check(x86_ret_offsets(body, 13, off, 8) == -1, "a cut instruction fails the walk");
	check(x86_ret_offsets((const unsigned char *)"\x0f\x0b\xc3", 3, off, 8) == 1 && off[0] == 2,
	      "ud2 then ret: one RET at 2");
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
