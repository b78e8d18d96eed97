/* Failure recovery (SEMANTICS.md §9): the server is stopped, clients see
 * DLOCK_BAD_RESPONSE and DLOCK_NOT_READY, a new server starts in recovery
 * mode for two clients, which re-register, upload their locks and finish;
 * the lock state and ids survive, objects do not. argv: a free port. */
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

static int update(int client)
{
    int rc, tries = 0;
    while ((rc = update_all_locks(client)) == DLOCK_EAGAIN && tries++ < 60)
        usleep(100000);
    return rc;
}

int main(int argc, char **argv)
{
    int port = arg(argc, argv, 1);
    struct server_cfg scfg = server_config(port, 0);
    struct client_cfg ccfg = client_config(port);
    int sid = 0, c0 = 0, c1 = 0, c2 = 0, c3 = 0, a, a1, rw, f, obj = 0;
    struct lock_request r;
    struct umo_atomic64_desc od = {(char *)"recovery obj", 12, 30};
    struct lock_desc d = desc_of("new lock", DLOCK_ATOMIC);
    lock_state s;
    uint64_t v;

    CHECK(dserver_lib_init(2), 0);
    CHECK(SERVER_START(scfg, sid), 0);
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK(client_init(&c1, "127.0.0.1"), 0);
    CHECK(client_init(&c2, "127.0.0.1"), 0);

    a = get(c0, "lock desc 1", DLOCK_ATOMIC);
    CHECK(a, 1252963582);
    a1 = get(c1, "lock desc 1", DLOCK_ATOMIC);
    rw = get(c1, "recovery rw", DLOCK_RW);
    get(c0, "recovery rw", DLOCK_RW);
    f = get(c1, "recovery fair", DLOCK_FAIR);
    get(c0, "recovery fair", DLOCK_FAIR);
    r = req_of(a, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c0, &r, &s), 0);
    r = req_of(rw, LOCK_SHARED, 60);
    CHECK(trylock(c1, &r, &s), 0);
    r = req_of(f, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c1, &r, &s), 0);
    CHECK(umo_atomic64_create(c0, &od, 1, &obj), 0);
    CHECK(umo_atomic64_get(c0, &od, &obj), 0);

    /* the primary dies */
    CHECK(server_stop(sid), 0);
    CHECK(client_heartbeat(c0, 2), DLOCK_BAD_RESPONSE);
    r = req_of(a, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c0, &r, &s), DLOCK_BAD_RESPONSE);
    CHECK(client_reinit(c0, "127.0.0.1"), DLOCK_NOT_READY); /* connection refused */

    /* a new primary in recovery mode, waiting for two clients */
    scfg = server_config(port, 2);
    CHECK(SERVER_START(scfg, sid), 0);
    CHECK(client_init(&c3, "127.0.0.1"), DLOCK_NOT_READY);
    CHECK(client_reinit(c0, "127.0.0.1"), 0);
    CHECK(client_heartbeat(c0, 2), DLOCK_NOT_READY);
    CHECK(trylock(c0, &r, &s), DLOCK_NOT_READY);
    CHECK(get_lock(c0, &d, &a1), DLOCK_NOT_READY);
    CHECK(umo_atomic64_create(c0, &od, 1, &obj), DLOCK_NOT_READY);
    CHECK(lock_request_async(c0, &r), 0);
    {
        int rc, polls = 0;
        while ((rc = lock_result_check(c0, &s)) == DLOCK_ASYNC_AGAIN && polls++ < 1000)
            usleep(1000);
        CHECK(rc, DLOCK_NOT_READY);
    }
    CHECK(update(c0), 0);
    /* re-registering after the upload (a connection blip) resumes it */
    CHECK(client_reinit(c0, "127.0.0.1"), 0);
    CHECK(update(c0), 0);
    CHECK(client_reinit_done(c0), 0);
    CHECK(trylock(c0, &r, &s), DLOCK_NOT_READY); /* c1 still missing */
    /* a client that re-registers but leaves: deinit answers NOT_READY, and
     * the local instance is gone anyway */
    CHECK(client_reinit(c2, "127.0.0.1"), 0);
    CHECK(client_deinit(c2), DLOCK_NOT_READY);
    CHECK(client_heartbeat(c2, 2), DLOCK_EINVAL);

    CHECK(client_reinit(c1, "127.0.0.1"), 0);
    CHECK(update(c1), 0);
    CHECK(client_reinit_done(c1), 0);
    CHECK(client_reinit_done(c1), -1);

    /* READY: the locks kept their ids and holders */
    CHECK(client_heartbeat(c0, 2), 0);
    r = req_of(a, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c1, &r, &s), DLOCK_FAIL); /* c0 still holds it */
    r = req_of(a, EXTEND_LOCK_EXCLUSIVE, 60);
    CHECK(lock_extend(c0, &r, &s), 0); /* re-validate the hold */
    CHECK(s.atomic.client_id, c0);
    CHECK(unlock(c0, a, &s), DLOCK_SUCCESS);
    r = req_of(a, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c1, &r, &s), DLOCK_SUCCESS);
    CHECK(unlock(c1, a, &s), DLOCK_SUCCESS);
    r = req_of(rw, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c0, &r, &s), DLOCK_FAIL); /* c1 holds it shared */
    CHECK(unlock(c1, rw, &s), DLOCK_SUCCESS);
    CHECK(trylock(c0, &r, &s), DLOCK_SUCCESS);
    CHECK(unlock(c0, rw, &s), DLOCK_SUCCESS);
    r = req_of(f, LOCK_EXCLUSIVE, 60);
    CHECK(trylock(c0, &r, &s), DLOCK_EAGAIN); /* c1 holds it */
    CHECK(unlock(c1, f, &s), DLOCK_SUCCESS);
    CHECK(trylock(c0, &r, &s), DLOCK_SUCCESS); /* the ticket's turn */
    CHECK(unlock(c0, f, &s), DLOCK_SUCCESS);
    /* objects are not recovered */
    CHECK(umo_atomic64_faa(c0, obj, 1, &v), DLOCK_OBJECT_NOT_GET);
    CHECK(umo_atomic64_get(c0, &od, &obj), DLOCK_OBJECT_NOT_CREATE);
    CHECK(client_init(&c3, "127.0.0.1"), 0);

    /* update_all_locks refused by a ready server parks the locks (invisible:
     * DLOCK_LOCK_NOT_GET); client_reinit brings them back with their
     * state */
    {
        int n = 0;
        CHECK(get_lock(c3, &d, &n), 0);
        r = req_of(n, LOCK_EXCLUSIVE, 60);
        CHECK(trylock(c3, &r, &s), DLOCK_SUCCESS);
        CHECK(update_all_locks(c3), -1);
        CHECK(trylock(c3, &r, &s), DLOCK_LOCK_NOT_GET);
        CHECK(unlock(c3, n, &s), DLOCK_LOCK_NOT_GET);
        CHECK(client_reinit(c3, "127.0.0.1"), 0);
        CHECK(client_reinit_done(c3), 0);
        CHECK(trylock(c3, &r, &s), DLOCK_ALREADY_LOCKED); /* still held: a reentry */
        CHECK(unlock(c3, n, &s), DLOCK_ALREADY_LOCKED);
        CHECK(unlock(c3, n, &s), DLOCK_SUCCESS);
        CHECK(release_lock(c3, n), 0);
    }

    CHECK(client_deinit(c0), 0);
    CHECK(client_deinit(c1), 0);
    CHECK(client_deinit(c3), 0);
    dclient_lib_deinit();
    dserver_lib_deinit();
    return done();
}
