/*
 * ptprobe PID...: asks the kernel whether this process may trace each PID.
 * For each PID it tries PTRACE_SEIZE (which stops nothing), detaches at once
 * if it worked, and prints "PID 1" (allowed) or "PID 0 ERRNO" (refused).
 * Run as another user, it is the kernel's own answer to the permission
 * question sigfs's access check must answer the same way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/types.h>

#ifndef PTRACE_SEIZE
#define PTRACE_SEIZE 0x4206
#endif

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		pid_t pid = (pid_t)strtol(argv[i], NULL, 10);
		if (ptrace(PTRACE_SEIZE, pid, NULL, NULL) == 0) {
			/* A seized thread that is not stopped: detach may say ESRCH;
			 * the kernel drops the attachment at our exit anyway. */
			ptrace(PTRACE_DETACH, pid, NULL, NULL);
			printf("%d 1\n", pid);
		} else {
			printf("%d 0 %d\n", pid, errno);
		}
	}
	return 0;
}
