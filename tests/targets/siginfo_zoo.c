/*
 * siginfo_zoo: a single-threaded target whose main thread has one queued
 * siginfo of (nearly) every layout pending, everything blocked.
 *
 * Blocked: SIGUSR1 SIGUSR2 SIGBUS SIGCHLD SIGIO SIGSYS SIGRTMIN+1 SIGRTMIN+3
 * SIGRTMIN+4 (exactly these; listed in ready "blocked=").
 *
 * Pending, process-wide (shared queue, ShdPnd):
 *   SIGCHLD     CLD_EXITED from child C1, which did _exit(3) (C1 is left an
 *               unreaped zombie)                              layout chld
 *   SIGUSR1     kill() by a second child C2 (si_pid=C2, SI_USER; C2 has been
 *               reaped; its own SIGCHLD was dropped as SIGCHLD was pending)
 *                                                               layout kill
 *   SIGUSR2     kill(getpid()), SI_USER                         layout kill
 *   SIGRTMIN+1  POSIX timer (raw timer_create, CLOCK_MONOTONIC, SIGEV_SIGNAL,
 *               sival_int 77) fired once, SI_TIMER; the timer stays allocated
 *                                                               layout timer
 *   SIGRTMIN+3  sigqueue() value 99, SI_QUEUE                   layout rt
 * Pending, thread-directed (main thread's private queue, SigPnd):
 *   SIGUSR2     tgkill(getpid(), gettid())                      layout kill
 *               (si_code: classically SI_TKILL; the 6.18 kernel this was
 *               written on reports SI_USER, so tests accept either)
 *   SIGRTMIN+4  O_ASYNC pipe, F_SETSIG SIGRTMIN+4, F_SETOWN_EX F_OWNER_TID main
 *               thread: si_code POLL_IN, si_band POLLIN|POLLRDNORM, si_fd
 *                                                               layout poll
 *   SIGIO       the same with F_SETSIG SIGIO (a real SIGPOLL with POLL_IN)
 *                                                               layout poll
 *   SIGBUS      rt_tgsigqueueinfo to itself (allowed with si_code >= 0 only
 *               because the target is the caller's own thread), BUS_ADRERR,
 *               si_addr 0xdeadbeef000                           layout fault
 *   SIGSYS      the same way: SYS_SECCOMP, si_call_addr, si_syscall 39,
 *               si_arch AUDIT_ARCH_X86_64                       layout sys
 * Not produced: the MCEERR/BNDERR/PKUERR/PERF_EVENT fault variants (only a
 * real fault or the kernel can make those).
 *
 * Before printing ready it checks /proc/self/status SigPnd/ShdPnd match the
 * above exactly.
 *
 * ready pid=P tid=P uid=U child=C1 child_status=3 sender=C2 timerid=K
 *       timer_sig=N timer_val=77 queue_sig=N queue_val=99 poll_sig=N poll_fd=F
 *       poll_band=0x41 sigio_fd=F fault_sig=7 fault_code=2 fault_addr=0xdeadbeef000
 *       sys_sig=31 sys_code=1 call_addr=0x.. syscall=39 arch=0xc000003e
 *       private=N,N,.. shared=N,N,.. blocked=N,N,..
 *
 * Then the main thread blocks reading stdin.  Commands:
 *   "drain" -> dequeues everything with sigtimedwait() (order: private queue
 *              first, then shared; synchronous signals first) printing one
 *              line per siginfo:
 *                info signo=N code=C errno=E layout=L <fields>
 *              fields by layout: kill: pid uid | rt: pid uid value |
 *              timer: timerid overrun value | chld: pid uid status utime stime |
 *              fault: addr | poll: band fd | sys: call_addr syscall arch
 *              then "drained n=N".
 *   EOF     -> exit 0
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#define FAULT_ADDR 0xdeadbeef000UL
#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1 /* <asm-generic/siginfo.h>, which clashes with glibc */
#endif

static sigset_t blocked;

static void wait_pending(int sig, const char *what)
{
	for (int i = 0;; i++) {
		sigset_t pend;
		sigpending(&pend);
		if (sigismember(&pend, sig) == 1)
			return;
		if (i > 10000) {
			fprintf(stderr, "%s: signal %d never became pending\n", what, sig);
			_exit(2);
		}
		usleep(1000);
	}
}

static uint64_t bit(int sig)
{
	return 1ULL << (sig - 1);
}

static uint64_t status_mask(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		die("open /proc/self/status");
	char line[512];
	size_t klen = strlen(key);
	uint64_t v = 0;
	int found = 0;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			v = strtoull(line + klen + 1, NULL, 16);
			found = 1;
			break;
		}
	}
	fclose(f);
	if (!found) {
		fprintf(stderr, "no %s in /proc/self/status\n", key);
		_exit(2);
	}
	return v;
}

static void list(uint64_t m, char *out, size_t size)
{
	size_t n = 0;
	out[0] = '\0';
	for (int s = 1; s <= 64; s++)
		if (m & bit(s))
			n += (size_t)snprintf(out + n, size - n, "%s%d", n ? "," : "", s);
}

/* A copy of the kernel's siginfo_layout() (kernel/signal.c), x86-64 only. */
static const char *layout(int sig, int code)
{
	if (code > SI_USER && code < SI_KERNEL) {
		int limit = 0;
		const char *l = "kill";
		switch (sig) {
		case SIGILL: limit = 11; l = "fault"; break;
		case SIGFPE: limit = 15; l = "fault"; break;
		case SIGSEGV: limit = 10; l = "fault"; break;
		case SIGBUS: limit = 5; l = "fault"; break;
		case SIGTRAP: limit = 6; l = "fault"; break;
		case SIGCHLD: limit = 6; l = "chld"; break;
		case SIGPOLL: limit = 6; l = "poll"; break;
		case SIGSYS: limit = 2; l = "sys"; break;
		}
		if (code <= limit)
			return l;
		if (code <= 6)
			return "poll";
		return "kill";
	}
	if (code == SI_TIMER)
		return "timer";
	if (code == SI_SIGIO)
		return "poll";
	if (code < 0)
		return "rt";
	return "kill";
}

static void drain(void)
{
	struct timespec zero = { 0, 0 };
	int n = 0;
	for (;;) {
		siginfo_t si;
		memset(&si, 0, sizeof si);
		int sig = sigtimedwait(&blocked, &si, &zero);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		n++;
		const char *l = layout(si.si_signo, si.si_code);
		char f[256] = "";
		if (strcmp(l, "kill") == 0)
			snprintf(f, sizeof f, "pid=%d uid=%u", si.si_pid, si.si_uid);
		else if (strcmp(l, "rt") == 0)
			snprintf(f, sizeof f, "pid=%d uid=%u value=%d", si.si_pid, si.si_uid,
				 si.si_value.sival_int);
		else if (strcmp(l, "timer") == 0)
			snprintf(f, sizeof f, "timerid=%d overrun=%d value=%d", si.si_timerid,
				 si.si_overrun, si.si_value.sival_int);
		else if (strcmp(l, "chld") == 0)
			snprintf(f, sizeof f, "pid=%d uid=%u status=%d utime=%ld stime=%ld", si.si_pid,
				 si.si_uid, si.si_status, (long)si.si_utime, (long)si.si_stime);
		else if (strcmp(l, "fault") == 0)
			snprintf(f, sizeof f, "addr=0x%lx", (unsigned long)(uintptr_t)si.si_addr);
		else if (strcmp(l, "poll") == 0)
			snprintf(f, sizeof f, "band=0x%lx fd=%d", (unsigned long)si.si_band, si.si_fd);
		else if (strcmp(l, "sys") == 0)
			snprintf(f, sizeof f, "call_addr=0x%lx syscall=%d arch=0x%x",
				 (unsigned long)(uintptr_t)si.si_call_addr, si.si_syscall, si.si_arch);
		say("info signo=%d code=%d errno=%d layout=%s %s\n", si.si_signo, si.si_code,
		    si.si_errno, l, f);
	}
	say("drained n=%d\n", n);
}

static int async_pipe(int sig)
{
	int fds[2];
	if (pipe(fds) != 0)
		die("pipe");
	struct f_owner_ex owner = { .type = F_OWNER_TID, .pid = gettid() };
	if (fcntl(fds[0], F_SETOWN_EX, &owner) != 0)
		die("F_SETOWN_EX");
	if (fcntl(fds[0], F_SETSIG, sig) != 0)
		die("F_SETSIG");
	if (fcntl(fds[0], F_SETFL, O_ASYNC | O_NONBLOCK) != 0)
		die("F_SETFL O_ASYNC");
	/* Both ends stay open: closing the writer would queue another POLL_IN. */
	if (write(fds[1], "z", 1) != 1)
		die("write pipe");
	wait_pending(sig, "O_ASYNC pipe");
	return fds[0];
}

int main(void)
{
	common_setup();
	pid_t pid = getpid(), tid = gettid();
	int timer_sig = SIGRTMIN + 1, queue_sig = SIGRTMIN + 3, poll_sig = SIGRTMIN + 4;

	sigemptyset(&blocked);
	int block_list[] = { SIGUSR1, SIGUSR2, SIGBUS, SIGCHLD, SIGIO, SIGSYS, timer_sig, queue_sig,
			     poll_sig };
	uint64_t blocked_bits = 0;
	for (size_t i = 0; i < sizeof block_list / sizeof block_list[0]; i++) {
		sigaddset(&blocked, block_list[i]);
		blocked_bits |= bit(block_list[i]);
	}
	if (sigprocmask(SIG_BLOCK, &blocked, NULL) != 0)
		die("sigprocmask");

	/* SIGCHLD, CLD_EXITED status 3; the child stays a zombie. */
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0)
		_exit(3);
	wait_pending(SIGCHLD, "SIGCHLD");

	/* POSIX timer, raw syscalls so the kernel timer id is known. */
	struct sigevent sev;
	memset(&sev, 0, sizeof sev);
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = timer_sig;
	sev.sigev_value.sival_ptr = NULL;
	sev.sigev_value.sival_int = 77;
	int ktimer = -1;
	if (syscall(SYS_timer_create, CLOCK_MONOTONIC, &sev, &ktimer) != 0)
		die("timer_create");
	struct itimerspec its = { .it_interval = { 0, 0 }, .it_value = { 0, 1000000 } };
	if (syscall(SYS_timer_settime, ktimer, 0, &its, NULL) != 0)
		die("timer_settime");
	wait_pending(timer_sig, "timer");

	/* sigqueue, SI_QUEUE value 99. */
	union sigval v;
	v.sival_ptr = NULL;
	v.sival_int = 99;
	if (sigqueue(pid, queue_sig, v) != 0)
		die("sigqueue");

	/* O_ASYNC pipes owned by the main thread. */
	int poll_fd = async_pipe(poll_sig);
	int sigio_fd = async_pipe(SIGIO);

	/* SIGUSR1 from a child; reap that child (its SIGCHLD is dropped). */
	pid_t sender = fork();
	if (sender < 0)
		die("fork");
	if (sender == 0) {
		if (kill(pid, SIGUSR1) != 0)
			_exit(1);
		_exit(0);
	}
	int st;
	if (waitpid(sender, &st, 0) != sender || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "sender child failed\n");
		_exit(2);
	}
	wait_pending(SIGUSR1, "SIGUSR1");

	/* SIGUSR2 twice: shared (kill) and private (tgkill). */
	if (kill(pid, SIGUSR2) != 0)
		die("kill SIGUSR2");
	if (syscall(SYS_tgkill, pid, tid, SIGUSR2) != 0)
		die("tgkill SIGUSR2");

	/* Fault and seccomp layouts, queued to ourselves. */
	siginfo_t si;
	memset(&si, 0, sizeof si);
	si.si_signo = SIGBUS;
	si.si_code = BUS_ADRERR;
	si.si_addr = (void *)FAULT_ADDR;
	if (syscall(SYS_rt_tgsigqueueinfo, pid, tid, SIGBUS, &si) != 0)
		die("rt_tgsigqueueinfo SIGBUS");
	unsigned long call_addr = (unsigned long)(uintptr_t)main;
	memset(&si, 0, sizeof si);
	si.si_signo = SIGSYS;
	si.si_code = SYS_SECCOMP;
	si.si_call_addr = (void *)call_addr;
	si.si_syscall = SYS_getpid;
	si.si_arch = AUDIT_ARCH_X86_64;
	if (syscall(SYS_rt_tgsigqueueinfo, pid, tid, SIGSYS, &si) != 0)
		die("rt_tgsigqueueinfo SIGSYS");

	uint64_t want_private = bit(SIGUSR2) | bit(poll_sig) | bit(SIGIO) | bit(SIGBUS) | bit(SIGSYS);
	uint64_t want_shared =
		bit(SIGCHLD) | bit(SIGUSR1) | bit(SIGUSR2) | bit(timer_sig) | bit(queue_sig);
	uint64_t got_private = status_mask("SigPnd"), got_shared = status_mask("ShdPnd");
	uint64_t got_blocked = status_mask("SigBlk");
	if (got_private != want_private || got_shared != want_shared || got_blocked != blocked_bits) {
		fprintf(stderr,
			"unexpected /proc/self/status: SigPnd=%016llx (want %016llx) "
			"ShdPnd=%016llx (want %016llx) SigBlk=%016llx (want %016llx)\n",
			(unsigned long long)got_private, (unsigned long long)want_private,
			(unsigned long long)got_shared, (unsigned long long)want_shared,
			(unsigned long long)got_blocked, (unsigned long long)blocked_bits);
		_exit(2);
	}

	char priv[256], shared[256], blk[256];
	list(want_private, priv, sizeof priv);
	list(want_shared, shared, sizeof shared);
	list(blocked_bits, blk, sizeof blk);
	say("ready pid=%d tid=%d uid=%u child=%d child_status=3 sender=%d timerid=%d timer_sig=%d "
	    "timer_val=77 queue_sig=%d queue_val=99 poll_sig=%d poll_fd=%d poll_band=0x41 "
	    "sigio_fd=%d fault_sig=%d fault_code=%d fault_addr=0x%lx sys_sig=%d sys_code=%d "
	    "call_addr=0x%lx syscall=%d arch=0x%x private=%s shared=%s blocked=%s\n",
	    pid, tid, getuid(), child, sender, ktimer, timer_sig, queue_sig, poll_sig, poll_fd,
	    sigio_fd, SIGBUS, BUS_ADRERR, FAULT_ADDR, SIGSYS, SYS_SECCOMP, call_addr, SYS_getpid,
	    AUDIT_ARCH_X86_64, priv, shared, blk);

	char line[256];
	for (;;) {
		get_line(line, sizeof line);
		if (strcmp(line, "drain") == 0)
			drain();
		else
			say("error unknown command '%s'\n", line);
	}
}
