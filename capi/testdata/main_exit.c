/* A program that ends main with pthread_exit, the way DLock's example
 * programs do: the process must end with status 0 once its own threads have
 * finished, as it does with DLock, and a running server keeps it alive, as
 * DLock's server threads do.
 *
 * argv: a port, a mode:
 *   bare      main calls pthread_exit at once (the library is only loaded)
 *   deinit    a server and clients in this process; worker threads use them
 *             after main has gone, each deinits its client, the last one
 *             calls dclient_lib_deinit, server_stop and dserver_lib_deinit
 *   nodeinit  clients only, of the server at port (another process), used by
 *             worker threads after main has gone; nothing is deinitialised
 *   linger    as nodeinit, and a detached thread started by a worker keeps
 *             using the library for 1.5 s after the workers have ended
 *   relay     no library calls: after main, a chain of 2000 threads, each
 *             starting the next and ending at once, so that at no moment
 *             is more than one or two program threads alive; the process
 *             must not end before the last one
 *   joinmain  as deinit, and a worker joins the main thread first (which
 *             must succeed, as without the library)
 *   serve     starts a server at port, prints "SERVING" on stderr and calls
 *             pthread_exit: nothing but the server is left, and the process
 *             must go on serving
 *
 * Output on stdout, which is fully buffered when it is a pipe (so it is only
 * seen if the process ends through exit(), which flushes it): the checks'
 * OK line, "END <ns>" with CLOCK_REALTIME when the last thread finished, and
 * "atexit" from an atexit handler, last. */
#include <pthread.h>

#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

#define WORKERS 8
#define ROUNDS 20

static int port, lock_holder, server_id, main_client, counter_id;
static char lock_name[64], counter_name[64];
static pthread_t main_thread;
static int join_main;
static int remaining; /* threads still to finish; the one that ends it reports */
static int workers_left;
enum run_mode { BARE, DEINIT, NODEINIT, LINGER, SERVE, RELAY };
static enum run_mode mode;
static pthread_mutex_t check_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_exit_print(void) { printf("atexit\n"); }

static void check_locked(long long got, long long want, int line)
{
    pthread_mutex_lock(&check_mu);
    checks++;
    if (got != want) {
        failures++;
        printf("FAIL main_exit.c:%d: got %lld, want %lld\n", line, got, want);
    }
    pthread_mutex_unlock(&check_mu);
}
#define TCHECK(expr, want) check_locked((long long)(expr), (long long)(want), __LINE__)

/* finish is called by every thread as its last act; the last one prints
 * the result and when it ended. */
static void finish(void)
{
    if (__atomic_sub_fetch(&remaining, 1, __ATOMIC_SEQ_CST) != 0)
        return;
    if (mode != RELAY) {
        uint64_t v = 0;
        TCHECK(umo_atomic64_get_snapshot(main_client, counter_id, &v), 0);
        TCHECK(v, WORKERS * ROUNDS + (mode == LINGER ? 5 : 0));
    }
    if (mode == DEINIT) {
        dclient_lib_deinit();
        TCHECK(server_stop(server_id), 0);
        dserver_lib_deinit();
    }
    done();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    printf("END %lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
}

/* use_library takes and gives back a lock n times, checking that no two
 * holders overlap, and bumps an atomic64 object. */
static void use_library(int who, int n)
{
    int c = 0, id = 0, obj = 0;
    struct lock_desc d = desc_of(lock_name, DLOCK_ATOMIC);
    struct umo_atomic64_desc od = {counter_name, (unsigned int)strlen(counter_name), 30};
    lock_state s;
    uint64_t v;

    TCHECK(client_init(&c, "127.0.0.1"), 0);
    TCHECK(get_lock(c, &d, &id), 0);
    TCHECK(umo_atomic64_get(c, &od, &obj), 0);
    struct lock_request r = req_of(id, LOCK_EXCLUSIVE, 30);
    for (int i = 0; i < n; i++) {
        TCHECK(lock(c, &r, &s), DLOCK_SUCCESS);
        TCHECK(__atomic_exchange_n(&lock_holder, who, __ATOMIC_SEQ_CST), 0);
        usleep(200);
        TCHECK(__atomic_exchange_n(&lock_holder, 0, __ATOMIC_SEQ_CST), who);
        TCHECK(unlock(c, id, &s), DLOCK_SUCCESS);
        TCHECK(umo_atomic64_faa(c, obj, 1, &v), 0);
    }
    TCHECK(release_lock(c, id), 0);
    if (mode == DEINIT)
        TCHECK(client_deinit(c), 0);
}

static void *late(void *unused)
{
    (void)unused;
    /* wait (at most 10 s) until every worker has ended, then 1.5 s more */
    for (int i = 0; i < 1000 && __atomic_load_n(&workers_left, __ATOMIC_SEQ_CST) > 0; i++)
        usleep(10000);
    TCHECK(__atomic_load_n(&workers_left, __ATOMIC_SEQ_CST), 0);
    usleep(1500000);
    use_library(WORKERS + 1, 5);
    printf("late thread done\n");
    finish();
    return NULL;
}

#define HOPS 2000

static void *relay(void *p)
{
    long hop = (long)p;
    if (hop == HOPS) {
        printf("relay done\n");
        finish();
        return NULL;
    }
    usleep(200);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    TCHECK(pthread_create(&t, &attr, relay, (void *)(hop + 1)), 0);
    pthread_attr_destroy(&attr);
    return NULL;
}

static void *worker(void *p)
{
    int who = (int)(long)p;
    if (join_main && who == 1)
        TCHECK(pthread_join(main_thread, NULL), 0);
    if (mode == LINGER && who == 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        TCHECK(pthread_create(&t, &attr, late, NULL), 0);
        pthread_attr_destroy(&attr);
    }
    usleep(100000); /* main has called pthread_exit by now */
    use_library(who, ROUNDS);
    __atomic_sub_fetch(&workers_left, 1, __ATOMIC_SEQ_CST);
    finish();
    return NULL;
}

int main(int argc, char **argv)
{
    static const char *modes[] = {"bare", "deinit", "nodeinit", "linger", "serve", "relay"};
    port = arg(argc, argv, 1);
    int m = -1;
    join_main = argc > 2 && !strcmp(argv[2], "joinmain");
    for (int i = 0; argc > 2 && i < 6; i++)
        if (!strcmp(argv[2], modes[i]) || (join_main && i == DEINIT))
            m = i;
    if (m < 0) {
        fprintf(stderr, "usage: main_exit port bare|deinit|joinmain|nodeinit|linger|serve|relay\n");
        return 2;
    }
    main_thread = pthread_self();
    mode = (enum run_mode)m;
    snprintf(lock_name, sizeof(lock_name), "main exit lock %s", modes[m]);
    snprintf(counter_name, sizeof(counter_name), "main exit counter %s", modes[m]);
    atexit(on_exit_print);
    if (mode == BARE)
        pthread_exit(NULL);
    if (mode == RELAY) {
        remaining = 1;
        pthread_t t;
        CHECK(pthread_create(&t, NULL, relay, (void *)1L), 0);
        printf("main: pthread_exit\n");
        pthread_exit(NULL);
    }

    struct server_cfg scfg = server_config(port, 0);
    struct client_cfg ccfg = client_config(port);
    if (mode == DEINIT || mode == SERVE) {
        CHECK(dserver_lib_init(1), 0);
        CHECK(SERVER_START(scfg, server_id), 0);
    }
    if (mode == SERVE) {
        fprintf(stderr, "SERVING\n");
        pthread_exit(NULL);
    }
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&main_client, "127.0.0.1"), 0);
    struct umo_atomic64_desc od = {counter_name, (unsigned int)strlen(counter_name), 30};
    CHECK(umo_atomic64_create(main_client, &od, 0, &counter_id), 0);
    CHECK(umo_atomic64_get(main_client, &od, &counter_id), 0); /* creating takes no reference */

    remaining = WORKERS + (mode == LINGER);
    workers_left = WORKERS;
    for (long i = 1; i <= WORKERS; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, worker, (void *)i), 0);
    }
    printf("main: pthread_exit\n");
    pthread_exit(NULL);
}
