/* sigreader [-direct] FILE: reads FILE to stdout with read(2) in 1 MiB
 * requests, as a job would, while a SIGUSR1 handler installed with
 * SA_RESTART counts signals. -direct opens it O_DIRECT: those reads reach
 * the filesystem synchronously (as page-cache reads do when readahead is
 * skipped or failed), where the kernel interrupts them on a signal.
 * On a local disk such a reader never sees EINTR; exit 3 says it did.
 * Exit 1 on any other error. The signal count goes to stderr at the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t signals;

static void onsig(int sig) { (void)sig; signals++; }

int main(int argc, char **argv) {
	static char buf[1 << 20] __attribute__((aligned(4096)));
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = onsig;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	int flags = O_RDONLY;
	if (argc == 3 && strcmp(argv[1], "-direct") == 0) {
		flags |= O_DIRECT;
		argv++, argc--;
	}
	if (argc != 2 || sigaction(SIGUSR1, &sa, NULL) != 0) {
		fprintf(stderr, "usage: sigreader [-direct] FILE\n");
		return 1;
	}
	int fd = open(argv[1], flags);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n == 0)
			break;
		if (n < 0) {
			int e = errno;
			fprintf(stderr, "read: %s (after %d signals)\n", strerror(e), (int)signals);
			return e == EINTR ? 3 : 1;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(1, buf + off, n - off);
			if (w < 0) {
				perror("write");
				return 1;
			}
			off += w;
		}
	}
	fprintf(stderr, "signals %d\n", (int)signals);
	return 0;
}
