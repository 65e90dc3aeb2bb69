/*
 * counter: a CPU-bound target.
 *
 * The main thread spins incrementing a volatile 64-bit counter.  It keeps its
 * own copy of the value in a register and checks on every iteration that
 * memory still holds what it last wrote, so anything that clobbers its
 * registers or its memory (a bad ptrace register restore, say) is noticed.
 *
 * A second thread ("reader") serves stdin:
 *   "check" -> "count N ok"   (N = counter now; "bad" instead of "ok" if N went
 *                              backwards since the last check or the main
 *                              thread saw its counter change under it)
 *   "sigs"  -> "sigs N"       (number of SIGUSR1 handler runs)
 *   EOF     -> exit 0
 * SIGUSR1 is blocked in the reader thread, so it is always delivered to the
 * spinning main thread.  Handler: SA_RESTART, empty mask.
 *
 * ready pid=P reader=TID handler=0x.. counter_addr=0x..
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
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

static volatile uint64_t counter;
static volatile int corrupted;
static volatile uint64_t sigusr1_count;
static volatile pid_t reader_tid;

static void on_usr1(int sig)
{
	(void)sig;
	__atomic_fetch_add(&sigusr1_count, 1, __ATOMIC_RELAXED);
}

static void *reader(void *arg)
{
	(void)arg;
	uint64_t last = 0;
	char line[256];
	reader_tid = gettid();
	for (;;) {
		get_line(line, sizeof line);
		if (strcmp(line, "check") == 0) {
			uint64_t now = counter;
			int ok = now >= last && !corrupted;
			last = now;
			say("count %llu %s\n", (unsigned long long)now, ok ? "ok" : "bad");
		} else if (strcmp(line, "sigs") == 0) {
			say("sigs %llu\n", (unsigned long long)sigusr1_count);
		} else {
			say("error unknown command '%s'\n", line);
		}
	}
	return NULL;
}

int main(void)
{
	common_setup();

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		die("sigaction");

	/* The reader thread inherits SIGUSR1 blocked; main unblocks it again. */
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	pthread_t th;
	int e = pthread_create(&th, NULL, reader, NULL);
	if (e != 0) {
		errno = e;
		die("pthread_create");
	}
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	while (reader_tid == 0)
		usleep(1000);

	say("ready pid=%d reader=%d handler=0x%lx counter_addr=0x%lx\n", getpid(), reader_tid,
	    (unsigned long)(uintptr_t)on_usr1, (unsigned long)(uintptr_t)&counter);

	uint64_t local = 0;
	for (;;) {
		if (counter != local)
			corrupted = 1;
		local++;
		counter = local;
	}
}
