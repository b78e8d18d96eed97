/* A sharded cluster: three shards, one dlockd each, on 127.0.0.1, .2 and .3
 * at the same port. client_init names any member; the library routes every
 * lock and object by name to the shard that owns it and hands ids unique
 * across the shards.
 * argv: port; three lock names, owned by shards s0, s1 and s2; two names
 * with the same djb2 hash owned by different shards; an object name owned
 * by a shard other than s0; the pid of shard s1's primary (on 127.0.0.2;
 * its standby is on 127.0.0.4). The batch names "shard batch <i>" span the
 * three shards (the Go test checks).
 * At the end the program kills s1's primary (SIGKILL): client_reinit on the
 * standby's address re-registers every shard's session, update_all_locks
 * uploads to the new primary of s1, and every hold on the three shards is
 * kept. */
#include <signal.h>
#include <sys/types.h>

#include "dlock_client_api.h"

#include "check.h"

#define N ((int)MAX_LOCK_BATCH_SIZE)

static int get(int client, const char *name)
{
    struct lock_desc d = desc_of(name, DLOCK_ATOMIC);
    int id = 0;
    CHECK(get_lock(client, &d, &id), 0);
    return id;
}

static int try_x(int client, int id)
{
    struct lock_request r = req_of(id, LOCK_EXCLUSIVE, 60);
    lock_state s;
    return trylock(client, &r, &s);
}

/* recover runs the recovery calls of a client after a failover, retrying
 * while the new primary is not ready (at most 20 s each). */
static void recover(int client, const char *ip)
{
    int rc, tries = 0;
    while ((rc = client_reinit(client, ip)) == DLOCK_NOT_READY && tries++ < 400)
        usleep(50000);
    CHECK(rc, 0);
    tries = 0;
    while ((rc = update_all_locks(client)) == DLOCK_EAGAIN && tries++ < 200)
        usleep(100000);
    CHECK(rc, 0);
    CHECK(client_reinit_done(client), 0);
}

static int unlock_x(int client, int id)
{
    lock_state s;
    return unlock(client, id, &s);
}

int main(int argc, char **argv)
{
    int port = arg(argc, argv, 1);
    const char *names[3] = {argv[2], argv[3], argv[4]};
    const char *coll[2] = {argv[5], argv[6]};
    struct umo_atomic64_desc od = {argv[7], (uint32_t)strlen(argv[7]), 30};
    struct client_cfg ccfg = client_config(port);
    int c0 = 0, c1 = 0, i, ids[3], ids1[3], cid[2], cid1[2], obj = 0, obj2 = 0, obj1 = 0;
    char bnames[N][32];
    struct lock_desc descs[N];
    int bids[N], bids1[N], rel[N];
    struct lock_request reqs[N];
    struct lock_op_res res[N];
    uint64_t v = 0;
    struct debug_stats st;
    lock_state s;

    if (argc < 9) {
        fprintf(stderr, "usage: shards port name0 name1 name2 collA collB object s1pid\n");
        return 2;
    }
    CHECK(dclient_lib_init(&ccfg), 0);
    /* any member will do: the map comes from it */
    CHECK(client_init(&c0, "127.0.0.2"), 0);
    CHECK(client_init(&c1, "127.0.0.3"), 0);
    CHECK_TRUE(c0 != c1);
    CHECK(client_heartbeat(c0, 5), 0);

    /* one lock on each shard, exclusive across the two clients */
    for (i = 0; i < 3; i++) {
        ids[i] = get(c0, names[i]);
        ids1[i] = get(c1, names[i]);
        /* without a collision the id is the server's: the djb2 hash */
        if ((int)djb2(names[i]) > 0)
            CHECK(ids[i], (int)djb2(names[i]));
        CHECK(ids1[i], ids[i]);
    }
    {
        /* getting a lock twice: -1 with its id */
        struct lock_desc d = desc_of(names[2], DLOCK_ATOMIC);
        int id = 0;
        CHECK(get_lock(c0, &d, &id), -1);
        CHECK(id, ids[2]);
    }
    CHECK(clear_client_debug_stats(c1), 0);
    for (i = 0; i < 3; i++) {
        CHECK(try_x(c0, ids[i]), 0);
        CHECK(try_x(c1, ids1[i]), DLOCK_FAIL);
    }
    /* the counters are the sum of the shards' */
    memset(&st, 0xff, sizeof(st));
    CHECK(get_client_debug_stats(c1, &st), 0);
    CHECK(st.stats[DEBUG_STATS_EINVAL_LOCK_RET], 3);
    CHECK(clear_client_debug_stats(c1), 0);
    CHECK(get_client_debug_stats(c1, &st), 0);
    CHECK(st.stats[DEBUG_STATS_EINVAL_LOCK_RET], 0);
    for (i = 0; i < 3; i++) {
        CHECK(unlock_x(c0, ids[i]), 0);
        CHECK(try_x(c1, ids1[i]), 0);
        CHECK(try_x(c0, ids[i]), DLOCK_FAIL);
        CHECK(unlock_x(c1, ids1[i]), 0);
    }

    /* an async lock on the last shard's lock */
    {
        struct lock_request r = req_of(ids[2], LOCK_EXCLUSIVE, 60);
        int rc, tries = 0;
        CHECK(lock_request_async(c0, &r), 0);
        while ((rc = lock_result_check(c0, &s)) == DLOCK_ASYNC_AGAIN && tries++ < 500)
            usleep(10000);
        CHECK(rc, 0);
        CHECK(try_x(c1, ids1[2]), DLOCK_FAIL);
        CHECK(unlock_x(c0, ids[2]), 0);
    }

    /* two names with one djb2 hash on two shards: each server gives the
     * hash as the id; the library hands C two different ids */
    CHECK(djb2(coll[0]), djb2(coll[1]));
    for (i = 0; i < 2; i++) {
        cid[i] = get(c0, coll[i]);
        cid1[i] = get(c1, coll[i]);
    }
    CHECK_TRUE(cid[0] != cid[1]);
    CHECK_TRUE(cid1[0] != cid1[1]);
    CHECK(try_x(c0, cid[0]), 0);
    CHECK(try_x(c0, cid[1]), 0); /* not DLOCK_ALREADY_LOCKED: another lock */
    CHECK(try_x(c1, cid1[0]), DLOCK_FAIL);
    CHECK(try_x(c1, cid1[1]), DLOCK_FAIL);
    CHECK(unlock_x(c0, cid[1]), 0);
    CHECK(try_x(c1, cid1[1]), 0);
    CHECK(try_x(c1, cid1[0]), DLOCK_FAIL);
    CHECK(unlock_x(c0, cid[0]), 0);
    CHECK(unlock_x(c1, cid1[1]), 0);
    for (i = 0; i < 2; i++) {
        CHECK(release_lock(c0, cid[i]), 0);
        CHECK(release_lock(c1, cid1[i]), 0);
    }

    /* a batch of 31 spanning the shards, every entry answered in order */
    for (i = 0; i < N; i++) {
        snprintf(bnames[i], sizeof(bnames[i]), "shard batch %d", i);
        descs[i] = desc_of(bnames[i], DLOCK_ATOMIC);
    }
    CHECK(batch_get_lock(c0, N, descs, bids), 0);
    CHECK(batch_get_lock(c1, N, descs, bids1), 0);
    for (i = 0; i < N; i++) {
        CHECK_TRUE(bids[i] > 0);
        CHECK(bids1[i], bids[i]);
    }
    for (i = 0; i < N; i += 4) /* c1 holds every fourth */
        CHECK(try_x(c1, bids1[i]), 0);
    for (i = 0; i < N; i++)
        reqs[i] = req_of(bids[i], LOCK_EXCLUSIVE, 60);
    memset(res, 0, sizeof(res));
    CHECK(batch_trylock(c0, N, reqs, res), 0);
    for (i = 0; i < N; i++)
        CHECK(res[i].op_ret, i % 4 == 0 ? DLOCK_FAIL : 0);
    for (i = 0; i < N; i++)
        reqs[i] = req_of(bids[i], EXTEND_LOCK_EXCLUSIVE, 90);
    memset(res, 0, sizeof(res));
    CHECK(batch_lock_extend(c0, N, reqs, res), 0);
    for (i = 0; i < N; i++)
        CHECK_TRUE(i % 4 == 0 ? res[i].op_ret != 0 : res[i].op_ret == 0);
    memset(res, 0, sizeof(res));
    CHECK(batch_unlock(c0, N, bids, res), 0);
    for (i = 0; i < N; i++)
        CHECK_TRUE(i % 4 == 0 ? res[i].op_ret != 0 : res[i].op_ret == 0);
    for (i = 0; i < N; i += 4) {
        CHECK(unlock_x(c1, bids1[i]), 0);
        CHECK(try_x(c0, bids[i]), 0);
        CHECK(unlock_x(c0, bids[i]), 0);
    }
    memcpy(rel, bids, sizeof(rel));
    CHECK(batch_release_lock(c0, N, rel), 0);
    memcpy(rel, bids1, sizeof(rel));
    CHECK(batch_release_lock(c1, N, rel), 0);
    for (i = 0; i < N; i++)
        CHECK(try_x(c0, bids[i]), DLOCK_LOCK_NOT_GET);

    /* an atomic64 object on a shard other than the first */
    CHECK(umo_atomic64_create(c0, &od, 40, &obj), 0);
    CHECK(umo_atomic64_get(c0, &od, &obj2), 0);
    CHECK(obj2, obj);
    CHECK(umo_atomic64_get(c1, &od, &obj1), 0);
    CHECK(umo_atomic64_faa(c0, obj, 2, &v), 0);
    CHECK(v, 40);
    CHECK(umo_atomic64_faa(c1, obj1, 3, &v), 0);
    CHECK(v, 42);
    CHECK(umo_atomic64_cas(c1, obj1, 45, 100), 0);
    CHECK(umo_atomic64_cas(c1, obj1, 45, 7), DLOCK_OBJECT_CAS_FAILED);
    CHECK(umo_atomic64_get_snapshot(c0, obj, &v), 0);
    CHECK(v, 100);
    CHECK(umo_atomic64_release(c1, obj1), 0);
    CHECK(umo_atomic64_release(c0, obj), 0);
    CHECK(umo_atomic64_get_snapshot(c0, obj, &v), DLOCK_OBJECT_NOT_GET);
    CHECK(umo_atomic64_destroy(c1, obj1), DLOCK_OBJECT_INVALID_OWNER);
    CHECK(umo_atomic64_destroy(c0, obj), 0);
    CHECK(umo_atomic64_get(c1, &od, &obj1), DLOCK_OBJECT_NOT_CREATE);
    CHECK(umo_atomic64_destroy(c0, 1234567), DLOCK_OBJECT_NOT_CREATE);

    /* c0 holds a lock on each shard; s1's primary dies */
    for (i = 0; i < 3; i++)
        CHECK(try_x(c0, ids[i]), 0);
    CHECK(kill((pid_t)arg(argc, argv, 8), SIGKILL), 0);
    recover(c0, "127.0.0.4");
    recover(c1, "127.0.0.4");
    CHECK(client_heartbeat(c0, 5), 0);
    for (i = 0; i < 3; i++) {
        CHECK(try_x(c1, ids1[i]), DLOCK_FAIL); /* kept, s1's too */
        CHECK(unlock_x(c0, ids[i]), 0);
        CHECK(try_x(c1, ids1[i]), 0);
        CHECK(unlock_x(c1, ids1[i]), 0);
    }

    for (i = 0; i < 3; i++) {
        CHECK(release_lock(c0, ids[i]), 0);
        CHECK(release_lock(c1, ids1[i]), 0);
    }
    CHECK(client_heartbeat(c1, 5), 0);
    CHECK(client_deinit(c0), 0);
    CHECK(client_deinit(c1), 0);
    dclient_lib_deinit();
    return done();
}
