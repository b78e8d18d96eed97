/* Every exported function's argument and state checks, in upstream's order
 * (the return codes of DLock's API). argv: three free loopback ports. */
#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

static void client_calls_before_init(void)
{
    int id = 77, lock_id = 0, obj_id = 0, ids[2] = {0, 0};
    unsigned char buf[32];
    uint64_t v = 0;
    struct debug_stats st;
    struct lock_desc d = desc_of("lock desc 1", DLOCK_ATOMIC);
    struct lock_desc ds[2] = {desc_of("a", DLOCK_ATOMIC), desc_of("b", DLOCK_RW)};
    struct lock_request r = req_of(1, LOCK_EXCLUSIVE, 5);
    struct lock_request rs[1] = {req_of(1, LOCK_EXCLUSIVE, 5)};
    struct lock_op_res res[32];
    struct umo_atomic64_desc od = {(char *)"obj", 3, 10};

    CHECK(client_init(NULL, "127.0.0.1"), DLOCK_EINVAL);
    CHECK(client_init(&id, NULL), DLOCK_EINVAL);
    CHECK(client_init(&id, "127.0.0.1"), -1);
    CHECK(client_reinit(1, NULL), DLOCK_EINVAL);
    CHECK(client_reinit(1, "127.0.0.1"), -1);
    CHECK(client_deinit(1), -1);
    CHECK(client_heartbeat(1, 5), -1);
    CHECK(client_reinit_done(1), -1);

    CHECK(get_lock(1, NULL, &lock_id), DLOCK_EINVAL);
    CHECK(get_lock(1, &d, NULL), DLOCK_EINVAL);
    d.len = 0;
    CHECK(get_lock(1, &d, &lock_id), DLOCK_EINVAL);
    d.len = MAX_LOCK_DESC_LEN + 1;
    CHECK(get_lock(1, &d, &lock_id), DLOCK_EINVAL);
    d = desc_of("lock desc 1", DLOCK_MAX);
    CHECK(get_lock(1, &d, &lock_id), DLOCK_EINVAL);
    d = desc_of("lock desc 1", DLOCK_ATOMIC);
    d.p_desc = NULL;
    CHECK(get_lock(1, &d, &lock_id), DLOCK_EINVAL);
    d = desc_of("lock desc 1", DLOCK_ATOMIC);
    CHECK(get_lock(1, &d, &lock_id), -1);
    CHECK(lock_id, 1252963582); /* the hash is written before anything can fail */
    CHECK(release_lock(1, lock_id), -1);
    CHECK(update_all_locks(1), -1);

    CHECK(get_client_debug_stats(1, NULL), DLOCK_EINVAL);
    CHECK(get_client_debug_stats(1, &st), DLOCK_CLIENTMGR_NOT_INIT);
    CHECK(clear_client_debug_stats(1), DLOCK_CLIENTMGR_NOT_INIT);

    CHECK(trylock(1, NULL, buf), DLOCK_EINVAL);
    CHECK(trylock(1, &r, NULL), DLOCK_EINVAL);
    r.lock_op = UNLOCK;
    CHECK(trylock(1, &r, buf), DLOCK_EINVAL);
    CHECK(lock(1, &r, buf), DLOCK_EINVAL);
    r.lock_op = EXTEND_LOCK_EXCLUSIVE;
    CHECK(trylock(1, &r, buf), DLOCK_EINVAL);
    CHECK(lock_extend(1, &r, NULL), DLOCK_EINVAL);
    CHECK(lock_extend(1, &r, buf), DLOCK_CLIENTMGR_NOT_INIT);
    r.lock_op = LOCK_SHARED;
    CHECK(lock_extend(1, &r, buf), DLOCK_EINVAL);
    CHECK(trylock(1, &r, buf), DLOCK_CLIENTMGR_NOT_INIT);
    CHECK(unlock(1, 1, NULL), DLOCK_EINVAL);
    CHECK(unlock(1, 1, buf), DLOCK_CLIENTMGR_NOT_INIT);

    CHECK(batch_get_lock(1, 0, ds, ids), DLOCK_EINVAL);
    CHECK(batch_get_lock(1, MAX_LOCK_BATCH_SIZE + 1, ds, ids), DLOCK_EINVAL);
    CHECK(batch_get_lock(1, 2, NULL, ids), DLOCK_EINVAL);
    CHECK(batch_get_lock(1, 2, ds, NULL), DLOCK_EINVAL);
    ds[1].len = 0;
    CHECK(batch_get_lock(1, 2, ds, ids), DLOCK_EINVAL);
    CHECK(ids[0], (int)djb2("a")); /* written during validation */
    ds[1].len = 1;
    CHECK(batch_get_lock(1, 2, ds, ids), -1);
    CHECK(ids[1], (int)djb2("b"));
    CHECK(batch_release_lock(1, 0, ids), DLOCK_EINVAL);
    CHECK(batch_release_lock(1, 32, ids), DLOCK_EINVAL);
    CHECK(batch_release_lock(1, 1, NULL), DLOCK_EINVAL);
    CHECK(batch_release_lock(1, 1, ids), -1);

    CHECK(batch_trylock(1, 0, rs, res), DLOCK_EINVAL);
    CHECK(batch_trylock(1, 32, rs, res), DLOCK_EINVAL);
    CHECK(batch_trylock(1, 1, NULL, res), DLOCK_EINVAL);
    CHECK(batch_trylock(1, 1, rs, NULL), DLOCK_EINVAL);
    CHECK(batch_trylock(1, 1, rs, res), DLOCK_CLIENTMGR_NOT_INIT);
    rs[0].lock_op = UNLOCK;
    CHECK(batch_trylock(1, 1, rs, res), DLOCK_EINVAL);
    CHECK(batch_lock_extend(1, 1, rs, res), DLOCK_EINVAL);
    rs[0].lock_op = EXTEND_LOCK_SHARED;
    CHECK(batch_lock_extend(1, 1, rs, res), DLOCK_CLIENTMGR_NOT_INIT);
    CHECK(batch_lock_extend(1, 0, rs, res), DLOCK_EINVAL);
    CHECK(batch_unlock(1, 0, ids, res), DLOCK_EINVAL);
    CHECK(batch_unlock(1, 1, NULL, res), DLOCK_EINVAL);
    CHECK(batch_unlock(1, 1, ids, NULL), DLOCK_EINVAL);
    CHECK(batch_unlock(1, 1, ids, res), DLOCK_CLIENTMGR_NOT_INIT);

    CHECK(lock_request_async(1, NULL), DLOCK_EINVAL);
    r = req_of(1, LOCK_OPS_MAX, 5);
    CHECK(lock_request_async(1, &r), DLOCK_EINVAL);
    r = req_of(1, -1, 5);
    CHECK(lock_request_async(1, &r), DLOCK_EINVAL);
    r = req_of(1, LOCK_SHARED, 0); /* no peek in async */
    CHECK(lock_request_async(1, &r), DLOCK_EINVAL);
    r = req_of(1, UNLOCK, 0);
    CHECK(lock_request_async(1, &r), DLOCK_CLIENTMGR_NOT_INIT);
    CHECK(lock_result_check(1, NULL), DLOCK_EINVAL);
    CHECK(lock_result_check(1, buf), DLOCK_CLIENTMGR_NOT_INIT);

    CHECK(umo_atomic64_create(1, NULL, 0, &obj_id), DLOCK_EINVAL);
    CHECK(umo_atomic64_create(1, &od, 0, NULL), DLOCK_EINVAL);
    od.lease_time = 0;
    CHECK(umo_atomic64_create(1, &od, 0, &obj_id), DLOCK_EINVAL);
    CHECK(umo_atomic64_get(1, &od, &obj_id), DLOCK_EINVAL);
    od.lease_time = 10;
    od.len = 0;
    CHECK(umo_atomic64_create(1, &od, 0, &obj_id), DLOCK_EINVAL);
    od.len = 513;
    CHECK(umo_atomic64_get(1, &od, &obj_id), DLOCK_EINVAL);
    od.len = 3;
    od.p_desc = NULL;
    CHECK(umo_atomic64_get(1, &od, &obj_id), DLOCK_EINVAL);
    od.p_desc = (char *)"obj";
    CHECK(umo_atomic64_create(1, &od, 0, &obj_id), DLOCK_CLIENTMGR_NOT_INIT);
    CHECK(umo_atomic64_get(1, &od, &obj_id), DLOCK_CLIENTMGR_NOT_INIT);
    CHECK(umo_atomic64_destroy(1, 1), DLOCK_CLIENTMGR_NOT_INIT);
    CHECK(umo_atomic64_release(1, 1), DLOCK_CLIENTMGR_NOT_INIT);
    CHECK(umo_atomic64_faa(1, 1, 1, NULL), DLOCK_EINVAL);
    CHECK(umo_atomic64_faa(1, 1, 1, &v), DLOCK_CLIENTMGR_NOT_INIT);
    CHECK(umo_atomic64_cas(1, 1, 1, 2), DLOCK_CLIENTMGR_NOT_INIT);
    CHECK(umo_atomic64_get_snapshot(1, 1, NULL), DLOCK_EINVAL);
    CHECK(umo_atomic64_get_snapshot(1, 1, &v), DLOCK_CLIENTMGR_NOT_INIT);
    (void)id;
}

static void client_lib_init_checks(int port)
{
    struct client_cfg cfg = client_config(port);
    char nonexistent[] = "/nonexistent/ca.pem";

    CHECK(dclient_lib_init(NULL), DLOCK_EINVAL);
    cfg.primary_port = 80;
    CHECK(dclient_lib_init(&cfg), DLOCK_EINVAL);
    cfg.primary_port = 65536;
    CHECK(dclient_lib_init(&cfg), DLOCK_EINVAL);
    cfg = client_config(port);
    cfg.ssl.ssl_enable = true;
    CHECK(dclient_lib_init(&cfg), DLOCK_EINVAL); /* TLS paths and callbacks missing */
    cfg = client_config(port);
    cfg.tp_mode = (trans_mode_t)2;
    CHECK(dclient_lib_init(&cfg), -1);
    cfg = client_config(port);
    cfg.dev_name = (char *)"xxxx";
    CHECK(dclient_lib_init(&cfg), -1);
    cfg = client_config(port);
    /* eid ::ffff:192.0.2.1 (TEST-NET-1) is not a local address */
    cfg.eid.in4.prefix = 0xffff0000u; /* bytes 00 00 ff ff */
    cfg.eid.in4.addr = 0x010200c0u;   /* bytes 192 0 2 1 */
    CHECK(dclient_lib_init(&cfg), -1);
    cfg.dev_name = (char *)"lo"; /* falls back to dev_name */
    CHECK(dclient_lib_init(&cfg), 0);
    dclient_lib_deinit();
    cfg = client_config(port);
    cfg.eid.in4.prefix = 0xffff0000u;
    cfg.eid.in4.addr = 0x0100007fu; /* 127.0.0.1 */
    cfg.log_level = 10;            /* out of range: ignored */
    CHECK(dclient_lib_init(&cfg), 0);
    dclient_lib_deinit();
    dclient_lib_deinit(); /* twice is harmless */
    cfg = client_config(port);
    cfg.ssl.ssl_enable = true;
    cfg.ssl.ca_path = nonexistent;
    cfg.ssl.cert_path = nonexistent;
    cfg.ssl.prkey_path = nonexistent;
    cfg.ssl.prkey_pwd_cb = (tls_prkey_pwd_callback_func_t)1;
    cfg.ssl.erase_prkey_cb = (tls_erase_prkey_callback_func_t)1;
    CHECK(dclient_lib_init(&cfg), -1); /* paths must exist */
}

static void server_checks(int port1, int port2, int port3)
{
    struct server_cfg cfg = server_config(port1, 0);
    struct debug_stats st;
    int id = 0, id2 = 0, id3 = 0;

    CHECK(dserver_lib_init(0), -1);
    CHECK(dserver_lib_init(33), -1);
    CHECK(SERVER_START(cfg, id), -1); /* library not initialised */
    CHECK(server_stop(0), -1);
    CHECK(server_stop(1), -1);
    CHECK(get_server_debug_stats(1, &st), -1);
    CHECK(clear_server_debug_stats(1), -1);
    dserver_lib_deinit(); /* not initialised: harmless */

    CHECK(dserver_lib_init(2), 0);
    CHECK(dserver_lib_init(2), -1);

    cfg.type = SERVER_REPLICA;
    CHECK(SERVER_START(cfg, id), -1);
    cfg.type = SERVER_MAX;
    CHECK(SERVER_START(cfg, id), -1);
    cfg = server_config(80, 0);
    CHECK(SERVER_START(cfg, id), -1);
    cfg = server_config(port1, 0);
    cfg.primary.replica_port = 1023;
    CHECK(SERVER_START(cfg, id), -1);
    cfg = server_config(port1, 0);
    cfg.primary.replica_enable = true;
    CHECK(SERVER_START(cfg, id), -1);
    cfg = server_config(port1, 1001);
    CHECK(SERVER_START(cfg, id), -1);
    cfg = server_config(port1, 0);
    cfg.primary.num_of_replica = 1;
    CHECK(SERVER_START(cfg, id), -1);
    cfg = server_config(port1, 0);
    cfg.ssl.ssl_enable = true;
    CHECK(SERVER_START(cfg, id), -1);
    cfg = server_config(port1, 0);
    cfg.tp_mode = (trans_mode_t)7;
    CHECK(SERVER_START(cfg, id), -1);
    CHECK(id, 0); /* nothing written before the id is assigned */

    /* From here on an id is assigned (and written) even if the start fails. */
    cfg = server_config(port1, 0);
    cfg.primary.server_ip_str = NULL;
    CHECK(SERVER_START(cfg, id), -1);
    CHECK(id, 1);
    cfg.primary.server_ip_str = (char *)"1.1.1";
    CHECK(SERVER_START(cfg, id), -1);
    CHECK(id, 2);
    cfg = server_config(port1, 0);
    cfg.primary.ctrl_cpuset = (char *)"-1";
    CHECK(SERVER_START(cfg, id), -1);
    cfg.primary.ctrl_cpuset = (char *)"";
    CHECK(SERVER_START(cfg, id), -1);
    cfg.primary.ctrl_cpuset = (char *)"0";
    cfg.primary.cmd_cpuset = (char *)"0-99999";
    CHECK(SERVER_START(cfg, id), -1);
    cfg = server_config(port1, 0);
    cfg.dev_name = (char *)"xxxx";
    CHECK(SERVER_START(cfg, id), -1);
    CHECK(id, 6);

    cfg = server_config(port1, 0);
    cfg.primary.ctrl_cpuset = (char *)"0";
    cfg.primary.cmd_cpuset = (char *)"0-0";
    cfg.dev_name = (char *)"lo";
    CHECK(SERVER_START(cfg, id), 0);
    CHECK(id, 7);
    cfg = server_config(port1, 0);
    CHECK(SERVER_START(cfg, id2), -1); /* address in use */
    CHECK(id2, 8);
    cfg = server_config(port2, 0);
    CHECK(SERVER_START(cfg, id2), 0);
    CHECK(id2, 9);
    cfg = server_config(port3, 0);
    CHECK(SERVER_START(cfg, id3), DLOCK_SERVER_NO_RESOURCE);
    CHECK(id3, -1);

    CHECK(get_server_debug_stats(id2, NULL), -1);
    CHECK(get_server_debug_stats(id2, &st), 0);
    CHECK(get_server_debug_stats(12345, &st), -1);
    CHECK(get_server_debug_stats(0x100000, &st), -1);
    CHECK(clear_server_debug_stats(id2), 0);
    CHECK(clear_server_debug_stats(12345), -1);
    CHECK(server_stop(id), 0);
    CHECK(server_stop(id), -1);
    CHECK(server_stop(0x100000), -1);
}

static void client_checks(int port, int stopped_port)
{
    int c0 = 0, c1 = 0, c2 = 0, lid = 0, lid2 = 0, obj = 0;
    unsigned char buf[32];
    struct debug_stats st;
    struct client_cfg cfg = client_config(port);
    struct lock_desc d = desc_of("lock desc 1", DLOCK_ATOMIC);
    struct lock_request r = req_of(0, LOCK_EXCLUSIVE, 10);
    struct lock_op_res res[2];
    int ids[2];
    struct umo_atomic64_desc od = {(char *)"obj", 3, 10};
    uint64_t v;

    CHECK(dclient_lib_init(&cfg), 0);
    CHECK(dclient_lib_init(&cfg), -1); /* double init */
    CHECK(client_init(&c0, "1.1.1"), -1);
    CHECK(client_init(&c0, "localhost"), -1);
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK_TRUE(c0 > 0);
    CHECK(client_init(&c1, "127.0.0.1"), 0);
    CHECK(client_init(&c2, "127.0.0.1"), 0);
    CHECK_TRUE(c0 != c1 && c1 != c2);

    CHECK(client_heartbeat(c0, 0), DLOCK_EINVAL);
    CHECK(client_heartbeat(c0, 301), DLOCK_EINVAL);
    CHECK(client_heartbeat(12345, 5), DLOCK_EINVAL);
    CHECK(client_heartbeat(c0, 5), 0);
    CHECK(client_reinit(12345, "127.0.0.1"), DLOCK_EINVAL);
    CHECK(client_reinit(c0, "1.1"), -1);
    CHECK(client_reinit_done(12345), DLOCK_CLIENT_NOT_INIT);
    CHECK(client_reinit(c0, "127.0.0.1"), 0);
    CHECK(client_reinit_done(c0), 0);
    CHECK(client_reinit_done(c0), -1); /* not reinitialising any more */

    CHECK(get_lock(12345, &d, &lid), -1);
    CHECK(lid, 1252963582);
    CHECK(get_lock(c0, &d, &lid), 0);
    CHECK(lid, 1252963582);
    lid = 0;
    CHECK(get_lock(c0, &d, &lid), -1); /* already got: -1, but the id is written */
    CHECK(lid, 1252963582);
    d.lock_type = DLOCK_RW;
    CHECK(get_lock(c1, &d, &lid2), -1); /* type mismatch */
    d.lock_type = DLOCK_ATOMIC;
    CHECK(get_lock(c1, &d, &lid2), 0);
    CHECK(lid2, lid);

    r.lock_id = lid;
    CHECK(trylock(12345, &r, buf), DLOCK_CLIENT_NOT_INIT);
    CHECK(unlock(12345, lid, buf), DLOCK_CLIENT_NOT_INIT);
    CHECK(lock_extend(12345, &r, buf), DLOCK_EINVAL); /* op checked first */
    r.lock_id = 42;
    CHECK(trylock(c0, &r, buf), DLOCK_LOCK_NOT_GET);
    CHECK(unlock(c0, 42, buf), DLOCK_LOCK_NOT_GET);
    r = req_of(42, EXTEND_LOCK_EXCLUSIVE, 5);
    CHECK(lock_extend(c0, &r, buf), DLOCK_LOCK_NOT_GET);
    CHECK(lock_extend(12345, &r, buf), DLOCK_CLIENT_NOT_INIT);

    CHECK(release_lock(12345, lid), -1);
    CHECK(release_lock(c0, 42), -1);
    r = req_of(lid, LOCK_EXCLUSIVE, 10);
    CHECK(trylock(c0, &r, buf), 0);
    CHECK(release_lock(c0, lid), -1); /* unlock first */
    CHECK(update_all_locks(c2), 0);   /* no locks: nothing to do */
    /* Locks, but the server is not recovering: -1, and (as upstream) the
     * client's locks stay parked, invisible to the lock calls. */
    CHECK(update_all_locks(c1), -1);
    r.lock_id = lid2;
    CHECK(trylock(c1, &r, buf), DLOCK_LOCK_NOT_GET);
    r.lock_id = lid;
    CHECK(update_all_locks(12345), DLOCK_CLIENT_NOT_INIT);
    CHECK(unlock(c0, lid, buf), 0);
    CHECK(release_lock(c0, lid), 0);
    CHECK(release_lock(c0, lid), -1);
    CHECK(trylock(c0, &r, buf), DLOCK_LOCK_NOT_GET);

    CHECK(get_client_debug_stats(12345, &st), DLOCK_CLIENT_NOT_INIT);
    CHECK(clear_client_debug_stats(12345), DLOCK_CLIENT_NOT_INIT);
    CHECK(get_client_debug_stats(c0, &st), 0);
    CHECK(clear_client_debug_stats(c0), 0);

    ids[0] = lid;
    CHECK(batch_get_lock(12345, 1, &d, ids), -1);
    CHECK(batch_release_lock(12345, 1, ids), -1);
    CHECK(batch_trylock(12345, 1, &r, res), DLOCK_CLIENT_NOT_INIT);
    CHECK(batch_unlock(12345, 1, ids, res), DLOCK_CLIENT_NOT_INIT);
    r.lock_op = EXTEND_LOCK_EXCLUSIVE;
    CHECK(batch_lock_extend(12345, 1, &r, res), DLOCK_CLIENT_NOT_INIT);
    CHECK(lock_request_async(12345, &r), DLOCK_CLIENT_NOT_INIT);
    CHECK(lock_result_check(12345, buf), DLOCK_CLIENT_NOT_INIT);
    CHECK(lock_request_async(c0, &r), DLOCK_LOCK_NOT_GET);
    CHECK(lock_result_check(c0, buf), DLOCK_NO_ASYNC);

    CHECK(umo_atomic64_create(12345, &od, 0, &obj), DLOCK_CLIENT_NOT_INIT);
    CHECK(umo_atomic64_get(12345, &od, &obj), DLOCK_CLIENT_NOT_INIT);
    CHECK(umo_atomic64_destroy(12345, 1), DLOCK_CLIENT_NOT_INIT);
    CHECK(umo_atomic64_release(12345, 1), DLOCK_CLIENT_NOT_INIT);
    CHECK(umo_atomic64_faa(12345, 1, 1, &v), DLOCK_CLIENT_NOT_INIT);
    CHECK(umo_atomic64_cas(12345, 1, 1, 2), DLOCK_CLIENT_NOT_INIT);
    CHECK(umo_atomic64_get_snapshot(12345, 1, &v), DLOCK_CLIENT_NOT_INIT);

    CHECK(client_deinit(12345), -1);
    CHECK(client_deinit(c0), 0);
    CHECK(client_deinit(c0), -1);
    CHECK(client_heartbeat(c0, 5), DLOCK_EINVAL);
    CHECK(trylock(c0, &r, buf), DLOCK_EINVAL);
    r.lock_op = LOCK_EXCLUSIVE;
    CHECK(trylock(c0, &r, buf), DLOCK_CLIENT_NOT_INIT);
    dclient_lib_deinit();
    CHECK(client_heartbeat(c1, 5), -1);
    CHECK(trylock(c1, &r, buf), DLOCK_CLIENTMGR_NOT_INIT);

    /* A refused connection is DLOCK_NOT_READY, for init and reinit. */
    cfg = client_config(stopped_port);
    CHECK(dclient_lib_init(&cfg), 0);
    c0 = 4242;
    CHECK(client_init(&c0, "127.0.0.1"), DLOCK_NOT_READY);
    CHECK(c0, 4242);
    dclient_lib_deinit();
}

int main(int argc, char **argv)
{
    int port1 = arg(argc, argv, 1), port2 = arg(argc, argv, 2), port3 = arg(argc, argv, 3);

    client_calls_before_init();
    client_lib_init_checks(port2);
    server_checks(port1, port2, port3);
    client_checks(port2, port1);

    dserver_lib_deinit();
    dserver_lib_deinit();
    CHECK(server_stop(9), -1);
    CHECK(dserver_lib_init(1), 0);
    {
        struct server_cfg cfg = server_config(port1, 0);
        int id = 0;
        CHECK(SERVER_START(cfg, id), 0);
        CHECK(id, 1); /* the allocator restarts at 1 */
    }
    dserver_lib_deinit();
    return done();
}
