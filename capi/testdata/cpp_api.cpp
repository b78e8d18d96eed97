// The headers from C++: everything in namespace dlock, extern "C" linkage,
// server_start with references, constexpr constants. argv: a free port.
#include <cstdint>
#include <array>
#include <cstring>
#include <string>
#include <type_traits>

#include "dlock_client_api.h"
#include "dlock_server_api.h"

static_assert(sizeof(dlock::lock_desc) == 24, "lock_desc");
static_assert(sizeof(dlock::lock_op_res) == 20, "lock_op_res");
static_assert(sizeof(dlock::client_cfg) == 104, "client_cfg");
static_assert(sizeof(dlock::server_cfg) == 160, "server_cfg");
static_assert(sizeof(dlock::debug_stats) == 360, "debug_stats");
static_assert(dlock::MAX_LOCK_BATCH_SIZE == 31, "MAX_LOCK_BATCH_SIZE");
static_assert(dlock::MAX_LOCK_DESC_LEN == 512, "MAX_LOCK_DESC_LEN");
static_assert(std::is_same<decltype(dlock::MAX_LOCK_DESC_LEN), const unsigned int>::value, "constexpr unsigned");
static_assert(dlock::SLEEP_INTERVAL == 100000, "SLEEP_INTERVAL");
// server_start keeps upstream's C++ signature.
static_assert(std::is_same<decltype(&dlock::server_start), int (*)(const dlock::server_cfg &, int &)>::value,
              "server_start takes references");

using namespace dlock;
#include "check.h"

int main(int argc, char **argv)
{
    int port = arg(argc, argv, 1);
    dlock::server_cfg scfg = server_config(port, 0);
    dlock::client_cfg ccfg = client_config(port);
    int sid = 0, c0 = 0, lid = 0, obj = 0;
    std::string name = "lock desc 1";
    dlock::lock_desc d{};
    d.p_desc = &name[0];
    d.len = static_cast<unsigned int>(name.size());
    d.lock_type = DLOCK_FAIR;
    dlock::lock_request r{};
    dlock::lock_op_res res[2];
    dlock::umo_atomic64_desc od{const_cast<char *>("cpp"), 3, 10};
    uint64_t v = 0;

    CHECK(dlock::dserver_lib_init(1), 0);
    CHECK(dlock::server_start(scfg, sid), DLOCK_SUCCESS);
    CHECK(sid, 1);
    CHECK(dlock::dclient_lib_init(&ccfg), 0);
    CHECK(dlock::client_init(&c0, "127.0.0.1"), 0);
    CHECK(dlock::get_lock(c0, &d, &lid), 0);
    CHECK(lid, 1252963582);
    r.lock_id = lid;
    r.lock_op = dlock::LOCK_SHARED;
    r.expire_time = 10;
    std::memset(res, 0, sizeof(res));
    CHECK(dlock::trylock(c0, &r, &res[0]), dlock::DLOCK_SUCCESS);
    CHECK(res[0].fl.bs.rcnt, 1);
    CHECK(res[0].fl.m_shared, 1);
    CHECK(dlock::lock(c0, &r, &res[0]), dlock::DLOCK_ALREADY_LOCKED);
    CHECK(dlock::batch_unlock(c0, 2, std::array<int, 2>{lid, lid}.data(), res), 0);
    CHECK(res[0].op_ret, DLOCK_ALREADY_LOCKED);
    CHECK(res[1].op_ret, DLOCK_SUCCESS);
    CHECK(dlock::release_lock(c0, lid), 0);
    CHECK(dlock::umo_atomic64_create(c0, &od, 40, &obj), 0);
    CHECK(dlock::umo_atomic64_get(c0, &od, &obj), 0);
    CHECK(dlock::umo_atomic64_faa(c0, obj, 2, &v), 0);
    CHECK(dlock::umo_atomic64_get_snapshot(c0, obj, &v), 0);
    CHECK(v, 42);
    dlock::debug_stats st;
    CHECK(dlock::get_client_debug_stats(c0, &st), 0);
    CHECK(dlock::get_server_debug_stats(sid, &st), 0);
    CHECK(dlock::client_deinit(c0), 0);
    dlock::dclient_lib_deinit();
    CHECK(dlock::server_stop(sid), 0);
    dlock::dserver_lib_deinit();
    return done();
}
