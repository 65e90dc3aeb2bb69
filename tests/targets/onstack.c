/*
 * onstack: a thread that can be made to sit inside a signal handler running
 * on its alternate stack.
 *
 * Sets a 64 KiB sigaltstack and a SIGUSR1 handler with SA_ONSTACK, then
 * prints "ready pid=P altstack=0x.. altsize=65536" and serves stdin:
 *   "raise" -> raise(SIGUSR1): the handler prints "in handler onstack=1"
 *              (what its own sigaltstack(NULL, &old) says of SS_ONSTACK) and
 *              serves stdin itself, so the thread stays on the alternate stack
 *              while it sleeps in read(); "return" there ends the handler,
 *              and main prints "returned onstack=0".
 *   "where" -> "altstack sp=0x.. size=N flags=N" from sigaltstack(NULL, &old)
 *   EOF     -> exit 0
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define ALTSTACK_SIZE 65536

static void where(void)
{
	stack_t ss;
	if (sigaltstack(NULL, &ss) != 0)
		die("sigaltstack get");
	say("altstack sp=0x%lx size=%zu flags=%d\n", (unsigned long)(uintptr_t)ss.ss_sp, ss.ss_size,
	    ss.ss_flags);
}

static int onstack(void)
{
	stack_t ss;
	if (sigaltstack(NULL, &ss) != 0)
		die("sigaltstack get");
	return (ss.ss_flags & SS_ONSTACK) ? 1 : 0;
}

static void serve(int in_handler)
{
	char line[256];
	for (;;) {
		get_line(line, sizeof line);
		if (strcmp(line, "where") == 0)
			where();
		else if (in_handler && strcmp(line, "return") == 0)
			return;
		else if (!in_handler && strcmp(line, "raise") == 0) {
			raise(SIGUSR1);
			say("returned onstack=%d\n", onstack());
		} else
			say("unknown %s\n", line);
	}
}

static void on_usr1(int sig)
{
	(void)sig;
	say("in handler onstack=%d\n", onstack());
	serve(1);
}

int main(void)
{
	common_setup();
	void *stack = malloc(ALTSTACK_SIZE);
	if (!stack)
		die("malloc");
	stack_t ss = {.ss_sp = stack, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
	if (sigaltstack(&ss, NULL) != 0)
		die("sigaltstack");
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK;
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		die("sigaction");
	say("ready pid=%d altstack=0x%lx altsize=%d\n", getpid(), (unsigned long)(uintptr_t)stack,
	    ALTSTACK_SIZE);
	serve(0);
	return 0;
}
