/*
 * tokend-bench's paced load generator (-paced-client c): clients
 * keep-alive HTTP/1.1 connections over a Unix socket, one blocking thread
 * each, together sending rate requests a second on a fixed schedule for
 * secs, each for a random channel's token. It writes every answer's
 * latency in nanoseconds (uint64, the machine's byte order) to out, and
 * prints "answered errors not200" on stdout.
 *
 * A C thread blocked in read(2) is woken by the kernel itself when the
 * answer arrives; a Go client goroutine also waits for the runtime to
 * notice it (netpoll) and to run it on a P, which on 2 shared CPUs added
 * milliseconds to the p99 of the servers being measured (README,
 * Performance). The schedule and the latency rule are load()'s in
 * phases.go: latency counts from when a request was due if the previous
 * answer made its client late, else from when it was sent.
 *
 * usage: paced SOCKET SECS RATE CLIENTS CHANNELS OUT
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *sock_path;
static double secs, rate;
static int clients, channels;
static uint64_t start_ns, every_ns, end_ns;

struct client {
	pthread_t thread;
	int fd;
	unsigned seed;
	uint64_t *lats;
	size_t n, cap;
	long errs, not200;
};

static uint64_t now_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void sleep_until(uint64_t ns) {
	struct timespec t = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {
	}
}

static int dial(void) {
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(sock_path) >= sizeof sa.sun_path) return -1;
	strcpy(sa.sun_path, sock_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int write_all(int fd, const char *p, size_t n) {
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR) continue;
		if (w <= 0) return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* get sends one request and reads its answer: the status code, or -1 for a
 * broken connection or an answer this client cannot read. */
static int get(int fd, int channel) {
	char req[128], buf[8192];
	int len = snprintf(req, sizeof req, "GET /v1/channels/b%05d/token HTTP/1.1\r\nHost: tokend\r\n\r\n", channel);
	if (write_all(fd, req, (size_t)len) < 0) return -1;
	size_t have = 0;
	char *end = NULL;
	while (end == NULL) {
		if (have == sizeof buf - 1) return -1; /* headers too long */
		ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) return -1;
		have += (size_t)r;
		buf[have] = 0;
		end = strstr(buf, "\r\n\r\n");
	}
	if (have < 12 || strncmp(buf, "HTTP/1.", 7) != 0) return -1;
	int status = atoi(buf + 9);
	long length = -1;
	for (char *line = strstr(buf, "\r\n"); line != NULL && line < end; line = strstr(line + 2, "\r\n")) {
		if (strncasecmp(line + 2, "Content-Length:", 15) == 0) length = atol(line + 17);
	}
	if (length < 0) return -1;
	long body = (long)(have - (size_t)(end + 4 - buf));
	while (body < length) {
		ssize_t r = read(fd, buf, sizeof buf);
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) return -1;
		body += r;
	}
	return body == length ? status : -1;
}

static struct client *all;

static void *client_main(void *arg) {
	struct client *c = arg;
	long g = c - all;
	uint64_t due = start_ns + every_ns * (uint64_t)g / (uint64_t)clients; /* spread over one interval */
	for (;;) {
		uint64_t t = now_ns();
		if (due > t) {
			sleep_until(due);
			t = now_ns();
		} else {
			t = due;
		}
		due += every_ns;
		if (t > end_ns) break;
		if (c->fd < 0 && (c->fd = dial()) < 0) {
			c->errs++;
			continue;
		}
		int status = get(c->fd, (int)(rand_r(&c->seed) % (unsigned)channels));
		if (status < 0) {
			c->errs++;
			close(c->fd);
			c->fd = -1;
			continue;
		}
		if (c->n < c->cap) c->lats[c->n++] = now_ns() - t;
		if (status != 200) c->not200++;
	}
	return NULL;
}

int main(int argc, char **argv) {
	if (argc != 7) {
		fprintf(stderr, "usage: paced SOCKET SECS RATE CLIENTS CHANNELS OUT\n");
		return 2;
	}
	sock_path = argv[1];
	secs = atof(argv[2]);
	rate = atof(argv[3]);
	clients = atoi(argv[4]);
	channels = atoi(argv[5]);
	if (secs <= 0 || rate <= 0 || clients < 1 || channels < 1) {
		fprintf(stderr, "paced: SECS, RATE, CLIENTS and CHANNELS must be positive\n");
		return 2;
	}
	all = calloc((size_t)clients, sizeof *all);
	size_t cap = (size_t)(rate * secs / clients) + 64;
	long errs = 0;
	for (int g = 0; g < clients; g++) {
		all[g].seed = (unsigned)g * 2654435761u + 7;
		all[g].cap = cap;
		all[g].lats = malloc(cap * sizeof(uint64_t));
		if (all[g].lats == NULL) return 1;
		all[g].fd = dial(); /* every client connects before the window */
		if (all[g].fd < 0) errs++;
	}
	every_ns = (uint64_t)((double)clients / rate * 1e9);
	start_ns = now_ns() + 20000000; /* 20 ms for the threads to start */
	end_ns = start_ns + (uint64_t)(secs * 1e9);
	for (int g = 0; g < clients; g++) {
		if (pthread_create(&all[g].thread, NULL, client_main, &all[g]) != 0) return 1;
	}
	FILE *out = fopen(argv[6], "wb");
	if (out == NULL) {
		perror("paced: out");
		return 1;
	}
	long answered = 0, not200 = 0;
	for (int g = 0; g < clients; g++) {
		pthread_join(all[g].thread, NULL);
		if (all[g].fd >= 0) close(all[g].fd);
		if (fwrite(all[g].lats, sizeof(uint64_t), all[g].n, out) != all[g].n) return 1;
		answered += (long)all[g].n;
		errs += all[g].errs;
		not200 += all[g].not200;
	}
	if (fclose(out) != 0) return 1;
	printf("%ld %ld %ld\n", answered, errs, not200);
	return 0;
}
