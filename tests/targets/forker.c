/*
 * forker: the test case from the 2007 RFC.
 *
 * Blocks SIGUSR1, SIGUSR2, SIGCHLD, SIGSEGV and SIGPOLL with sigprocmask,
 * forks a child that does _exit(0), and waits (polling sigpending, without
 * reaping) until the child is a zombie and SIGCHLD is pending.  SIGCHLD goes
 * to the process-wide (shared) queue: ShdPnd has bit 17, SigPnd does not.
 * The child stays an unreaped zombie.
 *
 * ready pid=P child=C
 *
 * Then it blocks reading stdin (main thread, only thread).  EOF -> exit 0.
 * Commands: "pending" -> "pending mask=<64 chars, char k-1 = signal k>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
static void bitmap(const sigset_t *set, char out[65])
{
	for (int s = 1; s <= 64; s++)
		out[s - 1] = sigismember(set, s) == 1 ? '1' : '0';
	out[64] = '\0';
}

int main(void)
{
	common_setup();

	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGCHLD);
	sigaddset(&block, SIGSEGV);
	sigaddset(&block, SIGPOLL);
	if (sigprocmask(SIG_BLOCK, &block, NULL) != 0)
		die("sigprocmask");

	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0)
		_exit(0);

	for (int i = 0;; i++) {
		sigset_t pend;
		siginfo_t info;
		memset(&info, 0, sizeof info);
		sigpending(&pend);
		/* WNOWAIT: look at the zombie without reaping it. */
		int zombie = waitid(P_PID, (id_t)child, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
			     info.si_pid == child;
		if (zombie && sigismember(&pend, SIGCHLD) == 1)
			break;
		if (i > 10000) {
			fprintf(stderr, "SIGCHLD never became pending\n");
			_exit(2);
		}
		usleep(1000);
	}

	say("ready pid=%d child=%d\n", getpid(), child);

	char line[256];
	for (;;) {
		get_line(line, sizeof line);
		if (strcmp(line, "pending") == 0) {
			sigset_t pend;
			char map[65];
			sigpending(&pend);
			bitmap(&pend, map);
			say("pending mask=%s\n", map);
		} else {
			say("error unknown command '%s'\n", line);
		}
	}
}
