/* check.h — a tiny test harness for the C ABI test programs. Each failed
 * CHECK prints a FAIL line; done() prints "OK <n> checks" and returns the
 * exit status. Used from C and C++ (after "using namespace dlock;"). */
#ifndef CHECK_H
#define CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int checks, failures;

#define CHECK(expr, want)                                                              \
    do {                                                                               \
        long long got_ = (long long)(expr);                                            \
        long long want_ = (long long)(want);                                           \
        checks++;                                                                      \
        if (got_ != want_) {                                                           \
            failures++;                                                                \
            printf("FAIL %s:%d: %s = %lld (0x%llx), want %lld (0x%llx)\n", __FILE__, \
                   __LINE__, #expr, got_, got_, want_, want_);                         \
            fflush(stdout);                                                            \
        }                                                                              \
    } while (0)

#define CHECK_TRUE(cond) CHECK(!!(cond), 1)

static inline int done(void)
{
    if (failures) {
        printf("FAILED %d of %d checks\n", failures, checks);
        return 1;
    }
    printf("OK %d checks\n", checks);
    return 0;
}

#ifdef __cplusplus
#define SERVER_START(cfg, id) server_start(cfg, id)
#else
#define SERVER_START(cfg, id) server_start(&(cfg), &(id))
#endif

/* arg returns argv[i] as an int (ports are passed by the Go test). */
static inline int arg(int argc, char **argv, int i)
{
    if (i >= argc) {
        fprintf(stderr, "missing argument %d\n", i);
        exit(2);
    }
    return atoi(argv[i]);
}

static inline struct server_cfg server_config(int port, unsigned int recovery)
{
    struct server_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.type = SERVER_PRIMARY;
    cfg.log_level = 3;
    cfg.primary.server_ip_str = (char *)"127.0.0.1";
    cfg.primary.server_port = port;
    cfg.primary.recovery_client_num = recovery;
    cfg.tp_mode = SEPERATE_CONN;
    return cfg;
}

static inline struct client_cfg client_config(int port)
{
    struct client_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.log_level = 3;
    cfg.primary_port = port;
    cfg.tp_mode = SEPERATE_CONN;
    return cfg;
}

static inline struct lock_desc desc_of(const char *s, unsigned int type)
{
    struct lock_desc d;
    memset(&d, 0, sizeof(d));
    d.p_desc = (char *)s;
    d.len = (unsigned int)strlen(s);
    d.lock_type = type;
    d.lease_time = 60000;
    return d;
}

static inline struct lock_request req_of(int id, int op, unsigned int expire)
{
    struct lock_request r;
    r.lock_id = id;
    r.lock_op = op;
    r.expire_time = expire;
    return r;
}

static inline unsigned int djb2(const char *s)
{
    unsigned int h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

static inline double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
