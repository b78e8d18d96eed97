/* umo_atomic64_*: create, get, faa, cas, snapshot, release, destroy and
 * their error codes, between two clients (SEMANTICS.md §10). argv: a free port. */
#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

static struct umo_atomic64_desc odesc(const char *name, uint32_t lease)
{
    struct umo_atomic64_desc d;
    d.p_desc = (char *)name;
    d.len = (uint32_t)strlen(name);
    d.lease_time = lease;
    return d;
}

int main(int argc, char **argv)
{
    struct server_cfg scfg = server_config(arg(argc, argv, 1), 0);
    struct client_cfg ccfg = client_config(arg(argc, argv, 1));
    int sid = 0, c0 = 0, c1 = 0, id = 0, id1 = 0, id2 = 0;
    uint64_t v = 0;
    struct umo_atomic64_desc d = odesc("counter", 30), d2 = odesc("o2", 30), d3 = odesc("o3", 1);
    struct umo_atomic64_desc nope = odesc("nope", 30);

    CHECK(dserver_lib_init(1), 0);
    CHECK(SERVER_START(scfg, sid), 0);
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK(client_init(&c1, "127.0.0.1"), 0);

    CHECK(umo_atomic64_create(c0, &d, 5, &id), 0);
    CHECK_TRUE(id > 0);
    if ((int)djb2("counter") > 0)
        CHECK(id, (int)djb2("counter"));
    id1 = 4242;
    CHECK(umo_atomic64_create(c0, &d, 5, &id1), DLOCK_OBJECT_ALREADY_CREATED);
    CHECK(id1, 4242); /* not written */
    CHECK(umo_atomic64_create(c1, &d, 5, &id1), DLOCK_OBJECT_ALREADY_EXISTED);
    /* creating takes no reference: the server says the creator has not got it */
    CHECK(umo_atomic64_faa(c0, id, 1, &v), DLOCK_OBJECT_NOT_GET);
    CHECK(umo_atomic64_release(c0, id), DLOCK_OBJECT_NOT_GET);
    CHECK(umo_atomic64_get(c0, &nope, &id1), DLOCK_OBJECT_NOT_CREATE);
    /* ids the client never created or got are answered by the server */
    CHECK(umo_atomic64_destroy(c1, id), DLOCK_OBJECT_INVALID_OWNER);
    CHECK(umo_atomic64_release(c1, id), DLOCK_OBJECT_NOT_GET);
    CHECK(umo_atomic64_destroy(c1, 4242), DLOCK_OBJECT_NOT_CREATE);

    CHECK(umo_atomic64_get(c0, &d, &id1), 0);
    CHECK(id1, id);
    CHECK(umo_atomic64_faa(c0, id, 3, &v), 0);
    CHECK(v, 5); /* the value before the addition */
    CHECK(umo_atomic64_get_snapshot(c0, id, &v), 0);
    CHECK(v, 8);
    CHECK(umo_atomic64_cas(c0, id, 8, 100), 0);
    CHECK(umo_atomic64_cas(c0, id, 8, 1), DLOCK_OBJECT_CAS_FAILED);
    CHECK(umo_atomic64_get_snapshot(c0, id, &v), 0);
    CHECK(v, 100);
    CHECK(umo_atomic64_faa(c0, id, (uint64_t)-101, &v), 0); /* wraps modulo 2^64 */
    CHECK(umo_atomic64_get_snapshot(c0, id, &v), 0);
    CHECK(v == UINT64_MAX, 1);
    CHECK(umo_atomic64_faa(c0, id, 102, &v), 0);

    CHECK(umo_atomic64_get(c1, &d, &id2), 0);
    CHECK(id2, id);
    CHECK(umo_atomic64_faa(c1, id, 1, &v), 0);
    CHECK(v, 101);
    CHECK(umo_atomic64_destroy(c1, id), DLOCK_OBJECT_INVALID_OWNER);
    CHECK(umo_atomic64_destroy(c0, id), 0);
    CHECK(umo_atomic64_destroy(c0, id), DLOCK_OBJECT_ALREADY_DESTROYED);
    CHECK(umo_atomic64_get(c1, &d, &id2), DLOCK_OBJECT_ALREADY_DESTROYED);
    CHECK(umo_atomic64_create(c0, &d, 0, &id2), DLOCK_OBJECT_ALREADY_DESTROYED);
    CHECK(umo_atomic64_get_snapshot(c1, id, &v), 0); /* getters keep using it */
    CHECK(v, 102);
    CHECK(umo_atomic64_release(c0, id), 0);
    CHECK(umo_atomic64_release(c0, id), DLOCK_OBJECT_NOT_GET);
    CHECK(umo_atomic64_get_snapshot(c0, id, &v), DLOCK_OBJECT_NOT_GET);
    CHECK(umo_atomic64_release(c1, id), 0); /* the last reference: freed */
    CHECK(umo_atomic64_destroy(c0, id), DLOCK_OBJECT_NOT_CREATE);

    /* create → destroy → destroy: with no reference the first destroy frees it */
    CHECK(umo_atomic64_create(c0, &d2, 1, &id2), 0);
    CHECK(umo_atomic64_release(c0, id2), DLOCK_OBJECT_NOT_GET);
    CHECK(umo_atomic64_destroy(c0, id2), 0);
    CHECK(umo_atomic64_destroy(c0, id2), DLOCK_OBJECT_NOT_CREATE);
    CHECK(umo_atomic64_create(c0, &d2, 1, &id2), 0); /* a fresh one */
    CHECK(umo_atomic64_destroy(c0, id2), 0);

    /* refresh after the lease: destroy with an outstanding get, wait
     * lease + 1 s, create again */
    CHECK(umo_atomic64_create(c0, &d3, 1, &id), 0);
    CHECK(umo_atomic64_get(c1, &d3, &id1), 0);
    CHECK(umo_atomic64_destroy(c0, id), 0);
    CHECK(umo_atomic64_create(c0, &d3, 9, &id2), DLOCK_OBJECT_ALREADY_DESTROYED);
    sleep(2);
    CHECK(umo_atomic64_create(c0, &d3, 9, &id2), 0);
    CHECK(id2, id);
    CHECK(umo_atomic64_get(c0, &d3, &id2), 0);
    CHECK(umo_atomic64_get_snapshot(c0, id2, &v), 0);
    CHECK(v, 9); /* refreshed to init_val */

    CHECK(client_deinit(c0), 0);
    CHECK(client_deinit(c1), 0);
    dclient_lib_deinit();
    dserver_lib_deinit();
    return done();
}
