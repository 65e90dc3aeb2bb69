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

#include "common.h"
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
