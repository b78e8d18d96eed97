/* A slot moves while a C program holds locks in it. Two shards, one dlockd
 * each, on 127.0.0.1 and .2 at the same port; the locks' slot is s0's.
 * argv: port; an ATOMIC and an RW lock name of that slot; a file the program
 * creates once it holds both; a file the Go test creates once the slot
 * moved to s1 (the program waits for it, at most 90 s).
 * Client c0 holds both locks, idle, while the slot moves; client c1 cannot
 * take them before, during or after the move. Afterwards c0 still holds
 * both (the library handed the holds over to s1): lock_extend succeeds, the
 * C ids stay the same and distinct (get_lock again answers -1 with the same
 * id), the unlocks succeed, and c1 then takes both. */
#include "dlock_client_api.h"

#include "check.h"

static int get(int client, const char *name, unsigned int type)
{
    struct lock_desc d = desc_of(name, type);
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

static int exists(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f)
        fclose(f);
    return f != NULL;
}

int main(int argc, char **argv)
{
    int port = arg(argc, argv, 1);
    struct client_cfg ccfg = client_config(port);
    int c0 = 0, c1 = 0, a0, b0, a1, b1, tries, id, rc;
    lock_state s;
    FILE *f;

    if (argc < 6) {
        fprintf(stderr, "usage: shards_move port atomic rw held-file moved-file\n");
        return 2;
    }
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK(client_init(&c1, "127.0.0.2"), 0);
    a0 = get(c0, argv[2], DLOCK_ATOMIC);
    b0 = get(c0, argv[3], DLOCK_RW);
    a1 = get(c1, argv[2], DLOCK_ATOMIC);
    b1 = get(c1, argv[3], DLOCK_RW);
    CHECK_TRUE(a0 != b0);
    CHECK(try_x(c0, a0), 0);
    CHECK(try_x(c0, b0), 0);
    CHECK(try_x(c1, a1), DLOCK_FAIL);
    CHECK(try_x(c1, b1), DLOCK_FAIL);

    f = fopen(argv[4], "w");
    CHECK_TRUE(f != NULL);
    if (f)
        fclose(f);
    /* c0 stays idle; c1 keeps trying (NOT_READY while s1 waits its grace,
     * FAIL otherwise: never granted) */
    for (tries = 0; !exists(argv[5]) && tries < 900; tries++) {
        rc = try_x(c1, a1);
        CHECK_TRUE(rc == DLOCK_FAIL || rc == DLOCK_NOT_READY);
        rc = try_x(c1, b1);
        CHECK_TRUE(rc == DLOCK_FAIL || rc == DLOCK_NOT_READY);
        usleep(100000);
    }
    CHECK_TRUE(exists(argv[5]));

    /* the holds went over to s1 with the locks' handles: same C ids */
    {
        struct lock_desc d = desc_of(argv[2], DLOCK_ATOMIC);
        id = 0;
        CHECK(get_lock(c0, &d, &id), -1);
        CHECK(id, a0);
        d = desc_of(argv[3], DLOCK_RW);
        id = 0;
        CHECK(get_lock(c0, &d, &id), -1);
        CHECK(id, b0);
    }
    {
        struct lock_request r = req_of(a0, EXTEND_LOCK_EXCLUSIVE, 60);
        CHECK(lock_extend(c0, &r, &s), 0);
    }
    CHECK(try_x(c1, a1), DLOCK_FAIL);
    CHECK(try_x(c1, b1), DLOCK_FAIL);
    CHECK(unlock(c0, a0, &s), 0);
    CHECK(unlock(c0, b0, &s), 0);
    CHECK(try_x(c1, a1), 0);
    CHECK(try_x(c1, b1), 0);
    CHECK(unlock(c1, a1, &s), 0);
    CHECK(unlock(c1, b1, &s), 0);
    CHECK(client_deinit(c0), 0);
    CHECK(client_deinit(c1), 0);
    return done();
}
