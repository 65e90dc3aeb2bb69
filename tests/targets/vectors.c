/* vectors: load known values into every vector register, then sleep in a
 * raw read(0) syscall issued from the same asm block, so that nothing (not
 * even libc) touches them while a test reads `fpu`.
 *
 * Register i (xmm/ymm/zmm) holds 64 bytes where byte k = (i * 64 + k) & 0xff,
 * k0..k7 hold 0x1111111111111111 * (i + 1) (masked to 64 bits).
 * Prints "ready pid=P level=avx512|avx|sse" before loading.  After the read
 * returns (a line on stdin) it prints "woke rc=N" and exits.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

static uint8_t pattern[32 * 64] __attribute__((aligned(64)));
static char buf[64];

#define LOADZ(i) "vmovdqu64 " #i "*64(%[p]), %%zmm" #i "\n\t"
#define LOADY(i) "vmovdqu " #i "*64(%[p]), %%ymm" #i "\n\t"

int main(void)
{
    for (int i = 0; i < 32 * 64; i++)
        pattern[i] = (uint8_t)i;
    alarm(600);
    long rc;
    if (__builtin_cpu_supports("avx512f")) {
        printf("ready pid=%d level=avx512\n", getpid());
        fflush(stdout);
        uint64_t kv[8];
        for (int i = 0; i < 8; i++)
            kv[i] = 0x1111111111111111ULL * (uint64_t)(i + 1);
        __asm__ volatile(
            LOADZ(0) LOADZ(1) LOADZ(2) LOADZ(3) LOADZ(4) LOADZ(5) LOADZ(6) LOADZ(7)
            LOADZ(8) LOADZ(9) LOADZ(10) LOADZ(11) LOADZ(12) LOADZ(13) LOADZ(14) LOADZ(15)
            LOADZ(16) LOADZ(17) LOADZ(18) LOADZ(19) LOADZ(20) LOADZ(21) LOADZ(22) LOADZ(23)
            LOADZ(24) LOADZ(25) LOADZ(26) LOADZ(27) LOADZ(28) LOADZ(29) LOADZ(30) LOADZ(31)
            "kmovq 0(%[k]), %%k0\n\t" "kmovq 8(%[k]), %%k1\n\t" "kmovq 16(%[k]), %%k2\n\t"
            "kmovq 24(%[k]), %%k3\n\t" "kmovq 32(%[k]), %%k4\n\t" "kmovq 40(%[k]), %%k5\n\t"
            "kmovq 48(%[k]), %%k6\n\t" "kmovq 56(%[k]), %%k7\n\t"
            "xor %%edi, %%edi\n\t"
            "lea %[b], %%rsi\n\t"
            "mov $1, %%edx\n\t"
            "xor %%eax, %%eax\n\t"
            "syscall\n\t"
            : "=a"(rc)
            : [p] "r"(pattern), [k] "r"(kv), [b] "m"(buf)
            : "rdi", "rsi", "rdx", "rcx", "r11", "memory");
    } else {
        printf("ready pid=%d level=avx\n", getpid());
        fflush(stdout);
        __asm__ volatile(
            LOADY(0) LOADY(1) LOADY(2) LOADY(3) LOADY(4) LOADY(5) LOADY(6) LOADY(7)
            LOADY(8) LOADY(9) LOADY(10) LOADY(11) LOADY(12) LOADY(13) LOADY(14) LOADY(15)
            "xor %%edi, %%edi\n\t"
            "lea %[b], %%rsi\n\t"
            "mov $1, %%edx\n\t"
            "xor %%eax, %%eax\n\t"
            "syscall\n\t"
            : "=a"(rc)
            : [p] "r"(pattern), [b] "m"(buf)
            : "rdi", "rsi", "rdx", "rcx", "r11", "memory");
    }
    printf("woke rc=%ld\n", rc);
    return 0;
}
