/*
 * odd_procs MODE: a target in an odd but legal process or thread situation.
 * Every mode prints one line
 *   ready pid=P [child=C] [tid=T]
 * once the situation holds, and exits 0 when stdin reaches EOF (the
 * fixture kills the whole process group anyway).
 *
 *   zombie_leader  umask 077, fds 9 and 10 dups of one /dev/null open; the
 *                  main thread exits (SYS_exit); a second thread, tid=T,
 *                  serves stdin.  The leader shows as a zombie, the process
 *                  lives on.
 *   threadname     a second thread, tid=T, names itself "\xff\t\\x (deleted)"
 *                  (bytes that are not UTF-8, a tab, a backslash)
 *   orphan         child=C is a grandchild whose parent has exited: it was
 *                  reparented (to init or a subreaper)
 *   zombie         child=C has exited and is not reaped: a zombie process
 *   vfork          the main thread is blocked in vfork() (state D); child=C
 *                  is the vfork child, which prints the line and sleeps
 *                  reading stdin
 *   pidns          child=C is pid 1 of a new pid namespace (unshare
 *                  CLONE_NEWPID, then fork); it sleeps in pause()
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common.h"

static pid_t main_pid;

static void serve_stdin(void)
{
	char line[256];
	for (;;)
		get_line(line, sizeof line); /* exits 0 on EOF */
}

static void wait_state(pid_t pid, char want);

static void *leader_gone_thread(void *arg)
{
	(void)arg;
	wait_state(main_pid, 'Z'); /* until the leader is a zombie */
	say("ready pid=%d tid=%d\n", (int)main_pid, (int)gettid());
	serve_stdin();
	return NULL;
}

static void *named_thread(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "\xff\t\\x (deleted)");
	say("ready pid=%d tid=%d\n", (int)main_pid, (int)gettid());
	for (;;)
		pause();
	return NULL;
}

static void wait_state(pid_t pid, char want)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	for (int i = 0; i < 5000; i++) {
		int fd = open(path, O_RDONLY);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (n > 0) {
			buf[n] = '\0';
			char *rp = strrchr(buf, ')');
			if (rp && rp[2] == want)
				return;
		}
		usleep(1000);
	}
}

int main(int argc, char **argv)
{
	common_setup();
	main_pid = getpid();
	const char *mode = argc > 1 ? argv[1] : "";
	pthread_t th;

	if (!strcmp(mode, "zombie_leader")) {
		/* State the process keeps when its leader goes: a umask, and
		 * fds 9 and 10 dups of one open file. */
		umask(077);
		int fd = open("/dev/null", O_RDONLY);
		if (fd < 0 || dup2(fd, 9) < 0 || dup2(fd, 10) < 0)
			die("zombie_leader fds");
		if (pthread_create(&th, NULL, leader_gone_thread, NULL))
			die("pthread_create");
		syscall(SYS_exit, 0);
	} else if (!strcmp(mode, "threadname")) {
		if (pthread_create(&th, NULL, named_thread, NULL))
			die("pthread_create");
		serve_stdin();
	} else if (!strcmp(mode, "orphan")) {
		int pfd[2];
		if (pipe(pfd))
			die("pipe");
		pid_t mid = fork();
		if (mid < 0)
			die("fork");
		if (mid == 0) {
			pid_t leaf = fork();
			if (leaf < 0)
				die("fork");
			if (leaf == 0) {
				close(pfd[0]);
				close(pfd[1]);
				for (;;)
					pause();
			}
			write_all(pfd[1], (char *)&leaf, sizeof leaf);
			_exit(0);
		}
		pid_t leaf = 0;
		if (read(pfd[0], &leaf, sizeof leaf) != sizeof leaf)
			die("read leaf");
		waitpid(mid, NULL, 0);
		say("ready pid=%d child=%d\n", (int)main_pid, (int)leaf);
		serve_stdin();
	} else if (!strcmp(mode, "zombie")) {
		pid_t c = fork();
		if (c < 0)
			die("fork");
		if (c == 0)
			_exit(7);
		wait_state(c, 'Z');
		say("ready pid=%d child=%d\n", (int)main_pid, (int)c);
		serve_stdin();
	} else if (!strcmp(mode, "vfork")) {
		pid_t c = vfork();
		if (c < 0)
			die("vfork");
		if (c == 0) {
			wait_state(main_pid, 'D');
			say("ready pid=%d child=%d\n", (int)main_pid, (int)getpid());
			for (;;)
				pause();
		}
		serve_stdin();
	} else if (!strcmp(mode, "pidns")) {
		if (unshare(CLONE_NEWPID))
			die("unshare");
		pid_t c = fork();
		if (c < 0)
			die("fork");
		if (c == 0) {
			for (;;)
				pause();
		}
		say("ready pid=%d child=%d\n", (int)main_pid, (int)c);
		serve_stdin();
	} else {
		errno = EINVAL;
		die(mode);
	}
	return 0;
}
