/*
 * common.h: what every helper-style test target shares -- one-write lines on
 * stdout, line reads from stdin (exit 0 on EOF), and a setup that undoes what
 * exec lets a target inherit.  Functions are static inline so a target that
 * does not use one still compiles with -Wall -Werror.
 */
#ifndef SIGFS_TARGETS_COMMON_H
#define SIGFS_TARGETS_COMMON_H

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
#include <unistd.h>

static inline void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	_exit(2);
}

static inline void write_all(int fd, const char *p, size_t n)
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
static inline void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void say(const char *fmt, ...)
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
static inline void get_line(char *buf, size_t size)
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
static inline void common_setup(void)
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

#endif
