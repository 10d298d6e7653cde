/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The socket behind a file descriptor of the current task (BPF side only). */
#ifndef CONNSCOPE_FDSOCK_BPF_H
#define CONNSCOPE_FDSOCK_BPF_H

/*
 * Through the task's fd table: files -> fdt -> fd[fd] -> file -> socket -> sock.
 * NULL unless fd is open and a socket. A file whose private data is not a
 * socket fails the check that the socket points back at the same file (it
 * also rejects an fd another thread closed and reused meanwhile).
 */
static __always_inline struct sock *sock_of_fd(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *file = NULL;
	struct fdtable *fdt;
	struct file **fds;
	struct socket *sock;

	if (fd < 0)
		return NULL;
	fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return NULL;
	return BPF_CORE_READ(sock, sk);
}

#endif
