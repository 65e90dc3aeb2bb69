/* spawner: keeps creating short-lived threads (each lives ~20 ms), so that a
 * freeze races with clone().  ready pid=P.  "count" -> "threads N" (created).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile long created;

static void *shortlived(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return NULL;
}

static void *spawn_loop(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_t t;
        if (pthread_create(&t, NULL, shortlived, NULL) == 0) {
            pthread_detach(t);
            created++;
        }
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int main(void)
{
    alarm(600);
    pthread_t t;
    pthread_create(&t, NULL, spawn_loop, NULL);
    printf("ready pid=%d\n", getpid());
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "count", 5) == 0) {
            printf("threads %ld\n", created);
            fflush(stdout);
        }
    }
    return 0;
}
