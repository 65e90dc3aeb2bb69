/*
 * odd_files ACTION...: a target whose paths, descriptors and mappings are
 * odd but legal, set up by the actions given, in order; then it prints
 *   ready pid=P
 * and serves stdin ("ping" -> "pong"; EOF -> exit 0).
 *
 * Paths may hold any byte but NUL (pass them as bytes in argv).  Actions:
 *
 *   open:PATH      create PATH (one page of 'o') and keep it open (O_RDWR)
 *   map:PATH       create PATH (one page of 'm'), map it MAP_PRIVATE read-only,
 *                  touch it, close the descriptor
 *   mapw:PATH      the same, mapped read-write and written (a copied page)
 *   maps:PATH      the same, MAP_SHARED read-write and written
 *   unlink:PATH    unlink(PATH)
 *   mkdir:PATH     mkdir(PATH, 0755)
 *   rmdir:PATH     rmdir(PATH)
 *   chdir:PATH     chdir(PATH)
 *   exec:PATH      copy /proc/self/exe to PATH and exec it with the actions
 *                  that follow (same pid)
 *   memfd:NAME     memfd_create(NAME), one page, mapped shared and written
 *   opath:PATH     open(PATH, O_PATH) kept open
 *   hold:PATH      open(PATH, O_RDONLY) kept open (an existing file)
 *   toggle:PATH    a thread for ever turning fds 100..139 into a socket, then
 *                  into PATH, and back
 *   procmem        open("/proc/self/mem", O_RDWR) kept open
 *   sock:KIND      a socket kept open; KIND is unix, unixpair, inet, inet6,
 *                  tcplisten, udp6, netlink (bound), packet, vsock or alg (a family the
 *                  kernel lacks is reported as "nosock KIND errno=E" and skipped)
 *   pidfd          pidfd_open(getpid()) kept open
 *   uffd           userfaultfd(O_CLOEXEC) kept open
 *   iouring        io_uring_setup(4) kept open (its rings not mapped)
 *   misc           an epoll, an eventfd, a signalfd, a timerfd, an inotify
 *   highfd:N       raise RLIMIT_NOFILE past N (the soft limit to the hard one,
 *                  the hard one too if need be) and dup /dev/null to fd N
 *   protnone:N     N pages of PROT_NONE anonymous memory
 *   tiny:N         N one-page anonymous mappings, alternately r and rw (so
 *                  they do not merge), each rw one written
 *   stackguard     mprotect a page in the middle of the stack PROT_NONE
 *   madvguard      a 4-page rw mapping, written, with MADV_GUARD_INSTALL on
 *                  its second page (reported "noguard errno=E" if refused)
 *   comm:NAME      prctl(PR_SET_NAME, NAME)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/netlink.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <netinet/in.h>

#include "common.h"

#define PAGE 4096

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif

static void make_page_file(const char *path, char fill)
{
	char buf[PAGE];
	memset(buf, fill, sizeof buf);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("create");
	write_all(fd, buf, sizeof buf);
	close(fd);
}

static void map_file(const char *path, char fill, int prot, int flags)
{
	make_page_file(path, fill);
	int fd = open(path, (prot & PROT_WRITE) ? O_RDWR : O_RDONLY);
	if (fd < 0)
		die("open for map");
	volatile char *p = mmap(NULL, PAGE, prot, flags, fd, 0);
	if (p == MAP_FAILED)
		die("mmap file");
	close(fd);
	(void)p[0];
	if (prot & PROT_WRITE)
		p[1] = 'w';
}

static void copy_self(const char *dest)
{
	int in = open("/proc/self/exe", O_RDONLY);
	int out = open(dest, O_WRONLY | O_CREAT | O_TRUNC, 0755);
	if (in < 0 || out < 0)
		die("copy self");
	char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof buf)) > 0)
		write_all(out, buf, (size_t)n);
	close(in);
	close(out);
}

static void make_socket(const char *kind)
{
	int fd = -1;
	if (!strcmp(kind, "unix")) {
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
	} else if (!strcmp(kind, "unixpair")) {
		int sv[2];
		fd = socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
	} else if (!strcmp(kind, "inet")) {
		fd = socket(AF_INET, SOCK_DGRAM, 0);
	} else if (!strcmp(kind, "inet6")) {
		fd = socket(AF_INET6, SOCK_STREAM, 0);
	} else if (!strcmp(kind, "tcplisten")) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		if (fd >= 0 && (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 1)))
			die("tcplisten");
	} else if (!strcmp(kind, "udp6")) {
		fd = socket(AF_INET6, SOCK_DGRAM, 0);
	} else if (!strcmp(kind, "netlink")) {
		fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
		struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
		if (fd >= 0 && bind(fd, (struct sockaddr *)&nl, sizeof nl))
			die("bind netlink");
	} else if (!strcmp(kind, "packet")) {
		fd = socket(AF_PACKET, SOCK_DGRAM, 0);
	} else if (!strcmp(kind, "vsock")) {
		fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	} else if (!strcmp(kind, "alg")) {
		fd = socket(AF_ALG, SOCK_SEQPACKET, 0);
	} else {
		errno = EINVAL;
		die(kind);
	}
	if (fd < 0)
		say("nosock %s errno=%d\n", kind, errno);
}

static void misc_fds(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	if (epoll_create1(0) < 0 || eventfd(3, 0) < 0 || signalfd(-1, &set, 0) < 0 ||
	    timerfd_create(CLOCK_MONOTONIC, 0) < 0 || inotify_init1(0) < 0)
		die("misc fds");
}

static void high_fd(long n)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		die("getrlimit");
	if (rl.rlim_max < (rlim_t)n + 1)
		rl.rlim_max = (rlim_t)n + 1;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		die("setrlimit");
	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0 || dup2(fd, (int)n) < 0)
		die("dup2 high");
	close(fd);
}

static void stack_guard(void)
{
	/* Grow the stack by 256 KiB below us and cut a hole in the middle. */
	volatile char big[256 * 1024];
	for (size_t i = 0; i < sizeof big; i += PAGE)
		big[i] = 1;
	uintptr_t mid = ((uintptr_t)&big[sizeof big / 2]) & ~(uintptr_t)(PAGE - 1);
	if (mprotect((void *)mid, PAGE, PROT_NONE))
		die("mprotect stack");
}

/* toggle:PATH: a thread that for ever turns descriptors 100..139 into a
 * socket, then into PATH (opened read-only), and back: a reader of the
 * process's descriptors finds a socket at a number that is PATH a moment
 * later. */
static int toggle_sock = -1, toggle_file = -1;

static void *toggle_loop(void *unused)
{
	(void)unused;
	for (;;) {
		for (int fd = 100; fd < 140; fd++)
			dup2(toggle_sock, fd);
		for (int fd = 100; fd < 140; fd++)
			dup2(toggle_file, fd);
	}
	return NULL;
}

static void toggle_start(const char *path)
{
	pthread_t th;
	toggle_sock = socket(AF_INET, SOCK_STREAM, 0);
	toggle_file = open(path, O_RDONLY);
	if (toggle_sock < 0 || toggle_file < 0)
		die("toggle");
	if (pthread_create(&th, NULL, toggle_loop, NULL))
		die("toggle thread");
}

static void do_action(const char *a)
{
	const char *colon = strchr(a, ':');
	const char *arg = colon ? colon + 1 : "";
	size_t klen = colon ? (size_t)(colon - a) : strlen(a);
#define IS(k) (klen == strlen(k) && !strncmp(a, k, klen))
	if (IS("open")) {
		make_page_file(arg, 'o');
		if (open(arg, O_RDWR) < 0)
			die("open");
	} else if (IS("map")) {
		map_file(arg, 'm', PROT_READ, MAP_PRIVATE);
	} else if (IS("mapw")) {
		map_file(arg, 'm', PROT_READ | PROT_WRITE, MAP_PRIVATE);
	} else if (IS("maps")) {
		map_file(arg, 'm', PROT_READ | PROT_WRITE, MAP_SHARED);
	} else if (IS("unlink")) {
		if (unlink(arg))
			die("unlink");
	} else if (IS("mkdir")) {
		if (mkdir(arg, 0755))
			die("mkdir");
	} else if (IS("rmdir")) {
		if (rmdir(arg))
			die("rmdir");
	} else if (IS("chdir")) {
		if (chdir(arg))
			die("chdir");
	} else if (IS("memfd")) {
		int fd = memfd_create(arg, 0);
		if (fd < 0 || ftruncate(fd, PAGE))
			die("memfd");
		char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			die("mmap memfd");
		p[0] = 'f';
	} else if (IS("hold")) {
		if (open(arg, O_RDONLY) < 0)
			die("hold");
	} else if (IS("toggle")) {
		toggle_start(arg);
	} else if (IS("opath")) {
		if (open(arg, O_PATH) < 0)
			die("opath");
	} else if (IS("procmem")) {
		if (open("/proc/self/mem", O_RDWR) < 0)
			die("procmem");
	} else if (IS("sock")) {
		make_socket(arg);
	} else if (IS("pidfd")) {
		if (syscall(SYS_pidfd_open, getpid(), 0) < 0)
			die("pidfd");
	} else if (IS("uffd")) {
		if (syscall(SYS_userfaultfd, O_CLOEXEC) < 0)
			say("nouffd errno=%d\n", errno);
	} else if (IS("iouring")) {
		char params[120];
		memset(params, 0, sizeof params);
		if (syscall(SYS_io_uring_setup, 4, params) < 0)
			say("noiouring errno=%d\n", errno);
	} else if (IS("misc")) {
		misc_fds();
	} else if (IS("highfd")) {
		high_fd(atol(arg));
	} else if (IS("protnone")) {
		if (mmap(NULL, (size_t)atol(arg) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) ==
		    MAP_FAILED)
			die("protnone");
	} else if (IS("tiny")) {
		long n = atol(arg);
		for (long i = 0; i < n; i++) {
			int prot = (i & 1) ? PROT_READ : PROT_READ | PROT_WRITE;
			char *p = mmap(NULL, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED)
				die("tiny");
			if (prot & PROT_WRITE)
				p[0] = (char)i;
		}
	} else if (IS("stackguard")) {
		stack_guard();
	} else if (IS("madvguard")) {
		char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			die("madvguard mmap");
		memset(p, 'g', 4 * PAGE);
		if (madvise(p + PAGE, PAGE, MADV_GUARD_INSTALL))
			say("noguard errno=%d\n", errno);
	} else if (IS("comm")) {
		if (prctl(PR_SET_NAME, arg))
			die("comm");
	} else {
		errno = EINVAL;
		die(a);
	}
#undef IS
}

int main(int argc, char **argv)
{
	common_setup();
	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "exec:", 5)) {
			const char *dest = argv[i] + 5;
			copy_self(dest);
			char **rest = &argv[i];
			rest[0] = (char *)dest;
			execv(dest, rest);
			die("execv");
		}
		do_action(argv[i]);
	}
	say("ready pid=%d\n", (int)getpid());
	char line[256];
	for (;;) {
		get_line(line, sizeof line);
		if (!strcmp(line, "ping"))
			say("pong\n");
	}
}
