/* 32 servers in one process (the maximum), clients of several of them, and
 * a server stopped under its clients. argv: 33 free ports; the client
 * library uses the first. */
#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

int main(int argc, char **argv)
{
    int ids[33], i, c0 = 0, c1 = 0, lid = 0;
    struct server_cfg cfg;
    struct client_cfg ccfg = client_config(arg(argc, argv, 1));
    struct lock_desc d = desc_of("lock desc 1", DLOCK_RW);
    struct lock_request r;
    rw_state s;
    struct debug_stats st;

    CHECK(dserver_lib_init(32), 0);
    for (i = 0; i < 32; i++) {
        cfg = server_config(arg(argc, argv, 1 + i), 0);
        cfg.tp_mode = (i % 2) ? UNI_CONN : SEPERATE_CONN;
        CHECK(SERVER_START(cfg, ids[i]), 0);
        CHECK(ids[i], i + 1);
    }
    cfg = server_config(arg(argc, argv, 33), 0);
    CHECK(SERVER_START(cfg, ids[32]), DLOCK_SERVER_NO_RESOURCE);
    CHECK(ids[32], -1);

    /* two clients of server 1 (the client library's port); tp_mode matches */
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK(client_init(&c1, "127.0.0.1"), 0);
    CHECK(get_lock(c0, &d, &lid), 0);
    CHECK(get_lock(c1, &d, &lid), 0);
    r = req_of(lid, LOCK_EXCLUSIVE, 10);
    CHECK(trylock(c0, &r, &s), 0);
    CHECK(trylock(c1, &r, &s), DLOCK_FAIL);
    CHECK(get_server_debug_stats(ids[0], &st), 0);
    CHECK(st.stats[DEBUG_STATS_RW_TRYLOCK_EX_FAIL], 1);
    CHECK(get_server_debug_stats(ids[1], &st), 0);
    CHECK(st.stats[DEBUG_STATS_RW_TRYLOCK_EX_FAIL], 0);
    dclient_lib_deinit();

    /* a client whose tp_mode differs from the server's is refused */
    ccfg = client_config(arg(argc, argv, 2)); /* server 2 is UNI_CONN */
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c0, "127.0.0.1"), -1);
    dclient_lib_deinit();
    ccfg.tp_mode = UNI_CONN;
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK(client_heartbeat(c0, 5), 0);
    CHECK(server_stop(ids[1]), 0);
    CHECK(client_heartbeat(c0, 5), DLOCK_BAD_RESPONSE);
    CHECK(client_reinit(c0, "127.0.0.1"), DLOCK_NOT_READY);
    CHECK(client_deinit(c0), DLOCK_BAD_RESPONSE); /* gone locally anyway */
    CHECK(client_deinit(c0), -1);
    dclient_lib_deinit();

    /* a freed slot is reused with the next id */
    cfg = server_config(arg(argc, argv, 33), 0);
    CHECK(SERVER_START(cfg, ids[32]), 0);
    CHECK(ids[32], 33);
    dserver_lib_deinit();
    return done();
}
