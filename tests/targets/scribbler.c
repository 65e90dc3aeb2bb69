/* scribbler PAGES USEC [thp]: keeps writing its memory, for the tests of
 * `checkpoint --pre-copy`.  One anonymous mapping of 1 + PAGES pages: page 0
 * holds the count G of generations written; generation g fills every word
 * of page 1 + g % PAGES with g, then G becomes g + 1, then it sleeps USEC
 * microseconds (0: not at all).  So at any stop, for k = 1 .. PAGES - 1,
 * page 1 + (G - k) % PAGES holds G - k in every word (if G >= k): a copy of
 * the memory that missed a write shows an older generation somewhere.
 * With "thp" the mapping asks for transparent huge pages (MADV_HUGEPAGE).
 * A second mapping, SPARE, of 16 pages of 0x11 bytes, is never written (but
 * by the commands below); it is a mapping of its own.
 * ready pid=P addr=0x... pages=PAGES spare=0x...
 * Commands (read between generations):
 *   "map"       -> maps and touches one more anonymous page: "mapped 0x..."
 *   "count"     -> "count G"
 *   "remap"     -> maps new memory over SPARE (MAP_FIXED), fills it with
 *                  0x22: "remapped"
 *   "split"     -> makes the second half of SPARE read-only (the mapping
 *                  splits in two): "split"
 *   "reserve"   -> reserves 16 GiB of address space (PROT_NONE,
 *                  MAP_NORESERVE), touching none of it: "reserved 0x..."
 *   "droppable" -> maps 4 pages MAP_DROPPABLE filled with 0x33:
 *                  "droppable 0x..." (or "droppable none" without it)
 *   "dirty"     -> writes every data page again with what it holds (all
 *                  written, nothing changed): "dirtied"
 *   "redrop"    -> fills the MAP_DROPPABLE pages with 0x44: "redropped"
 *   "grow"      -> grows the stack by 256 KiB (touching it): "grown"
 *   "hide"      -> fills SPARE with 0x55, then makes it PROT_NONE (whole:
 *                  no split): "hidden"
 */
#include "common.h"
#include <poll.h>
#include <sys/mman.h>
#include <time.h>

static char *droppable;

static __attribute__((noinline)) void grow(void)
{
	volatile char deep[256 * 1024];
	for (size_t i = 0; i < sizeof deep; i += 4096)
		deep[i] = 1;
}

int main(int argc, char **argv)
{
	size_t pages = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
	long usec = argc > 2 ? strtol(argv[2], NULL, 10) : 100;
	common_setup();
	volatile uint64_t *m = mmap(NULL, (pages + 1) * 4096, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		die("mmap");
	if (argc > 3 && strcmp(argv[3], "thp") == 0 &&
	    madvise((void *)m, (pages + 1) * 4096, MADV_HUGEPAGE) != 0)
		die("madvise");
	/* Mapped with a page to spare, which is given back: SPARE is then not
	 * next to M, so the kernel keeps it a mapping of its own. */
	char *spare = mmap(NULL, 17 * 4096, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (spare == MAP_FAILED || munmap(spare + 16 * 4096, 4096) != 0)
		die("mmap");
	memset(spare, 0x11, 16 * 4096);
	alarm(600);
	printf("ready pid=%d addr=%p pages=%zu spare=%p\n", getpid(), (void *)m, pages,
	       (void *)spare);
	fflush(stdout);
	struct pollfd in = { .fd = 0, .events = POLLIN };
	char line[64];
	for (uint64_t g = 0;; g++) {
		volatile uint64_t *page = m + 512 * (1 + g % pages);
		for (int i = 0; i < 512; i++)
			page[i] = g;
		__atomic_store_n(&m[0], g + 1, __ATOMIC_RELEASE);
		if (usec > 0) {
			struct timespec ts = { 0, usec * 1000 };
			nanosleep(&ts, NULL);
		}
		if (g % 64 || poll(&in, 1, 0) <= 0)
			continue;
		if (!fgets(line, sizeof line, stdin))
			return 0;
		if (strncmp(line, "map", 3) == 0) {
			char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED)
				die("mmap");
			p[0] = 1;
			printf("mapped %p\n", (void *)p);
		} else if (strncmp(line, "count", 5) == 0) {
			printf("count %llu\n", (unsigned long long)m[0]);
		} else if (strncmp(line, "remap", 5) == 0) {
			if (mmap(spare, 16 * 4096, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
				die("mmap");
			memset(spare, 0x22, 16 * 4096);
			printf("remapped\n");
		} else if (strncmp(line, "split", 5) == 0) {
			if (mprotect(spare + 8 * 4096, 8 * 4096, PROT_READ) != 0)
				die("mprotect");
			printf("split\n");
		} else if (strncmp(line, "reserve", 7) == 0) {
			void *r = mmap(NULL, 16UL << 30, PROT_NONE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			if (r == MAP_FAILED)
				die("mmap");
			printf("reserved %p\n", r);
		} else if (strncmp(line, "dirty", 5) == 0) {
			for (size_t i = 512; i < 512 * (pages + 1); i += 512)
				m[i] = m[i];
			printf("dirtied\n");
		} else if (strncmp(line, "droppable", 9) == 0) {
			char *d = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE,
				       0x08 /* MAP_DROPPABLE */ | MAP_ANONYMOUS, -1, 0);
			if (d == MAP_FAILED) {
				printf("droppable none\n");
			} else {
				memset(d, 0x33, 4 * 4096);
				droppable = d;
				printf("droppable %p\n", (void *)d);
			}
		} else if (strncmp(line, "redrop", 6) == 0) {
			if (droppable)
				memset(droppable, 0x44, 4 * 4096);
			printf("redropped\n");
		} else if (strncmp(line, "hide", 4) == 0) {
			memset(spare, 0x55, 16 * 4096);
			if (mprotect(spare, 16 * 4096, PROT_NONE) != 0)
				die("mprotect");
			printf("hidden\n");
		} else if (strncmp(line, "grow", 4) == 0) {
			grow();
			printf("grown\n");
		}
		fflush(stdout);
	}
}
