/* lock_request_async + lock_result_check (SEMANTICS.md §6.3): one outstanding operation
 * per client, DLOCK_EASYNC for the others, local answers, all lock types.
 * argv: a free port. */
#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

static int c0, c1;

static int get(int client, const char *name, unsigned int type)
{
    struct lock_desc d = desc_of(name, type);
    int id = 0;
    CHECK(get_lock(client, &d, &id), 0);
    return id;
}

/* wait_result polls lock_result_check until the result is there. */
static int wait_result(int client, void *result)
{
    int rc, polls = 0;
    while ((rc = lock_result_check(client, result)) == DLOCK_ASYNC_AGAIN && polls++ < 1000)
        usleep(1000);
    return rc;
}

int main(int argc, char **argv)
{
    struct server_cfg scfg = server_config(arg(argc, argv, 1), 0);
    struct client_cfg ccfg = client_config(arg(argc, argv, 1));
    int sid = 0, a, rw, f, obj = 0, other = 0;
    struct lock_request r;
    struct lock_op_res res[1];
    lock_state s;
    uint64_t v;
    struct umo_atomic64_desc od = {(char *)"async obj", 9, 10};
    struct lock_desc d = desc_of("another", DLOCK_ATOMIC);

    CHECK(dserver_lib_init(1), 0);
    CHECK(SERVER_START(scfg, sid), 0);
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK(client_init(&c1, "127.0.0.1"), 0);
    a = get(c0, "async atomic", DLOCK_ATOMIC);
    rw = get(c0, "async rw", DLOCK_RW);
    f = get(c0, "async fair", DLOCK_FAIR);
    get(c1, "async atomic", DLOCK_ATOMIC);
    get(c1, "async fair", DLOCK_FAIR);
    CHECK(umo_atomic64_create(c0, &od, 7, &obj), 0);
    CHECK(umo_atomic64_get(c0, &od, &obj), 0);

    CHECK(lock_result_check(c0, &s), DLOCK_NO_ASYNC);
    r = req_of(a, LOCK_EXCLUSIVE, 10);
    CHECK(lock_request_async(c0, &r), 0);
    /* while it is outstanding */
    CHECK(lock_request_async(c0, &r), DLOCK_EASYNC);
    CHECK(trylock(c0, &r, &s), DLOCK_EASYNC);
    CHECK(unlock(c0, a, &s), DLOCK_EASYNC);
    CHECK(batch_trylock(c0, 1, &r, res), DLOCK_EASYNC);
    CHECK(umo_atomic64_faa(c0, obj, 1, &v), DLOCK_EASYNC);
    CHECK(umo_atomic64_get_snapshot(c0, obj, &v), DLOCK_EASYNC);
    CHECK(umo_atomic64_cas(c0, obj, 1, 2), DLOCK_EASYNC);
    CHECK(release_lock(c0, a), DLOCK_EASYNC);
    CHECK(get_lock(c0, &d, &other), 0);   /* not affected */
    CHECK(release_lock(c0, other), 0);    /* another lock: not affected */
    CHECK(client_heartbeat(c0, 5), 0);    /* not affected */
    memset(&s, 0, sizeof(s));
    CHECK(wait_result(c0, &s), DLOCK_SUCCESS);
    CHECK(s.atomic.client_id, c0);
    CHECK(lock_result_check(c0, &s), DLOCK_NO_ASYNC);

    /* the other client is refused */
    CHECK(lock_request_async(c1, &r), 0);
    CHECK(wait_result(c1, &s), DLOCK_FAIL);
    /* reentry through async */
    CHECK(lock_request_async(c0, &r), 0);
    CHECK(wait_result(c0, &s), DLOCK_ALREADY_LOCKED);
    /* unlocking the reentrant hold is answered at request time: nothing
     * becomes outstanding */
    r = req_of(a, UNLOCK, 0);
    CHECK(lock_request_async(c0, &r), DLOCK_ALREADY_LOCKED);
    CHECK(lock_result_check(c0, &s), DLOCK_NO_ASYNC);
    r = req_of(a, LOCK_EXCLUSIVE, 0);
    CHECK(trylock(c0, &r, &s), DLOCK_SUCCESS); /* a peek, not refused with EASYNC */
    CHECK(s.atomic.client_id, c0);
    /* extend, then unlock */
    r = req_of(a, EXTEND_LOCK_EXCLUSIVE, 60);
    CHECK(lock_request_async(c0, &r), 0);
    CHECK(wait_result(c0, &s), DLOCK_SUCCESS);
    r = req_of(a, UNLOCK, 0);
    CHECK(lock_request_async(c0, &r), 0);
    CHECK(wait_result(c0, &s), DLOCK_SUCCESS);
    /* answered locally: nothing becomes outstanding */
    CHECK(lock_request_async(c0, &r), DLOCK_ALREADY_UNLOCKED);
    CHECK(lock_result_check(c0, &s), DLOCK_NO_ASYNC);
    r = req_of(a, EXTEND_LOCK_EXCLUSIVE, 60);
    CHECK(lock_request_async(c0, &r), DLOCK_EINVAL);
    r = req_of(a, LOCK_SHARED, 10);
    CHECK(lock_request_async(c0, &r), DLOCK_EINVAL);

    /* RW: shared, then a local reentry */
    r = req_of(rw, LOCK_SHARED, 10);
    CHECK(lock_request_async(c0, &r), 0);
    CHECK(wait_result(c0, &s), DLOCK_SUCCESS);
    CHECK(s.rw.rcount, 1);
    CHECK(lock_request_async(c0, &r), DLOCK_ALREADY_LOCKED);
    CHECK(lock_result_check(c0, &s), DLOCK_NO_ASYNC);
    CHECK(unlock(c0, rw, &s), DLOCK_ALREADY_LOCKED);
    CHECK(unlock(c0, rw, &s), DLOCK_SUCCESS);

    /* FAIR: c0 takes it, c1 queues with a ticket, then gives it up */
    r = req_of(f, LOCK_EXCLUSIVE, 10);
    CHECK(lock_request_async(c0, &r), 0);
    CHECK(wait_result(c0, &s), DLOCK_SUCCESS);
    CHECK(lock_request_async(c1, &r), 0);
    CHECK(wait_result(c1, &s), DLOCK_EAGAIN);
    CHECK(s.fl.m_exclusive, 1);
    CHECK(release_lock(c1, f), DLOCK_TICKET_TO_UNLOCK);
    /* a shared request with an exclusive ticket: DLOCK_ETICKET at request
     * time, nothing outstanding */
    r = req_of(f, LOCK_SHARED, 10);
    CHECK(lock_request_async(c1, &r), DLOCK_ETICKET);
    CHECK(lock_result_check(c1, &s), DLOCK_NO_ASYNC);
    /* giving the ticket up is local too: DLOCK_SUCCESS, nothing outstanding */
    r = req_of(f, UNLOCK, 0);
    CHECK(lock_request_async(c1, &r), DLOCK_SUCCESS);
    CHECK(lock_result_check(c1, &s), DLOCK_NO_ASYNC);
    CHECK(release_lock(c1, f), 0); /* no ticket left */
    /* a fair reentrant hold: its unlock is answered at request time too */
    r = req_of(f, LOCK_EXCLUSIVE, 10);
    CHECK(lock_request_async(c0, &r), 0);
    CHECK(wait_result(c0, &s), DLOCK_ALREADY_LOCKED);
    r = req_of(f, UNLOCK, 0);
    CHECK(lock_request_async(c0, &r), DLOCK_ALREADY_LOCKED);
    CHECK(lock_result_check(c0, &s), DLOCK_NO_ASYNC);
    CHECK(lock_request_async(c0, &r), 0);
    CHECK(wait_result(c0, &s), DLOCK_SUCCESS);

    /* the object calls work again */
    CHECK(umo_atomic64_faa(c0, obj, 1, &v), 0);
    CHECK(v, 7);

    /* deinit with an operation outstanding */
    r = req_of(a, LOCK_EXCLUSIVE, 10);
    CHECK(lock_request_async(c0, &r), 0);
    CHECK(client_deinit(c0), 0);
    CHECK(lock_result_check(c0, &s), DLOCK_CLIENT_NOT_INIT);
    CHECK(client_deinit(c1), 0);
    dclient_lib_deinit();
    dserver_lib_deinit();
    return done();
}
