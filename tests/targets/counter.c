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

#include "common.h"

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
