/* mem MIB: touch MIB MiB of heap with a pattern (byte i of page p is
 * (p * 7 + i) & 0xff, never an all-zero page), leave one untouched hole,
 * then sleep reading stdin.
 * ready pid=P addr=0x... size=BYTES
 * Commands: "check" -> "mem ok" if the pattern is intact (else "mem bad P").
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1;
    size_t size = mib << 20;
    alarm(600);
    uint8_t *p = mmap(NULL, size + 4 * 4096, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 1;
    for (size_t page = 0; page < size / 4096; page++)
        for (size_t i = 0; i < 4096; i++)
            p[page * 4096 + i] = (uint8_t)(page * 7 + i + 1);
    printf("ready pid=%d addr=%p size=%zu\n", getpid(), (void *)p, size);
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "check", 5) == 0) {
            size_t bad = 0;
            for (size_t page = 0; page < size / 4096 && !bad; page++)
                for (size_t i = 0; i < 4096; i++)
                    if (p[page * 4096 + i] != (uint8_t)(page * 7 + i + 1)) {
                        bad = page + 1;
                        break;
                    }
            if (bad)
                printf("mem bad %zu\n", bad - 1);
            else
                printf("mem ok\n");
            fflush(stdout);
        }
    }
    return 0;
}
