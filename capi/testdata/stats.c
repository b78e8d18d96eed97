/* Client and server debug statistics and the client stats rate limit
 * (SEMANTICS.md §11). argv: a free port. */
#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

int main(int argc, char **argv)
{
    struct server_cfg scfg = server_config(arg(argc, argv, 1), 0);
    struct client_cfg ccfg = client_config(arg(argc, argv, 1));
    int sid = 0, c0 = 0, c1 = 0, id = 0, i, again = 0, rc;
    struct debug_stats st, sst;
    struct lock_desc d = desc_of("stats lock", DLOCK_ATOMIC);
    struct lock_request r;
    atomic_state s;

    CHECK(sizeof(st.stats) / sizeof(st.stats[0]), DEBUG_STATS_MAX);
    CHECK(dserver_lib_init(1), 0);
    CHECK(SERVER_START(scfg, sid), 0);
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK(client_init(&c1, "127.0.0.1"), 0);
    CHECK(get_lock(c0, &d, &id), 0);
    CHECK(get_lock(c1, &d, &id), 0);

    r = req_of(id, LOCK_EXCLUSIVE, 10);
    CHECK(trylock(c0, &r, &s), 0);
    CHECK(trylock(c1, &r, &s), DLOCK_FAIL);         /* server ATOMIC_TRYLOCK_FAIL, client EINVAL_LOCK_RET */
    CHECK(unlock(c1, id, &s), DLOCK_ALREADY_UNLOCKED); /* client ALREADY_UNLOCKED */
    r.lock_op = LOCK_SHARED;
    CHECK(trylock(c1, &r, &s), DLOCK_EINVAL); /* client EINVAL_LOCK_OP */
    r = req_of(4242, LOCK_EXCLUSIVE, 10);
    CHECK(trylock(c1, &r, &s), DLOCK_LOCK_NOT_GET); /* client LOCK_NOT_GET */
    CHECK(lock_result_check(c1, &s), DLOCK_NO_ASYNC); /* client NO_ASYNC */

    memset(&st, 0xff, sizeof(st));
    CHECK(get_client_debug_stats(c1, &st), 0);
    CHECK(st.stats[DEBUG_STATS_EINVAL_LOCK_RET], 1);
    CHECK(st.stats[DEBUG_STATS_ALREADY_UNLOCKED], 1);
    CHECK(st.stats[DEBUG_STATS_EINVAL_LOCK_OP], 1);
    CHECK(st.stats[DEBUG_STATS_LOCK_NOT_GET], 1);
    CHECK(st.stats[DEBUG_STATS_NO_ASYNC], 1);
    CHECK(st.stats[DEBUG_STATS_CLIENT_NOT_INIT], 0);
    CHECK(get_client_debug_stats(c0, &st), 0);
    CHECK(st.stats[DEBUG_STATS_ALREADY_UNLOCKED], 0);
    CHECK(get_server_debug_stats(sid, &sst), 0);
    CHECK(sst.stats[DEBUG_STATS_ATOMIC_TRYLOCK_FAIL], 1);
    CHECK(clear_server_debug_stats(sid), 0);
    CHECK(get_server_debug_stats(sid, &sst), 0);
    CHECK(sst.stats[DEBUG_STATS_ATOMIC_TRYLOCK_FAIL], 0);
    CHECK(clear_client_debug_stats(c1), 0);
    CHECK(get_client_debug_stats(c1, &st), 0);
    for (i = 0; i < DEBUG_STATS_MAX; i++)
        CHECK(st.stats[i], 0);

    /* The rate limit: at most 10000 get/clear calls per second per process,
     * unknown clients included. */
    sleep(1);
    for (i = 0; i < 20000; i++) {
        rc = (i % 3 == 0) ? clear_client_debug_stats(c0)
             : (i % 3 == 1) ? get_client_debug_stats(12345, &st)
                            : get_client_debug_stats(c0, &st);
        if (rc == DLOCK_EAGAIN)
            again++;
        else if (i % 3 == 1)
            CHECK(rc, DLOCK_CLIENT_NOT_INIT);
        else
            CHECK(rc, 0);
    }
    CHECK_TRUE(again > 0);
    CHECK_TRUE(again <= 10000);
    usleep(1100000);
    CHECK(get_client_debug_stats(c0, &st), 0);
    /* the server side has no rate limit */
    for (i = 0; i < 20000; i++)
        if (get_server_debug_stats(sid, &sst) != 0)
            break;
    CHECK(i, 20000);

    CHECK(client_deinit(c0), 0);
    CHECK(client_deinit(c1), 0);
    dclient_lib_deinit();
    dserver_lib_deinit();
    return done();
}
