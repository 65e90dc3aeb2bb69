/*
 * selfread PATH: reads a file when told to (single-threaded).
 *
 * ready pid=P
 *
 * Then the main thread blocks reading stdin.  Commands:
 *   "go"       -> open(PATH, O_RDONLY) and one read() of up to 4096 bytes, then
 *                 "read rc=N errno=E stage=read"  (rc = read's result), or
 *                 "read rc=-1 errno=E stage=open" if open() failed.
 *                 Repeatable; the file is closed again each time.
 *   "go OTHER" -> the same with path OTHER instead of PATH.
 *   EOF        -> exit 0
 * Meant for checking that a process reading its own ptrace-backed sigfs file
 * gets an error instead of hanging.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
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
int main(int argc, char **argv)
{
	common_setup();
	if (argc != 2) {
		fprintf(stderr, "usage: selfread PATH\n");
		_exit(2);
	}
	say("ready pid=%d\n", getpid());

	char line[4096];
	static char buf[4096];
	for (;;) {
		get_line(line, sizeof line);
		const char *path;
		if (strcmp(line, "go") == 0)
			path = argv[1];
		else if (strncmp(line, "go ", 3) == 0)
			path = line + 3;
		else {
			say("error unknown command '%s'\n", line);
			continue;
		}
		int fd = open(path, O_RDONLY);
		if (fd < 0) {
			say("read rc=-1 errno=%d stage=open\n", errno);
			continue;
		}
		ssize_t rc = read(fd, buf, sizeof buf);
		int e = rc < 0 ? errno : 0;
		close(fd);
		say("read rc=%zd errno=%d stage=read\n", rc, e);
	}
}
