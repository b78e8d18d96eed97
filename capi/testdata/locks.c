/* A server and three clients in one process: the three lock types, reentry,
 * peeks, extends, the fair ticket sequence of SEMANTICS.md §5.7, and the
 * blocking lock waiting on the server. argv: a free port. */
#include <pthread.h>
#include <time.h>

#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

static int c[3];

/* fill a result buffer with a pattern, to see which bytes the call writes */
static void pattern(void *p) { memset(p, 0xAB, 20); }

static int get(int client, const char *name, unsigned int type)
{
    struct lock_desc d = desc_of(name, type);
    int id = 0;
    CHECK(get_lock(client, &d, &id), 0);
    return id;
}

static void atomic_lock(void)
{
    int id = get(c[0], "atomic 1", DLOCK_ATOMIC);
    struct lock_request r = req_of(id, LOCK_EXCLUSIVE, 10);
    struct lock_op_res res;
    unsigned int now = (unsigned int)time(NULL);

    if ((int)djb2("atomic 1") > 0)
        CHECK(id, (int)djb2("atomic 1")); /* a free positive hash is the id */
    CHECK(get(c[1], "atomic 1", DLOCK_ATOMIC), id);

    pattern(&res);
    CHECK(trylock(c[0], &r, &res), DLOCK_SUCCESS);
    CHECK(res.atomic.client_id, c[0]);
    CHECK_TRUE(res.atomic.time_out >= now + 9 && res.atomic.time_out <= now + 12);
    CHECK(res.rw.rcount, 0xABABABABu); /* ATOMIC writes 8 bytes only */
    CHECK(res.op_ret, (int)0xABABABAB);
    CHECK(trylock(c[0], &r, &res), DLOCK_ALREADY_LOCKED); /* reentrant */
    CHECK(trylock(c[1], &r, &res), DLOCK_FAIL);
    r.lock_op = LOCK_SHARED;
    CHECK(trylock(c[1], &r, &res), DLOCK_EINVAL);
    /* expire_time 0 is a peek: SUCCESS, the cached value, nothing taken */
    r = req_of(id, LOCK_EXCLUSIVE, 0);
    pattern(&res);
    CHECK(trylock(c[1], &r, &res), DLOCK_SUCCESS);
    CHECK(res.atomic.client_id, 0);
    CHECK(lock(c[1], &r, &res), DLOCK_SUCCESS);
    CHECK(unlock(c[1], id, &res), DLOCK_ALREADY_UNLOCKED);
    CHECK(trylock(c[0], &r, &res), DLOCK_SUCCESS);
    CHECK(res.atomic.client_id, c[0]);

    r = req_of(id, EXTEND_LOCK_EXCLUSIVE, 70);
    CHECK(lock_extend(c[0], &r, &res), DLOCK_SUCCESS);
    CHECK_TRUE(res.atomic.time_out >= now + 69);
    r.expire_time = 0;
    CHECK(lock_extend(c[0], &r, &res), DLOCK_SUCCESS); /* ownership check only */
    r.lock_op = EXTEND_LOCK_SHARED;
    CHECK(lock_extend(c[0], &r, &res), DLOCK_EINVAL);
    r.lock_op = EXTEND_LOCK_EXCLUSIVE;
    CHECK(lock_extend(c[1], &r, &res), DLOCK_EINVAL); /* not held */

    CHECK(unlock(c[0], id, &res), DLOCK_ALREADY_LOCKED); /* one hold left */
    CHECK(release_lock(c[0], id), -1);
    pattern(&res);
    CHECK(unlock(c[0], id, &res), DLOCK_SUCCESS);
    CHECK(res.atomic.client_id, 0);
    CHECK(unlock(c[0], id, &res), DLOCK_ALREADY_UNLOCKED);
    r = req_of(id, LOCK_EXCLUSIVE, 10);
    CHECK(trylock(c[1], &r, &res), DLOCK_SUCCESS);
    CHECK(res.atomic.client_id, c[1]);
    CHECK(unlock(c[1], id, &res), DLOCK_SUCCESS);
    CHECK(release_lock(c[0], id), 0);
    CHECK(release_lock(c[1], id), 0);
}

static void rw_lock(void)
{
    int id = get(c[0], "rw 1", DLOCK_RW);
    struct lock_request sh = req_of(id, LOCK_SHARED, 10), ex = req_of(id, LOCK_EXCLUSIVE, 10);
    struct lock_request ext = req_of(id, EXTEND_LOCK_SHARED, 10);
    rw_state s;

    get(c[1], "rw 1", DLOCK_RW);
    get(c[2], "rw 1", DLOCK_RW);
    memset(&s, 0xAB, sizeof(s));
    CHECK(trylock(c[0], &sh, &s), DLOCK_SUCCESS);
    CHECK(s.rcount, 1);
    CHECK(s.client_id, 0);
    CHECK(s.rsvd, 0xABABABABu); /* RW writes 12 bytes */
    CHECK(trylock(c[1], &sh, &s), DLOCK_SUCCESS);
    CHECK(s.rcount, 2);
    CHECK(trylock(c[2], &ex, &s), DLOCK_FAIL);
    CHECK(trylock(c[0], &sh, &s), DLOCK_ALREADY_LOCKED); /* local reentry */
    CHECK(trylock(c[0], &ex, &s), DLOCK_EINVAL);
    CHECK(lock_extend(c[0], &ext, &s), DLOCK_EINVAL); /* RW has no lease */
    CHECK(unlock(c[0], id, &s), DLOCK_ALREADY_LOCKED);
    CHECK(unlock(c[0], id, &s), DLOCK_SUCCESS);
    CHECK(s.rcount, 1);
    CHECK(unlock(c[1], id, &s), DLOCK_SUCCESS);
    CHECK(s.rcount, 0);
    CHECK(trylock(c[2], &ex, &s), DLOCK_SUCCESS);
    CHECK(s.client_id, c[2]);
    CHECK(trylock(c[2], &ex, &s), DLOCK_ALREADY_LOCKED);
    CHECK(trylock(c[0], &sh, &s), DLOCK_FAIL);
    CHECK(unlock(c[2], id, &s), DLOCK_ALREADY_LOCKED);
    CHECK(unlock(c[2], id, &s), DLOCK_SUCCESS);
    CHECK(unlock(c[2], id, &s), DLOCK_ALREADY_UNLOCKED);
}

/* SEMANTICS.md §5.7, sequence 1 (E = 5). */
static void fair_lock(void)
{
    int id = get(c[0], "fair 1", DLOCK_FAIR);
    struct lock_request ex = req_of(id, LOCK_EXCLUSIVE, 5), sh = req_of(id, LOCK_SHARED, 5);
    struct lock_request peek = req_of(id, LOCK_EXCLUSIVE, 0);
    struct lock_request ext = req_of(id, EXTEND_LOCK_SHARED, 70);
    lock_state s;

    get(c[1], "fair 1", DLOCK_FAIR);
    get(c[2], "fair 1", DLOCK_FAIR);
    CHECK(trylock(c[0], &ex, &s), DLOCK_SUCCESS);
    CHECK(s.fl.m_exclusive, 1);
    CHECK(trylock(c[0], &ex, &s), DLOCK_ALREADY_LOCKED);
    CHECK(trylock(c[0], &peek, &s), DLOCK_SUCCESS);
    CHECK(lock_extend(c[0], &ext, &s), DLOCK_EINVAL);
    ext.lock_op = EXTEND_LOCK_EXCLUSIVE;
    CHECK(lock_extend(c[0], &ext, &s), DLOCK_SUCCESS);
    ext.expire_time = 0;
    CHECK(lock_extend(c[0], &ext, &s), DLOCK_SUCCESS);
    CHECK(trylock(c[0], &sh, &s), DLOCK_EINVAL);
    memset(&s, 0, sizeof(s));
    CHECK(trylock(c[1], &sh, &s), DLOCK_EAGAIN); /* queued: a shared ticket */
    CHECK(s.fl.m_shared, 0);                     /* the ticket number */
    CHECK(trylock(c[1], &ex, &s), DLOCK_ETICKET);
    CHECK(release_lock(c[1], id), DLOCK_TICKET_TO_UNLOCK);
    CHECK(trylock(c[2], &ex, &s), DLOCK_EAGAIN);
    CHECK(s.fl.m_exclusive, 1);
    CHECK(unlock(c[0], id, &s), DLOCK_ALREADY_LOCKED);
    CHECK(unlock(c[0], id, &s), DLOCK_SUCCESS);
    CHECK(s.fl.n_exclusive, 1);
    CHECK(trylock(c[1], &sh, &s), DLOCK_SUCCESS); /* its ticket's turn */
    CHECK(s.fl.bs.rcnt, 1);
    CHECK(unlock(c[1], id, &s), DLOCK_SUCCESS);
    CHECK(unlock(c[2], id, &s), DLOCK_SUCCESS); /* ticket abandoned locally */
    CHECK(unlock(c[2], id, &s), DLOCK_ALREADY_UNLOCKED);
}

struct unlocker {
    int client, lock_id;
    double delay;
};

static void *unlock_later(void *p)
{
    struct unlocker *u = (struct unlocker *)p;
    lock_state s;
    usleep((useconds_t)(u->delay * 1e6));
    CHECK(unlock(u->client, u->lock_id, &s), DLOCK_SUCCESS);
    return NULL;
}

/* lock() waits on the server: it is granted as soon as the holder unlocks. */
static void blocking_lock(void)
{
    int id = get(c[0], "blocking", DLOCK_ATOMIC);
    struct lock_request r = req_of(id, LOCK_EXCLUSIVE, 30);
    struct unlocker u = {c[0], id, 0.5};
    pthread_t th;
    atomic_state s;
    double t0;

    get(c[1], "blocking", DLOCK_ATOMIC);
    CHECK(lock(c[0], &r, &s), DLOCK_SUCCESS);
    CHECK(pthread_create(&th, NULL, unlock_later, &u), 0);
    t0 = now_seconds();
    CHECK(lock(c[1], &r, &s), DLOCK_SUCCESS);
    CHECK(s.client_id, c[1]);
    CHECK_TRUE(now_seconds() - t0 >= 0.4 && now_seconds() - t0 < 3);
    pthread_join(th, NULL);
    CHECK(unlock(c[1], id, &s), DLOCK_SUCCESS);
    /* lock() on a lock never got is retried for the whole budget, as upstream */
    r.lock_id = 12345;
    t0 = now_seconds();
    CHECK(lock(c[1], &r, &s), DLOCK_LOCK_NOT_GET);
    CHECK_TRUE(now_seconds() - t0 >= 4.9);
}

struct timeout_case {
    int holder, waiter, lock_id, want;
    double elapsed;
};

static void *lock_times_out(void *p)
{
    struct timeout_case *tc = (struct timeout_case *)p;
    struct lock_request r = req_of(tc->lock_id, LOCK_EXCLUSIVE, 30);
    lock_state s;
    double t0 = now_seconds();
    CHECK(lock(tc->waiter, &r, &s), tc->want);
    tc->elapsed = now_seconds() - t0;
    return NULL;
}

/* The 5-second budget: an atomic lock held elsewhere → DLOCK_FAIL; a fair
 * one → DLOCK_EAGAIN and the ticket is kept. Both run at once. */
static void blocking_timeouts(void)
{
    int a = get(c[0], "held atomic", DLOCK_ATOMIC), f = get(c[0], "held fair", DLOCK_FAIR);
    struct lock_request ra = req_of(a, LOCK_EXCLUSIVE, 60), rf = req_of(f, LOCK_EXCLUSIVE, 60);
    struct timeout_case ta = {c[0], c[1], a, DLOCK_FAIL, 0}, tf = {c[0], c[2], f, DLOCK_EAGAIN, 0};
    pthread_t th1, th2;
    lock_state s;

    get(c[1], "held atomic", DLOCK_ATOMIC);
    get(c[2], "held fair", DLOCK_FAIR);
    CHECK(trylock(c[0], &ra, &s), DLOCK_SUCCESS);
    CHECK(trylock(c[0], &rf, &s), DLOCK_SUCCESS);
    pthread_create(&th1, NULL, lock_times_out, &ta);
    pthread_create(&th2, NULL, lock_times_out, &tf);
    pthread_join(th1, NULL);
    pthread_join(th2, NULL);
    CHECK_TRUE(ta.elapsed >= 4.9 && ta.elapsed < 8);
    CHECK_TRUE(tf.elapsed >= 4.9 && tf.elapsed < 8);
    CHECK(release_lock(c[2], f), DLOCK_TICKET_TO_UNLOCK); /* the ticket is kept */
    CHECK(unlock(c[2], f, &s), DLOCK_SUCCESS);           /* and given up */
    CHECK(release_lock(c[2], f), 0);
}

static void *timeouts_thread(void *p)
{
    (void)p;
    blocking_timeouts();
    return NULL;
}

int main(int argc, char **argv)
{
    struct server_cfg scfg = server_config(arg(argc, argv, 1), 0);
    struct client_cfg ccfg = client_config(arg(argc, argv, 1));
    int sid = 0, i;
    pthread_t th;

    CHECK(dserver_lib_init(1), 0);
    CHECK(SERVER_START(scfg, sid), 0);
    CHECK(dclient_lib_init(&ccfg), 0);
    for (i = 0; i < 3; i++)
        CHECK(client_init(&c[i], "127.0.0.1"), 0);

    pthread_create(&th, NULL, timeouts_thread, NULL);
    atomic_lock();
    rw_lock();
    fair_lock();
    pthread_join(th, NULL);
    blocking_lock();

    for (i = 0; i < 3; i++)
        CHECK(client_deinit(c[i]), 0);
    dclient_lib_deinit();
    CHECK(server_stop(sid), 0);
    dserver_lib_deinit();
    return done();
}
