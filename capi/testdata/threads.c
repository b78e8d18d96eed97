/* Clients on several threads: each thread creates its own client and
 * competes for the same locks and object. argv: a free port. */
#include <pthread.h>

#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

#define THREADS 8
#define ROUNDS 40

static pthread_mutex_t check_mu = PTHREAD_MUTEX_INITIALIZER;
static volatile int holder, counter, overlap;
static volatile int readers, max_readers;

static void *worker(void *p)
{
    int n = (int)(long)p, c = 0, a = 0, rw = 0, obj = 0, i, rc;
    struct lock_desc da = desc_of("shared atomic", DLOCK_ATOMIC), dr = desc_of("shared rw", DLOCK_RW);
    struct umo_atomic64_desc od = {(char *)"shared counter", 14, 30};
    struct lock_request ra, rr;
    lock_state s;
    uint64_t v;
    int errors = 0;

    if (client_init(&c, "127.0.0.1") != 0)
        errors++;
    if (get_lock(c, &da, &a) != 0 || get_lock(c, &dr, &rw) != 0 || umo_atomic64_get(c, &od, &obj) != 0)
        errors++;
    ra = req_of(a, LOCK_EXCLUSIVE, 30);
    rr = req_of(rw, LOCK_SHARED, 30);
    for (i = 0; i < ROUNDS; i++) {
        rc = lock(c, &ra, &s);
        if (rc != DLOCK_SUCCESS) {
            errors++;
            continue;
        }
        if (holder != 0)
            overlap++;
        holder = n + 1;
        counter++;
        usleep(100);
        holder = 0;
        if (unlock(c, a, &s) != DLOCK_SUCCESS)
            errors++;
        if (umo_atomic64_faa(c, obj, 1, &v) != 0)
            errors++;
        /* shared holds overlap */
        if (trylock(c, &rr, &s) == DLOCK_SUCCESS) {
            pthread_mutex_lock(&check_mu);
            readers++;
            if (readers > max_readers)
                max_readers = readers;
            pthread_mutex_unlock(&check_mu);
            usleep(200);
            pthread_mutex_lock(&check_mu);
            readers--;
            pthread_mutex_unlock(&check_mu);
            if (unlock(c, rw, &s) != DLOCK_SUCCESS)
                errors++;
        } else {
            errors++;
        }
    }
    if (client_deinit(c) != 0)
        errors++;
    return (void *)(long)errors;
}

int main(int argc, char **argv)
{
    struct server_cfg scfg = server_config(arg(argc, argv, 1), 0);
    struct client_cfg ccfg = client_config(arg(argc, argv, 1));
    struct umo_atomic64_desc od = {(char *)"shared counter", 14, 30};
    pthread_t th[THREADS];
    int sid = 0, c0 = 0, obj = 0, i;
    void *errors;
    uint64_t v = 0;

    CHECK(dserver_lib_init(1), 0);
    CHECK(SERVER_START(scfg, sid), 0);
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK(umo_atomic64_create(c0, &od, 0, &obj), 0);
    CHECK(umo_atomic64_get(c0, &od, &obj), 0);
    for (i = 0; i < THREADS; i++)
        CHECK(pthread_create(&th[i], NULL, worker, (void *)(long)i), 0);
    for (i = 0; i < THREADS; i++) {
        pthread_join(th[i], &errors);
        CHECK((long)errors, 0);
    }
    CHECK(overlap, 0);
    CHECK(counter, THREADS * ROUNDS);
    CHECK(umo_atomic64_get_snapshot(c0, obj, &v), 0);
    CHECK(v, THREADS * ROUNDS);
    printf("max concurrent readers %d\n", max_readers);
    CHECK(client_deinit(c0), 0);
    dclient_lib_deinit();
    dserver_lib_deinit();
    return done();
}
