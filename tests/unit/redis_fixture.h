/*
 * A redis-server for the tests of the layers that keep state in Redis: started on a free
 * loopback port in the test's temp dir (no persistence), up within five seconds or the setup
 * fails, stopped (SIGTERM, then SIGKILL after five seconds) at teardown. A test may pause the
 * server (SIGSTOP) to play a hung Redis; stopping resumes it first.
 *
 * redis_setup makes the temp dir, a libuv loop for the layer's Redis thread and the server;
 * redis_teardown runs the loop's closing handles out (bounded), closes it, stops the server
 * and removes the dir. The including test reads `port` and `tmpdir`.
 */
#ifndef TG_TEST_REDIS_FIXTURE_H
#define TG_TEST_REDIS_FIXTURE_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

static char tmpdir[64];
static int port;
static pid_t redis_pid = -1;

/* A free loopback port: bind to 0, read it back, close (the server binds it right after). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* A blocking connection to the test's server (1 s bound), or NULL. */
static redisContext *sync_conn(void)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Starts redis-server on `port` (a free one is picked when it is not set). 0, or -1. */
static int redis_start(void)
{
    if (port <= 0 && (port = free_port()) <= 0)
        return -1;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    redis_pid = fork();
    if (redis_pid < 0)
        return -1;
    if (redis_pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--dir",
               tmpdir, "--save", "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        redisContext *c = sync_conn();
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            redisFree(c);
            if (ok)
                return 0;
        }
        usleep(50000);
    }
    return -1;
}

static void redis_stop(void)
{
    if (redis_pid <= 0)
        return;
    kill(redis_pid, SIGCONT); /* a paused server would never act on SIGTERM */
    kill(redis_pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(redis_pid, NULL, WNOHANG) == redis_pid) {
            redis_pid = -1;
            return;
        }
        usleep(50000);
    }
    kill(redis_pid, SIGKILL);
    waitpid(redis_pid, NULL, 0);
    redis_pid = -1;
}

/* The temp dir named after PREFIX, LOOP initialised, and a server on `port` (0: a free one). */
static int redis_setup(const char *prefix, uv_loop_t *loop)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/toolgate-test-%s-XXXXXX", prefix);
    if (!mkdtemp(tmpdir))
        return -1;
    uv_loop_init(loop);
    return redis_start();
}

/* After the layer closed its connections on LOOP: the handles closed, the server and dir gone. */
static int redis_teardown(uv_loop_t *loop)
{
    for (int i = 0; i < 100 && uv_run(loop, UV_RUN_NOWAIT); i++)
        ;
    uv_loop_close(loop);
    redis_stop();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
