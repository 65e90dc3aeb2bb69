/* fds: one descriptor of each kind, then sleep reading stdin.
 * ready pid=P dir=TMPDIR file=FD deleted=FD dupof=FD:FD pipe=R,W eventfd=FD
 * signalfd=FD timerfd=FD epoll=FD inotify=FD memfd=FD unix=A,B inet=FD null=FD
 * Argument: a scratch directory to create files in.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

static int check(int fd, const char *what)
{
    if (fd < 0) {
        perror(what);
        exit(1);
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fds DIR\n");
        return 2;
    }
    alarm(600);
    char path[4096];
    snprintf(path, sizeof path, "%s/data.txt", argv[1]);
    int file = check(open(path, O_RDWR | O_CREAT | O_APPEND, 0644), "open");
    if (write(file, "hello sigfs\n", 12) != 12)
        return 1;
    lseek(file, 6, SEEK_SET);
    int dupfd = check(dup(file), "dup");
    snprintf(path, sizeof path, "%s/gone.txt", argv[1]);
    int deleted = check(open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0600), "open deleted");
    unlink(path);
    int dir = check(open(argv[1], O_RDONLY | O_DIRECTORY), "open dir");
    int pipefd[2];
    check(pipe2(pipefd, O_NONBLOCK), "pipe");
    int efd = check(eventfd(5, EFD_CLOEXEC), "eventfd");
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGRTMIN + 1);
    int sfd = check(signalfd(-1, &mask, 0), "signalfd");
    int tfd = check(timerfd_create(CLOCK_MONOTONIC, 0), "timerfd");
    struct itimerspec its = {{5, 0}, {100, 0}};
    timerfd_settime(tfd, 0, &its, NULL);
    int ep = check(epoll_create1(0), "epoll");
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1234};
    epoll_ctl(ep, EPOLL_CTL_ADD, pipefd[0], &ev);
    int in = check(inotify_init1(0), "inotify");
    inotify_add_watch(in, argv[1], IN_CREATE | IN_DELETE);
    int mfd = check(memfd_create("sigfs-memfd", 0), "memfd");
    if (ftruncate(mfd, 8192) != 0)
        return 1;
    int sv[2];
    check(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), "socketpair");
    int inet = check(socket(AF_INET, SOCK_STREAM, 0), "socket");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(inet, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(inet, 1) != 0)
        return 1;
    int null = check(open("/dev/null", O_WRONLY), "null");
    printf("ready pid=%d file=%d dupof=%d:%d deleted=%d dir=%d pipe=%d,%d eventfd=%d signalfd=%d "
           "timerfd=%d epoll=%d inotify=%d memfd=%d unix=%d,%d inet=%d null=%d\n",
           getpid(), file, dupfd, file, deleted, dir, pipefd[0], pipefd[1], efd, sfd, tfd, ep,
           in, mfd, sv[0], sv[1], inet, null);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0)
        ;
    return 0;
}
