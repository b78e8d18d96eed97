/* Batches of 31: batch_get_lock, batch_trylock, batch_lock_extend,
 * batch_unlock, batch_release_lock, with per-entry
 * outcomes (SEMANTICS.md §6.3). argv: a free port. */
#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

#define N ((int)MAX_LOCK_BATCH_SIZE)

int main(int argc, char **argv)
{
    struct server_cfg scfg = server_config(arg(argc, argv, 1), 0);
    struct client_cfg ccfg = client_config(arg(argc, argv, 1));
    int sid = 0, c0 = 0, c1 = 0, i;
    char names[N][32];
    struct lock_desc descs[N];
    int ids[N], ids1[N], rel[N];
    struct lock_request reqs[N], r1;
    struct lock_op_res res[N];
    lock_state s;

    CHECK(dserver_lib_init(1), 0);
    CHECK(SERVER_START(scfg, sid), 0);
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK(client_init(&c1, "127.0.0.1"), 0);

    /* 31 locks of all three types in one request */
    for (i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "batch lock %d", i);
        descs[i] = desc_of(names[i], (unsigned int)(i % 3));
    }
    CHECK(batch_get_lock(c0, N, descs, ids), 0);
    for (i = 0; i < N; i++) {
        CHECK_TRUE(ids[i] > 0);
        if ((int)djb2(names[i]) > 0)
            CHECK(ids[i], (int)djb2(names[i]));
    }
    CHECK(batch_get_lock(c0, N, descs, ids1), 0); /* twice is fine */
    CHECK(memcmp(ids, ids1, sizeof(ids)), 0);
    {
        /* a type mismatch fails that entry only */
        struct lock_desc two[2] = {descs[0], descs[1]};
        int got[2];
        two[1].lock_type = (descs[1].lock_type + 1) % 3;
        CHECK(batch_get_lock(c1, 2, two, got), 0);
        CHECK(got[0], ids[0]);
        CHECK(got[1], -1);
    }
    {
        /* mixed types and leases in one request, handled in array order:
         * entry 1 creates "batch order" as ATOMIC, so entry 3 (RW) fails;
         * entry 2 mismatches an existing lock. Sent as one request per type,
         * the RW entries 0 and 3 would have gone first and entry 1 would
         * have failed instead. */
        struct lock_desc mix[4] = {desc_of("batch new rw", DLOCK_RW), desc_of("batch order", DLOCK_ATOMIC),
                                   descs[2], desc_of("batch order", DLOCK_RW)};
        int got[4];
        mix[1].lease_time = 5;
        mix[2].lock_type = DLOCK_ATOMIC; /* descs[2] is FAIR */
        CHECK(batch_get_lock(c1, 4, mix, got), 0);
        CHECK_TRUE(got[0] > 0);
        CHECK_TRUE(got[1] > 0);
        if ((int)djb2("batch order") > 0)
            CHECK(got[1], (int)djb2("batch order"));
        CHECK(got[2], -1);
        CHECK(got[3], -1);
        r1 = req_of(got[1], LOCK_EXCLUSIVE, 30);
        CHECK(trylock(c1, &r1, &s), DLOCK_SUCCESS); /* the ATOMIC one */
        CHECK(unlock(c1, got[1], &s), DLOCK_SUCCESS);
        r1 = req_of(got[0], LOCK_SHARED, 30);
        CHECK(trylock(c1, &r1, &s), DLOCK_SUCCESS); /* the RW one */
        CHECK(unlock(c1, got[0], &s), DLOCK_SUCCESS);
        CHECK(batch_release_lock(c1, 2, got), 0);
    }
    CHECK(batch_get_lock(c1, N, descs, ids1), 0);

    /* batch_trylock: every entry is taken (ATOMIC and FAIR exclusive, RW shared) */
    for (i = 0; i < N; i++)
        reqs[i] = req_of(ids[i], descs[i].lock_type == DLOCK_RW ? LOCK_SHARED : LOCK_EXCLUSIVE, 30);
    memset(res, 0xAB, sizeof(res));
    CHECK(batch_trylock(c0, N, reqs, res), 0);
    for (i = 0; i < N; i++) {
        CHECK(res[i].op_ret, DLOCK_SUCCESS);
        if (descs[i].lock_type == DLOCK_ATOMIC)
            CHECK(res[i].atomic.client_id, c0);
        if (descs[i].lock_type == DLOCK_RW)
            CHECK(res[i].rw.rcount, 1);
        if (descs[i].lock_type == DLOCK_FAIR)
            CHECK(res[i].fl.m_exclusive, 1);
    }
    /* the other client: ATOMIC fails, RW shared succeeds, FAIR queues */
    CHECK(batch_trylock(c1, N, reqs, res), 0);
    for (i = 0; i < N; i++) {
        int want = descs[i].lock_type == DLOCK_ATOMIC ? DLOCK_FAIL
                   : descs[i].lock_type == DLOCK_RW ? DLOCK_SUCCESS
                                                    : DLOCK_EAGAIN;
        CHECK(res[i].op_ret, want);
    }
    /* reentry, a peek, an entry not got and an ATOMIC shared in one batch */
    reqs[0].expire_time = 0;   /* ATOMIC peek */
    reqs[2].lock_id = 4242;    /* not got */
    reqs[3].lock_op = LOCK_SHARED; /* ATOMIC shared */
    memset(res, 0xAB, sizeof(res));
    CHECK(batch_trylock(c0, 5, reqs, res), 0);
    CHECK(res[0].op_ret, DLOCK_SUCCESS);
    CHECK(res[0].atomic.client_id, c0);
    CHECK(res[1].op_ret, DLOCK_ALREADY_LOCKED); /* RW shared local reentry */
    CHECK(res[2].op_ret, DLOCK_LOCK_NOT_GET);
    CHECK(res[2].atomic.client_id, (int)0xABABABAB); /* state untouched */
    CHECK(res[3].op_ret, DLOCK_EINVAL);
    CHECK(res[4].op_ret, DLOCK_ALREADY_LOCKED); /* RW: 4 % 3 == 1 */
    reqs[0].expire_time = 30;
    reqs[2].lock_id = ids[2];
    reqs[3].lock_op = LOCK_EXCLUSIVE;

    /* batch_lock_extend: ATOMIC and FAIR succeed, RW has no lease */
    for (i = 0; i < N; i++)
        reqs[i] = req_of(ids[i], EXTEND_LOCK_EXCLUSIVE, 60);
    CHECK(batch_lock_extend(c0, N, reqs, res), 0);
    for (i = 0; i < N; i++)
        CHECK(res[i].op_ret, descs[i].lock_type == DLOCK_RW ? DLOCK_EINVAL : DLOCK_SUCCESS);
    CHECK(batch_lock_extend(c1, N, reqs, res), 0); /* c1 holds nothing exclusively */
    for (i = 0; i < N; i++)
        CHECK(res[i].op_ret, DLOCK_EINVAL);

    /* batch_release_lock skips locked entries (set to 0) */
    memcpy(rel, ids, sizeof(rel));
    CHECK(batch_release_lock(c0, 3, rel), -1); /* all three still locked */
    CHECK(rel[0], 0);
    CHECK(rel[2], 0);

    /* batch_unlock: c0 releases everything (RW entries 1 and 4 were re-entered) */
    CHECK(batch_unlock(c0, N, ids, res), 0);
    for (i = 0; i < N; i++)
        CHECK(res[i].op_ret, (i == 1 || i == 4) ? DLOCK_ALREADY_LOCKED : DLOCK_SUCCESS);
    CHECK(batch_unlock(c0, 2, ids, res), 0);
    CHECK(res[0].op_ret, DLOCK_ALREADY_UNLOCKED);
    CHECK(res[1].op_ret, DLOCK_SUCCESS);
    /* c1: its RW shared holds unlock, its FAIR tickets are given up, ATOMIC
     * was never held */
    CHECK(batch_unlock(c1, N, ids, res), 0);
    for (i = 0; i < N; i++)
        CHECK(res[i].op_ret, descs[i].lock_type == DLOCK_ATOMIC ? DLOCK_ALREADY_UNLOCKED : DLOCK_SUCCESS);
    CHECK(trylock(c1, &reqs[0], &s), DLOCK_EINVAL); /* extend op: refused */

    memcpy(rel, ids, sizeof(rel));
    rel[5] = 4242; /* not got: zeroed */
    CHECK(batch_release_lock(c0, N, rel), 0);
    CHECK(rel[5], 0);
    CHECK(rel[6], ids[6]);
    CHECK(release_lock(c0, ids[6]), -1); /* gone */
    memcpy(rel, ids, sizeof(rel));
    CHECK(batch_release_lock(c1, N, rel), 0);

    {
        /* batch_release_lock releases a fair lock in the ticketed state,
         * giving the ticket up (release_lock refuses: a DLock quirk) */
        struct lock_desc fd = desc_of("batch fair ticket", DLOCK_FAIR);
        int f = 0, one[1];
        CHECK(get_lock(c0, &fd, &f), 0);
        CHECK(get_lock(c1, &fd, &f), 0);
        r1 = req_of(f, LOCK_EXCLUSIVE, 30);
        CHECK(trylock(c0, &r1, &s), DLOCK_SUCCESS);
        CHECK(trylock(c1, &r1, &s), DLOCK_EAGAIN); /* c1 holds a ticket */
        CHECK(release_lock(c1, f), DLOCK_TICKET_TO_UNLOCK);
        one[0] = f;
        CHECK(batch_release_lock(c1, 1, one), 0);
        CHECK(one[0], f); /* sent, not skipped */
        CHECK(trylock(c1, &r1, &s), DLOCK_LOCK_NOT_GET);
        CHECK(unlock(c0, f, &s), DLOCK_SUCCESS);
        CHECK(release_lock(c0, f), 0);
        /* c1's reference went too: the lock is gone, its type is free again */
        fd.lock_type = DLOCK_ATOMIC;
        CHECK(get_lock(c1, &fd, &f), 0);
        r1 = req_of(f, LOCK_EXCLUSIVE, 30);
        CHECK(trylock(c1, &r1, &s), DLOCK_SUCCESS);
        CHECK(unlock(c1, f, &s), DLOCK_SUCCESS);
        CHECK(release_lock(c1, f), 0);
    }

    CHECK(client_deinit(c0), 0);
    CHECK(client_deinit(c1), 0);
    dclient_lib_deinit();
    dserver_lib_deinit();
    return done();
}
