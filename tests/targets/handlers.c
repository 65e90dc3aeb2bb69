/*
 * handlers: a target with distinctive signal dispositions, mask, pending set
 * and alternate signal stack.
 *
 *   SIGUSR1     -> h1, SA_SIGINFO|SA_RESTART, sa_mask {SIGUSR2, SIGTERM}
 *   SIGUSR2     -> h2, SA_ONSTACK|SA_NODEFER
 *   SIGINT      -> SIG_IGN
 *   SIGTERM     -> h3, SA_RESETHAND
 *   SIGRTMIN+2  -> h1, SA_SIGINFO
 *   (glibc adds SA_RESTORER and its __restore_rt to every sigaction() call)
 *   sigaltstack: 65536 bytes, malloc'd
 *   blocked: SIGUSR2, SIGRTMIN+5
 *   pending: SIGUSR2 twice - once process-wide via kill() (ShdPnd, SI_USER)
 *            and once thread-directed via tgkill() (SigPnd; si_code
 *            SI_TKILL classically, SI_USER on the 6.18 kernel tested);
 *            SIGRTMIN+5 twice, via sigqueue() (ShdPnd, SI_QUEUE, values
 *            1234 then 5678).
 *
 * Before "ready" it prints, read back with the raw rt_sigaction syscall (kernel
 * struct layout, so the restorer is visible), for every signal N in 1..64:
 *   act N handler=0x.. flags=0x.. restorer=0x.. mask=<64 chars, char k-1 = signal k>
 * (or "act N error=ERRNO"), then
 *   altstack sp=0x.. size=N flags=N
 *   ready pid=P tid=P rtmin=R h1=0x.. h2=0x.. h3=0x.. altstack=0x.. altsize=65536
 *
 * Then the main (only) thread blocks reading stdin.  Commands:
 *   "dump"   -> the act lines and the altstack line again, then
 *               "blocked mask=<64>", "pending mask=<64>" (sigpending: thread
 *               and process queues together) and "end"
 *   "counts" -> "counts h1=N h2=N h3=N"
 *   EOF      -> exit 0
 *
 * An argument hardens it before "ready" (sigfs must then read its sigactions
 * one syscall at a time, not with an injected stub):
 *   seccomp -> a seccomp filter that allows every syscall (no_new_privs set)
 *   mdwe    -> prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN): no W+X mapping
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "common.h"
#define ALTSTACK_SIZE 65536

/* The kernel's struct sigaction on x86-64 (not glibc's). */
struct kernel_sigaction {
	unsigned long handler;
	unsigned long flags;
	unsigned long restorer;
	uint64_t mask;
};

static volatile uint64_t h1_count, h2_count, h3_count;

static void h1(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	__atomic_fetch_add(&h1_count, 1, __ATOMIC_RELAXED);
}

static void h2(int sig)
{
	(void)sig;
	__atomic_fetch_add(&h2_count, 1, __ATOMIC_RELAXED);
}

static void h3(int sig)
{
	(void)sig;
	__atomic_fetch_add(&h3_count, 1, __ATOMIC_RELAXED);
}

static void bitmap64(uint64_t m, char out[65])
{
	for (int s = 1; s <= 64; s++)
		out[s - 1] = (m >> (s - 1)) & 1 ? '1' : '0';
	out[64] = '\0';
}

static void bitmap_set(const sigset_t *set, char out[65])
{
	for (int s = 1; s <= 64; s++)
		out[s - 1] = sigismember(set, s) == 1 ? '1' : '0';
	out[64] = '\0';
}

static void dump_actions(void)
{
	for (int s = 1; s <= 64; s++) {
		struct kernel_sigaction ka;
		memset(&ka, 0, sizeof ka);
		if (syscall(SYS_rt_sigaction, s, NULL, &ka, 8) != 0) {
			say("act %d error=%d\n", s, errno);
			continue;
		}
		char map[65];
		bitmap64(ka.mask, map);
		say("act %d handler=0x%lx flags=0x%lx restorer=0x%lx mask=%s\n", s, ka.handler,
		    ka.flags, ka.restorer, map);
	}
	stack_t ss;
	if (sigaltstack(NULL, &ss) != 0)
		die("sigaltstack get");
	say("altstack sp=0x%lx size=%zu flags=%d\n", (unsigned long)(uintptr_t)ss.ss_sp, ss.ss_size,
	    ss.ss_flags);
}

static void harden(const char *how)
{
	if (strcmp(how, "seccomp") == 0) {
		struct sock_filter allow[] = {
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		};
		struct sock_fprog prog = { .len = 1, .filter = allow };
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
			die("PR_SET_NO_NEW_PRIVS");
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
			die("PR_SET_SECCOMP");
	} else if (strcmp(how, "mdwe") == 0) {
		if (prctl(65 /* PR_SET_MDWE */, 1 /* REFUSE_EXEC_GAIN */, 0, 0, 0) != 0)
			die("PR_SET_MDWE");
	} else {
		die("usage: handlers [seccomp|mdwe]");
	}
}

int main(int argc, char **argv)
{
	common_setup();
	if (argc > 2)
		die("usage: handlers [seccomp|mdwe]");
	if (argc == 2)
		harden(argv[1]);

	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = h1;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	sigaddset(&sa.sa_mask, SIGTERM);
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		die("sigaction SIGUSR1");

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = h2;
	sa.sa_flags = SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR2, &sa, NULL) != 0)
		die("sigaction SIGUSR2");

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) != 0)
		die("sigaction SIGINT");

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = h3;
	sa.sa_flags = SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) != 0)
		die("sigaction SIGTERM");

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = h1;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGRTMIN + 2, &sa, NULL) != 0)
		die("sigaction SIGRTMIN+2");

	stack_t ss;
	memset(&ss, 0, sizeof ss);
	ss.ss_sp = malloc(ALTSTACK_SIZE);
	if (!ss.ss_sp)
		die("malloc");
	ss.ss_size = ALTSTACK_SIZE;
	ss.ss_flags = 0;
	if (sigaltstack(&ss, NULL) != 0)
		die("sigaltstack");

	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGRTMIN + 5);
	if (sigprocmask(SIG_BLOCK, &block, NULL) != 0)
		die("sigprocmask");

	if (kill(getpid(), SIGUSR2) != 0)
		die("kill SIGUSR2");
	if (syscall(SYS_tgkill, getpid(), gettid(), SIGUSR2) != 0)
		die("tgkill SIGUSR2");
	union sigval v;
	v.sival_ptr = NULL;
	v.sival_int = 1234;
	if (sigqueue(getpid(), SIGRTMIN + 5, v) != 0)
		die("sigqueue 1234");
	v.sival_ptr = NULL;
	v.sival_int = 5678;
	if (sigqueue(getpid(), SIGRTMIN + 5, v) != 0)
		die("sigqueue 5678");

	dump_actions();
	say("ready pid=%d tid=%d rtmin=%d h1=0x%lx h2=0x%lx h3=0x%lx altstack=0x%lx altsize=%d\n",
	    getpid(), gettid(), SIGRTMIN, (unsigned long)(uintptr_t)h1,
	    (unsigned long)(uintptr_t)h2, (unsigned long)(uintptr_t)h3,
	    (unsigned long)(uintptr_t)ss.ss_sp, ALTSTACK_SIZE);

	char line[256];
	for (;;) {
		get_line(line, sizeof line);
		if (strcmp(line, "dump") == 0) {
			sigset_t cur, pend;
			char map[65];
			dump_actions();
			sigprocmask(SIG_BLOCK, NULL, &cur);
			bitmap_set(&cur, map);
			say("blocked mask=%s\n", map);
			sigpending(&pend);
			bitmap_set(&pend, map);
			say("pending mask=%s\n", map);
			say("end\n");
		} else if (strcmp(line, "counts") == 0) {
			say("counts h1=%llu h2=%llu h3=%llu\n", (unsigned long long)h1_count,
			    (unsigned long long)h2_count, (unsigned long long)h3_count);
		} else {
			say("error unknown command '%s'\n", line);
		}
	}
}
