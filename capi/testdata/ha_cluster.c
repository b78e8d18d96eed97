/* A highly available cluster: two dlockd elected through etcd, the primary
 * on 127.0.0.1 and a standby on 127.0.0.2, both on the same port.
 * client_init naming the standby follows its redirect to the primary; the
 * program kills the primary (SIGKILL, by pid), and client_reinit on the
 * standby's address answers DLOCK_NOT_READY until it has taken over, then
 * re-registers; the clients upload their locks and every hold is kept.
 * Objects are lost, or with durable objects kept with their value.
 * argv: port, the primary's pid, 1 for durable objects (else 0). */
#include <signal.h>
#include <sys/types.h>

#include "dlock_client_api.h"

#include "check.h"

static int get(int client, const char *name, unsigned int type)
{
    struct lock_desc d = desc_of(name, type);
    int id = 0;
    CHECK(get_lock(client, &d, &id), 0);
    return id;
}

static int update(int client)
{
    int rc, tries = 0;
    while ((rc = update_all_locks(client)) == DLOCK_EAGAIN && tries++ < 100)
        usleep(100000);
    return rc;
}

/* reinit retries client_reinit on ip while the cluster fails over (at most
 * 20 s) and returns the last result. */
static int reinit(int client, const char *ip)
{
    int rc, tries = 0;
    while ((rc = client_reinit(client, ip)) == DLOCK_NOT_READY && tries++ < 400)
        usleep(50000);
    return rc;
}

int main(int argc, char **argv)
{
    int port = arg(argc, argv, 1);
    pid_t primary = (pid_t)arg(argc, argv, 2);
    int durable = arg(argc, argv, 3);
    struct client_cfg ccfg = client_config(port);
    struct umo_atomic64_desc od = {(char *)"ha counter", 10, 30};
    int c0 = 0, c1 = 0, a, a1, rw, rw1, f, f1, obj = 0;
    struct lock_request r;
    lock_state s;
    uint64_t v = 0;
    double killed, reinited;

    CHECK(dclient_lib_init(&ccfg), 0);
    /* both name the standby: its redirect leads them to the primary */
    CHECK(client_init(&c0, "127.0.0.2"), 0);
    CHECK(client_init(&c1, "127.0.0.2"), 0);

    a = get(c0, "ha atomic", DLOCK_ATOMIC);
    a1 = get(c1, "ha atomic", DLOCK_ATOMIC);
    rw = get(c0, "ha rw", DLOCK_RW);
    rw1 = get(c1, "ha rw", DLOCK_RW);
    f = get(c1, "ha fair", DLOCK_FAIR);
    f1 = get(c0, "ha fair", DLOCK_FAIR);
    r = req_of(a, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c0, &r, &s), 0);
    r = req_of(rw, LOCK_SHARED, 60);
    CHECK(trylock(c0, &r, &s), 0);
    r = req_of(f, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c1, &r, &s), 0);
    r = req_of(a1, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c1, &r, &s), DLOCK_FAIL);
    CHECK(umo_atomic64_create(c0, &od, 40, &obj), 0);
    CHECK(umo_atomic64_get(c0, &od, &obj), 0);
    CHECK(umo_atomic64_faa(c0, obj, 2, &v), 0);
    CHECK(v, 40);

    /* the primary dies */
    CHECK(kill(primary, SIGKILL), 0);
    killed = now_seconds();
    {
        /* until it is gone (reaped by the test) */
        int polls = 0;
        while (kill(primary, 0) == 0 && polls++ < 200)
            usleep(10000);
    }
    CHECK(client_heartbeat(c0, 2), DLOCK_BAD_RESPONSE);
    CHECK(client_reinit(c0, "127.0.0.1"), DLOCK_NOT_READY); /* connection refused */
    /* the standby redirects to the dead primary (NOT_READY) until it is
     * elected; then it is a new primary waiting for both clients */
    CHECK(reinit(c0, "127.0.0.2"), 0);
    reinited = now_seconds();
    printf("client_reinit succeeded %.2f s after the kill\n", reinited - killed);
    CHECK(reinited - killed < 20, 1);
    r = req_of(a1, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c0, &r, &s), DLOCK_NOT_READY); /* recovery in progress */
    CHECK(update(c0), 0);
    CHECK(client_reinit_done(c0), 0);
    CHECK(reinit(c1, "127.0.0.2"), 0);
    CHECK(update(c1), 0);
    CHECK(client_reinit_done(c1), 0);

    /* every hold kept by its holder and refused to the other */
    CHECK(client_heartbeat(c0, 2), 0);
    r = req_of(a1, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c1, &r, &s), DLOCK_FAIL);
    r = req_of(a, EXTEND_LOCK_EXCLUSIVE, 60);
    CHECK(lock_extend(c0, &r, &s), 0);
    CHECK(s.atomic.client_id, c0);
    r = req_of(rw1, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c1, &r, &s), DLOCK_FAIL); /* c0 holds it shared */
    r = req_of(f1, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c0, &r, &s), DLOCK_EAGAIN); /* c1 holds it */
    CHECK(unlock(c0, a, &s), DLOCK_SUCCESS);
    r = req_of(a1, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c1, &r, &s), DLOCK_SUCCESS);
    CHECK(unlock(c1, a1, &s), DLOCK_SUCCESS);

    if (durable) {
        CHECK(umo_atomic64_faa(c0, obj, 1, &v), 0);
        CHECK(v, 42);
        CHECK(umo_atomic64_get_snapshot(c0, obj, &v), 0);
        CHECK(v, 43);
    } else {
        CHECK(umo_atomic64_faa(c0, obj, 1, &v), DLOCK_OBJECT_NOT_GET);
        CHECK(umo_atomic64_get(c0, &od, &obj), DLOCK_OBJECT_NOT_CREATE);
    }

    CHECK(client_deinit(c0), 0);
    CHECK(client_deinit(c1), 0);
    dclient_lib_deinit();
    return done();
}
