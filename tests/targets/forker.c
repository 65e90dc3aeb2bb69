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

/* ---- common helpers (duplicated in every target) ---- */
static void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	_exit(2);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			_exit(3);
		}
		p += w;
		n -= (size_t)w;
	}
}

/* Print one line (or several) with a single write(2), so lines never mix. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[16384];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0)
		_exit(3);
	if ((size_t)n >= sizeof buf)
		n = sizeof buf - 1;
	write_all(1, buf, (size_t)n);
}

/* Read one line from stdin (without the newline); exit(0) on EOF. */
static void get_line(char *buf, size_t size)
{
	size_t n = 0;
	for (;;) {
		char c;
		ssize_t r = read(0, &c, 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("read stdin");
		}
		if (r == 0)
			_exit(0);
		if (c == '\n')
			break;
		if (n + 1 < size)
			buf[n++] = c;
	}
	buf[n] = '\0';
}

/*
 * Undo what exec lets a target inherit (SIG_IGN dispositions, e.g. SIGQUIT
 * and SIGINT under a non-interactive shell's "&", and the signal mask) so
 * every run starts from the same state; never outlive 600 s.  The raw syscall
 * with an all-zero kernel sigaction leaves exactly what exec leaves for a
 * SIG_DFL signal (glibc's sigaction() would add SA_RESTORER and a restorer).
 */
static void common_setup(void)
{
	for (int s = 1; s < NSIG; s++) {
		struct {
			unsigned long handler, flags, restorer, mask;
		} old, dfl = { 0, 0, 0, 0 };
		if (s == SIGKILL || s == SIGSTOP || syscall(SYS_rt_sigaction, s, NULL, &old, 8) != 0)
			continue;
		if (old.handler == (unsigned long)(uintptr_t)SIG_IGN)
			syscall(SYS_rt_sigaction, s, &dfl, NULL, 8);
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	alarm(600);
}
/* ---- end of common helpers ---- */
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
