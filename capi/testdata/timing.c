/* Lease expiry with 1-second granularity (SEMANTICS.md §5.7): the fair timeout
 * grab sequence and the atomic expiry sequence, run at the same time on
 * separate clients. argv: a free port. */
#include <pthread.h>

#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

static int get(int client, const char *name, unsigned int type)
{
    struct lock_desc d = desc_of(name, type);
    int id = 0;
    CHECK(get_lock(client, &d, &id), 0);
    return id;
}

static void *fair_sequence(void *p)
{
    int c0 = 0, c1 = 0, f;
    struct lock_request ex, sh;
    lock_state s;
    (void)p;
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK(client_init(&c1, "127.0.0.1"), 0);
    f = get(c0, "fair timing", DLOCK_FAIR);
    get(c1, "fair timing", DLOCK_FAIR);
    ex = req_of(f, LOCK_EXCLUSIVE, 1);
    sh = req_of(f, LOCK_SHARED, 1);
    CHECK(trylock(c0, &ex, &s), DLOCK_SUCCESS);
    CHECK(trylock(c1, &sh, &s), DLOCK_EAGAIN);
    sleep(2);
    CHECK(trylock(c1, &sh, &s), DLOCK_SUCCESS); /* timeout grab */
    CHECK(unlock(c0, f, &s), DLOCK_FAIL);       /* the hold was lost */
    CHECK(trylock(c0, &ex, &s), DLOCK_EAGAIN);
    sleep(2);
    CHECK(trylock(c0, &ex, &s), DLOCK_SUCCESS); /* grab */
    CHECK(unlock(c1, f, &s), DLOCK_FAIL);
    CHECK(unlock(c0, f, &s), DLOCK_SUCCESS);
    CHECK(client_deinit(c0), 0);
    CHECK(client_deinit(c1), 0);
    return NULL;
}

static void *atomic_sequence(void *p)
{
    int c0 = 0, c1 = 0, a;
    struct lock_request r;
    atomic_state s;
    (void)p;
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK(client_init(&c1, "127.0.0.1"), 0);
    a = get(c0, "atomic timing", DLOCK_ATOMIC);
    get(c1, "atomic timing", DLOCK_ATOMIC);
    r = req_of(a, LOCK_EXCLUSIVE, 1);
    CHECK(trylock(c0, &r, &s), DLOCK_SUCCESS);
    sleep(2);
    CHECK(trylock(c1, &r, &s), DLOCK_SUCCESS); /* expired: free again */
    CHECK(unlock(c0, a, &s), DLOCK_FAIL);
    sleep(2);
    r.expire_time = 5;
    CHECK(trylock(c0, &r, &s), DLOCK_SUCCESS);
    r = req_of(a, EXTEND_LOCK_EXCLUSIVE, 5);
    CHECK(lock_extend(c1, &r, &s), DLOCK_FAIL);
    CHECK(lock_extend(c1, &r, &s), DLOCK_EINVAL); /* c1 was reset locally */
    CHECK(unlock(c0, a, &s), DLOCK_SUCCESS);
    CHECK(client_deinit(c0), 0);
    CHECK(client_deinit(c1), 0);
    return NULL;
}

int main(int argc, char **argv)
{
    struct server_cfg scfg = server_config(arg(argc, argv, 1), 0);
    struct client_cfg ccfg = client_config(arg(argc, argv, 1));
    int sid = 0;
    pthread_t t1, t2;

    CHECK(dserver_lib_init(1), 0);
    CHECK(SERVER_START(scfg, sid), 0);
    CHECK(dclient_lib_init(&ccfg), 0);
    pthread_create(&t1, NULL, fair_sequence, NULL);
    pthread_create(&t2, NULL, atomic_sequence, NULL);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    dclient_lib_deinit();
    dserver_lib_deinit();
    return done();
}
