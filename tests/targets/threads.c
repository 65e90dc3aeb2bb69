/*
 * threads N: a multi-threaded target (default N=3, 0 <= N <= 30).
 *
 * Starts N extra threads.  Thread i (1-based) blocks SIGRTMIN+i (only that),
 * installs its own malloc'd sigaltstack of 65536+4096*i bytes, and then sleeps:
 * odd i in pause(), even i in read() on a pipe of its own that nobody writes.
 * The main thread then tgkill()s every thread i with SIGRTMIN+i, so each
 * thread has exactly its own signal pending in its private queue (SigPnd)
 * and nothing is pending process-wide.  The main thread blocks nothing and has
 * no altstack.  "ready" is printed once every thread is seen sleeping (state
 * S) with its signal in its SigPnd.
 *
 * ready pid=P tids=T1,T2,.. sigs=S1,S2,.. stacks=0xSP1:SIZE1,..
 *       waits=pause,read,..
 * (the lists are in thread order i=1..N; empty values when N=0)
 *
 * Then the main thread blocks reading stdin.  EOF -> exit 0.
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
#define MAX_THREADS 30

struct worker {
	int idx;
	int sig;
	volatile pid_t tid;
	void *stack;
	size_t stack_size;
	int pipefd[2];
};

static struct worker workers[MAX_THREADS + 1];

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, w->sig);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	stack_t ss;
	memset(&ss, 0, sizeof ss);
	ss.ss_sp = w->stack;
	ss.ss_size = w->stack_size;
	if (sigaltstack(&ss, NULL) != 0)
		die("sigaltstack");
	w->tid = gettid();
	if (w->idx % 2) {
		for (;;)
			pause();
	}
	for (;;) {
		char c;
		if (read(w->pipefd[0], &c, 1) < 0 && errno != EINTR)
			die("read pipe");
	}
	return NULL;
}

static uint64_t task_status_mask(pid_t tid, const char *key, char *state)
{
	char path[64], line[512];
	snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
	FILE *f = fopen(path, "r");
	if (!f)
		die("open task status");
	size_t klen = strlen(key);
	uint64_t v = 0;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, key, klen) == 0 && line[klen] == ':')
			v = strtoull(line + klen + 1, NULL, 16);
		else if (strncmp(line, "State:", 6) == 0)
			*state = line[7];
	}
	fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	common_setup();
	int n = 3;
	if (argc > 2) {
		fprintf(stderr, "usage: threads [N]\n");
		_exit(2);
	}
	if (argc == 2) {
		char *end;
		n = (int)strtol(argv[1], &end, 10);
		if (*end || n < 0 || n > MAX_THREADS || SIGRTMIN + n > SIGRTMAX) {
			fprintf(stderr, "bad thread count %s\n", argv[1]);
			_exit(2);
		}
	}

	for (int i = 1; i <= n; i++) {
		struct worker *w = &workers[i];
		w->idx = i;
		w->sig = SIGRTMIN + i;
		w->stack_size = 65536 + 4096 * (size_t)i;
		w->stack = malloc(w->stack_size);
		if (!w->stack)
			die("malloc");
		if (pipe(w->pipefd) != 0)
			die("pipe");
		pthread_t th;
		int e = pthread_create(&th, NULL, worker_main, w);
		if (e != 0) {
			errno = e;
			die("pthread_create");
		}
	}
	for (int i = 1; i <= n; i++) {
		for (int k = 0; workers[i].tid == 0; k++) {
			if (k > 10000) {
				fprintf(stderr, "thread %d did not start\n", i);
				_exit(2);
			}
			usleep(1000);
		}
	}
	for (int i = 1; i <= n; i++)
		if (syscall(SYS_tgkill, getpid(), workers[i].tid, workers[i].sig) != 0)
			die("tgkill");
	for (int i = 1; i <= n; i++) {
		for (int k = 0;; k++) {
			char state = '?';
			uint64_t pnd = task_status_mask(workers[i].tid, "SigPnd", &state);
			if (state == 'S' && pnd == 1ULL << (workers[i].sig - 1))
				break;
			if (k > 10000) {
				fprintf(stderr, "thread %d: state %c SigPnd %llx\n", i, state,
					(unsigned long long)pnd);
				_exit(2);
			}
			usleep(1000);
		}
	}

	static char tids[MAX_THREADS * 12 + 1], sigs[MAX_THREADS * 4 + 1],
		stacks[MAX_THREADS * 40 + 1], waits[MAX_THREADS * 7 + 1];
	size_t a = 0, b = 0, c = 0, d = 0;
	for (int i = 1; i <= n; i++) {
		const char *sep = i > 1 ? "," : "";
		struct worker *w = &workers[i];
		a += (size_t)snprintf(tids + a, sizeof tids - a, "%s%d", sep, w->tid);
		b += (size_t)snprintf(sigs + b, sizeof sigs - b, "%s%d", sep, w->sig);
		c += (size_t)snprintf(stacks + c, sizeof stacks - c, "%s0x%lx:%zu", sep,
				      (unsigned long)(uintptr_t)w->stack, w->stack_size);
		d += (size_t)snprintf(waits + d, sizeof waits - d, "%s%s", sep,
				      i % 2 ? "pause" : "read");
	}
	say("ready pid=%d tids=%s sigs=%s stacks=%s waits=%s\n", getpid(), tids, sigs, stacks,
	    waits);

	char line[256];
	for (;;) {
		get_line(line, sizeof line);
		say("error unknown command '%s'\n", line);
	}
}
