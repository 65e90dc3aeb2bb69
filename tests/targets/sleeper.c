/*
 * sleeper MODE [ARG]: a target blocked in one particular system call.
 *
 * Modes (the main thread makes the blocking call; every result is printed,
 * EINTR included, and never retried silently):
 *
 *   nanosleep MS  ready pid=P request_ms=MS   (printed just before the call)
 *                 main calls nanosleep() once (glibc: clock_nanosleep syscall),
 *                 then prints "slept ms=<elapsed, CLOCK_MONOTONIC, integer ms>
 *                 rc=R errno=E rem_ms=<remaining ms>" and serves stdin itself.
 *   read          main blocks in read(fd, buf, 1) on a pipe it created.  Each
 *                 "write" on stdin makes the helper thread write one byte;
 *                 main prints "read rc=N errno=E" after every read and reads
 *                 again.
 *   wait4         forks a child blocked in pause(); main blocks in
 *                 wait4(child, &st, 0, NULL).  "release" on stdin: the helper
 *                 kills the child with SIGTERM.  main prints
 *                 "wait4 rc=N errno=E status=S" (raw status, decimal) and, on
 *                 EINTR, waits again; once the child is reaped main pause()s.
 *   waitid        the same with waitid(P_PID, child, &info, WEXITED); prints
 *                 "waitid rc=N errno=E pid=SI_PID code=SI_CODE status=SI_STATUS".
 *   waitid_pidfd  the same with waitid(P_PIDFD, pidfd_open(child), ...); the
 *                 ready line adds "pidfd=FD".
 *
 * In read/wait4/waitid modes a helper thread serves stdin and prints
 *   ready pid=P helper=TID [fd=PIPE_READ_FD] [child=C] blocked=1
 * only once it has seen (via /proc/self/task/P/syscall) the main thread
 * sleeping inside the expected syscall, and the child (if any) asleep in
 * pause() (blocked=0 if that took over 5 s).
 *
 * Signals: SIGUSR1 has a handler WITHOUT SA_RESTART (so it makes the blocking
 * call fail with EINTR), SIGUSR2 one WITH SA_RESTART.  Both are blocked in the
 * helper thread, so they always hit the main thread.
 * Commands in every mode: "sigs" -> "sigs usr1=N usr2=M".  EOF -> exit 0.
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
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#ifndef P_PIDFD
#define P_PIDFD 3 /* linux/wait.h; older glibc lacks it */
#endif
enum mode { M_NANOSLEEP, M_READ, M_WAIT4, M_WAITID, M_WAITID_PIDFD };

static enum mode mode;
static pid_t main_tid;
static pid_t child;
static int pipefd[2] = { -1, -1 };
static int pidfd = -1;
static volatile uint64_t usr1_count, usr2_count;

static void on_usr1(int sig)
{
	(void)sig;
	__atomic_fetch_add(&usr1_count, 1, __ATOMIC_RELAXED);
}

static void on_usr2(int sig)
{
	(void)sig;
	__atomic_fetch_add(&usr2_count, 1, __ATOMIC_RELAXED);
}

static void install(int sig, void (*fn)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = fn;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) != 0)
		die("sigaction");
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Is the task whose stat file is `path` sleeping (state S)? */
static int sleeping(const char *path)
{
	char buf[512];
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'S';
}

/* Is thread `tid` of this process sleeping (state S) inside syscall `nr`? */
static int blocked_in(pid_t tid, long nr)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
	if (!sleeping(path))
		return 0;
	snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	long got = -2;
	if (fscanf(f, "%ld", &got) != 1)
		got = -2;
	fclose(f);
	return got == nr;
}

static void serve_command(const char *line)
{
	if (strcmp(line, "sigs") == 0) {
		say("sigs usr1=%llu usr2=%llu\n", (unsigned long long)usr1_count,
		    (unsigned long long)usr2_count);
	} else if (mode == M_READ && strcmp(line, "write") == 0) {
		if (write(pipefd[1], "x", 1) != 1)
			die("write pipe");
	} else if (mode != M_NANOSLEEP && mode != M_READ && strcmp(line, "release") == 0) {
		if (kill(child, SIGTERM) != 0)
			say("error kill child: %s\n", strerror(errno));
	} else {
		say("error unknown command '%s'\n", line);
	}
}

static void *helper(void *arg)
{
	(void)arg;
	long nr = mode == M_READ ? SYS_read : mode == M_WAIT4 ? SYS_wait4 : SYS_waitid;
	int blocked = 0;
	for (int64_t deadline = now_ns() + 5000000000LL; now_ns() < deadline;) {
		char child_stat[64];
		snprintf(child_stat, sizeof child_stat, "/proc/%d/stat", child);
		if ((blocked = blocked_in(main_tid, nr) && (child == 0 || sleeping(child_stat))))
			break;
		usleep(1000);
	}
	char extra[64] = "";
	if (mode == M_READ)
		snprintf(extra, sizeof extra, " fd=%d", pipefd[0]);
	else
		snprintf(extra, sizeof extra, " child=%d", child);
	if (mode == M_WAITID_PIDFD)
		snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " pidfd=%d", pidfd);
	say("ready pid=%d helper=%d%s blocked=%d\n", getpid(), gettid(), extra, blocked);
	char line[256];
	for (;;) {
		get_line(line, sizeof line);
		serve_command(line);
	}
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: sleeper nanosleep MS | read | wait4 | waitid | waitid_pidfd\n");
	_exit(2);
}

int main(int argc, char **argv)
{
	common_setup();
	main_tid = gettid();
	if (argc < 2)
		usage();
	long ms = 0;
	if (strcmp(argv[1], "nanosleep") == 0) {
		mode = M_NANOSLEEP;
		char *end;
		if (argc != 3)
			usage();
		ms = strtol(argv[2], &end, 10);
		if (*end || ms < 0 || ms > 590000)
			usage();
	} else if (argc != 2) {
		usage();
	} else if (strcmp(argv[1], "read") == 0) {
		mode = M_READ;
	} else if (strcmp(argv[1], "wait4") == 0) {
		mode = M_WAIT4;
	} else if (strcmp(argv[1], "waitid") == 0) {
		mode = M_WAITID;
	} else if (strcmp(argv[1], "waitid_pidfd") == 0) {
		mode = M_WAITID_PIDFD;
	} else {
		usage();
	}

	install(SIGUSR1, on_usr1, 0);
	install(SIGUSR2, on_usr2, SA_RESTART);

	if (mode == M_NANOSLEEP) {
		struct timespec req = { ms / 1000, (ms % 1000) * 1000000L }, rem = { 0, 0 };
		say("ready pid=%d request_ms=%ld\n", getpid(), ms);
		int64_t t0 = now_ns();
		int rc = nanosleep(&req, &rem);
		int e = rc < 0 ? errno : 0;
		int64_t t1 = now_ns();
		say("slept ms=%lld rc=%d errno=%d rem_ms=%lld\n", (long long)((t1 - t0) / 1000000),
		    rc, e, (long long)rem.tv_sec * 1000 + rem.tv_nsec / 1000000);
		char line[256];
		for (;;) {
			get_line(line, sizeof line);
			serve_command(line);
		}
	}

	if (mode == M_READ) {
		if (pipe(pipefd) != 0)
			die("pipe");
	} else {
		pid_t parent = getpid();
		child = fork();
		if (child < 0)
			die("fork");
		if (child == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(1);
			alarm(600);
			for (;;)
				pause();
		}
		if (mode == M_WAITID_PIDFD) {
			pidfd = (int)syscall(SYS_pidfd_open, child, 0);
			if (pidfd < 0)
				die("pidfd_open");
		}
	}

	/* The helper inherits SIGUSR1/SIGUSR2 blocked; main unblocks them again. */
	sigset_t usr;
	sigemptyset(&usr);
	sigaddset(&usr, SIGUSR1);
	sigaddset(&usr, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &usr, NULL);
	pthread_t th;
	int err = pthread_create(&th, NULL, helper, NULL);
	if (err != 0) {
		errno = err;
		die("pthread_create");
	}
	pthread_sigmask(SIG_UNBLOCK, &usr, NULL);

	if (mode == M_READ) {
		for (;;) {
			char c;
			ssize_t rc = read(pipefd[0], &c, 1);
			int e = rc < 0 ? errno : 0;
			say("read rc=%zd errno=%d\n", rc, e);
		}
	} else if (mode == M_WAIT4) {
		for (;;) {
			int st = 0;
			pid_t rc = wait4(child, &st, 0, NULL);
			int e = rc < 0 ? errno : 0;
			say("wait4 rc=%d errno=%d status=%d\n", rc, e, st);
			if (!(rc < 0 && e == EINTR))
				break;
		}
	} else {
		for (;;) {
			siginfo_t info;
			memset(&info, 0, sizeof info);
			int rc = mode == M_WAITID_PIDFD ? waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED)
							: waitid(P_PID, (id_t)child, &info, WEXITED);
			int e = rc < 0 ? errno : 0;
			say("waitid rc=%d errno=%d pid=%d code=%d status=%d\n", rc, e, info.si_pid,
			    info.si_code, info.si_status);
			if (!(rc < 0 && e == EINTR))
				break;
		}
	}
	for (;;)
		pause();
}
