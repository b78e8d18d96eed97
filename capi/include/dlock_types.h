/*
 * dlock_types.h — types and constants of the DLock C ABI, as implemented by
 * github.com/dlock-io/dlock (libdlock.so, installed also as libdlockc.so and
 * libdlocks.so).
 *
 * Layouts, enumerator values and names are those of openEuler UMDK DLock's
 * public header of the same name. Unlike the original, this
 * header is usable from C (C11) as well as from C++: under C++ everything is
 * declared inside namespace dlock and extern "C", exactly as upstream; under C
 * the same declarations are made at file scope, with typedefs so that struct
 * names can be used without the struct keyword.
 */
#ifndef DLOCK_TYPES_H
#define DLOCK_TYPES_H

#ifdef __cplusplus
#include <cstdint>
#include <cstddef>
#else
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#endif

#ifndef DLOCK_EID_SIZE
#define DLOCK_EID_SIZE 16
#endif

#ifdef __cplusplus
namespace dlock {
extern "C" {
#endif

#ifdef __cplusplus
constexpr unsigned int MAX_LOCK_DESC_LEN = 512;
constexpr unsigned int MAX_UMO_ATOMIC64_DESC_LEN = MAX_LOCK_DESC_LEN;
constexpr unsigned int MAX_LOCK_BATCH_SIZE = 31;
constexpr int SLEEP_INTERVAL = 100000; /* microseconds */
#else
#define MAX_LOCK_DESC_LEN 512U
#define MAX_UMO_ATOMIC64_DESC_LEN MAX_LOCK_DESC_LEN
#define MAX_LOCK_BATCH_SIZE 31U
#define SLEEP_INTERVAL 100000 /* microseconds */
#endif

typedef enum dlock_status {
    DLOCK_SUCCESS = 0x0,
    DLOCK_DONE = 0x1,
    DLOCK_EAGAIN = 0x1000,
    DLOCK_ENOMEM = 0x1001,
    DLOCK_ETIMEOUT = 0x1002,
    DLOCK_EINVAL = 0x1003,
    DLOCK_ETICKET = 0x1004,
    DLOCK_EASYNC = 0x1005,
    DLOCK_CLIENT_NOT_INIT = 0x2000,
    DLOCK_LOCK_NOT_GET = 0x2001,
    DLOCK_ALREADY_LOCKED = 0x2002,
    DLOCK_ALREADY_UNLOCKED = 0x2003,
    DLOCK_TICKET_TO_UNLOCK = 0x2004,
    DLOCK_BAD_RESPONSE = 0x2005,
    DLOCK_FAIL = 0x2006,
    DLOCK_CLIENTMGR_NOT_INIT = 0x2007,
    DLOCK_NOT_READY = 0x2008,
    DLOCK_NO_ASYNC = 0x2009,
    DLOCK_ASYNC_AGAIN = 0x200A,
    DLOCK_REPLICA_INIT_FAIL = 0x200B,
    DLOCK_SERVER_NOT_INIT = 0x200C,
    DLOCK_CLIENT_REMOVED_BY_SERVER = 0x200D,
    DLOCK_PROTO_VERSION_NEGOTIATION_FAIL = 0x200E,
    DLOCK_SERVER_NO_RESOURCE = 0x200F,
    DLOCK_OBJECT_ALREADY_EXISTED = 0x3000,
    DLOCK_OBJECT_ALREADY_CREATED = 0x3001,
    DLOCK_OBJECT_NOT_CREATE = 0x3002,
    DLOCK_OBJECT_INVALID_OWNER = 0x3003,
    DLOCK_OBJECT_NOT_GET = 0x3004,
    DLOCK_OBJECT_ALREADY_DESTROYED = 0x3005,
    DLOCK_OBJECT_TOO_MANY = 0x3006,
    DLOCK_OBJECT_CAS_FAILED = 0x3007
} dlock_status_t;

typedef enum debug_stats_code {
    DEBUG_STATS_EAGAIN = 0,
    DEBUG_STATS_NO_URMA_BUF,
    DEBUG_STATS_ENOMEM,
    DEBUG_STATS_ETIMEOUT,
    DEBUG_STATS_EINVAL_LOCK_OP,
    DEBUG_STATS_EINVAL_LOCK_TYPE,
    DEBUG_STATS_EINVAL_LOCK_OFFSET,
    DEBUG_STATS_EINVAL_LOCK_RET,
    DEBUG_STATS_ETICKET,
    DEBUG_STATS_EASYNC,
    DEBUG_STATS_CLIENT_NOT_INIT,
    DEBUG_STATS_LOCK_NOT_GET,
    DEBUG_STATS_ALREADY_LOCKED,
    DEBUG_STATS_ALREADY_UNLOCKED,
    DEBUG_STATS_ATOMIC_TRYLOCK_FAIL,
    DEBUG_STATS_ATOMIC_UNLOCK_FAIL,
    DEBUG_STATS_ATOMIC_EXTEND_FAIL,
    DEBUG_STATS_RW_TRYLOCK_EX_FAIL,
    DEBUG_STATS_RW_UNLOCK_EX_FAIL,
    DEBUG_STATS_RW_TRYLOCK_SH_FAIL,
    DEBUG_STATS_RW_UNLOCK_SH_FAIL,
    DEBUG_STATS_FAIR_QUEUE_LIMIT,
    DEBUG_STATS_FAIR_UNLOCK_EX_FAIL,
    DEBUG_STATS_FAIR_UNLOCK_SH_FAIL,
    DEBUG_STATS_FAIR_EX_TICKET_PASSED,
    DEBUG_STATS_FAIR_SH_TICKET_PASSED,
    DEBUG_STATS_INVALID_LOCK_STATE,
    DEBUG_STATS_TICKET_TO_UNLOCK,
    DEBUG_STATS_NETWORK_FAIL,
    DEBUG_STATS_SEND_FAIL,
    DEBUG_STATS_BAD_RESPONSE,
    DEBUG_STATS_CLIENT_DISCONNECT,
    DEBUG_STATS_FAIL,
    DEBUG_STATS_CLIENTMGR_NOT_INIT,
    DEBUG_STATS_NOT_READY,
    DEBUG_STATS_NO_ASYNC,
    DEBUG_STATS_ASYNC_AGAIN,
    DEBUG_STATS_REPLICA_INIT_FAIL,
    DEBUG_STATS_SERVER_NOT_INIT,
    DEBUG_STATS_ENCRYPT_FAIL,
    DEBUG_STATS_DECRYPT_FAIL,
    DEBUG_STATS_CLIENT_ID_VERIFY_FAIL,
    DEBUG_STATS_BAD_REQUEST,
    DEBUG_STATS_OBJECT_NOT_GET,
    DEBUG_STATS_OBJECT_CAS_FAILED,
    DEBUG_STATS_MAX
} debug_stats_code_t;

enum lock_ops {
    LOCK_EXCLUSIVE = 0,
    LOCK_SHARED = 1,
    UNLOCK = 2,
    EXTEND_LOCK_EXCLUSIVE = 3,
    EXTEND_LOCK_SHARED = 4,
    LOCK_OPS_MAX = 5
};

enum dlock_type {
    DLOCK_ATOMIC = 0,
    DLOCK_RW = 1,
    DLOCK_FAIR = 2,
    DLOCK_MAX = 3
};

enum server_type {
    SERVER_PRIMARY = 0,
    SERVER_REPLICA = 1,
    SERVER_MAX = 2
};

enum thread_type {
    CTRL_THREAD = 0,
    CMD_THREAD = 1
};

/* The spelling SEPERATE_CONN is upstream's. */
typedef enum trans_mode {
    SEPERATE_CONN = 0,
    UNI_CONN = 1
} trans_mode_t;

typedef enum new_jetty_type {
    CLIENT = 0,
    CLIENT_PRIMARY = 1,
    REPLICA_PRIMARY = 2
} new_jetty_t;

/* Lock descriptor for get_lock / batch_get_lock. p_desc holds len bytes
 * (binary, not NUL-terminated). */
struct lock_desc {
    char *p_desc;
    unsigned int len;        /* 1..MAX_LOCK_DESC_LEN */
    unsigned int lock_type;  /* enum dlock_type */
    unsigned int lease_time; /* stored, not enforced */
};

struct lock_request {
    int lock_id;
    int lock_op;              /* enum lock_ops */
    unsigned int expire_time; /* seconds, relative; 0 = peek (trylock/lock) */
};

/* Value of an ATOMIC lock. */
typedef struct {
    int client_id;     /* owner */
    uint32_t time_out; /* absolute expiry, seconds since the epoch */
} atomic_state;

/* Value of an RW lock. */
typedef struct {
    uint32_t time_out;
    int32_t client_id;
    uint32_t rcount;
    uint32_t rsvd;
} rw_state;

/* Value of a FAIR lock. */
typedef struct {
    uint16_t n_exclusive;
    uint16_t n_shared;
    uint16_t m_exclusive;
    uint16_t m_shared;
    uint32_t time_out;
    union {
        uint32_t t_value;
        struct {
            uint16_t rms;
            uint16_t rflag : 1;
            uint16_t rsvd : 9;
            uint16_t rcnt : 6;
        } bs;
    };
} fairlock_state;

typedef union {
    atomic_state atomic;
    rw_state rw;
    fairlock_state fl;
    uint64_t base;
} lock_state;

/* One result of a batch operation (arrays have a stride of 20 bytes). */
struct lock_op_res {
    union {
        atomic_state atomic;
        rw_state rw;
        fairlock_state fl;
    };
    int op_ret;
};

struct lock_context {
    unsigned int lock_type;
    int32_t lock_id;
    uint32_t lease_time;
    unsigned int ref_count;
    lock_state ls;
};

struct err_event {
    uint8_t err_type;
};

typedef int (*callback_func_t)(const struct err_event *event);

typedef int (*tls_cert_verify_callback_func_t)(void *ctx, const char *crl_path);
typedef void (*tls_prkey_pwd_callback_func_t)(char **prkey_pwd, int *prkey_pwd_len);
typedef void (*tls_erase_prkey_callback_func_t)(void *prkey_pwd, int prkey_pwd_len);

struct ssl_cfg {
    bool ssl_enable;
    char *ca_path;
    char *crl_path;   /* may be NULL */
    char *cert_path;
    char *prkey_path;
    tls_cert_verify_callback_func_t cert_verify_cb; /* may be NULL */
    tls_prkey_pwd_callback_func_t prkey_pwd_cb;     /* required when ssl_enable */
    tls_erase_prkey_callback_func_t erase_prkey_cb; /* required when ssl_enable */
};

/* An endpoint id: an IPv6 address in network byte order; IPv4 addresses are
 * IPv4-mapped (::ffff:a.b.c.d). All zero = unset. */
typedef union dlock_eid {
    uint8_t raw[DLOCK_EID_SIZE];
    struct {
        uint64_t reserved;
        uint32_t prefix;
        uint32_t addr;
    } in4;
    struct {
        uint64_t subnet_prefix;
        uint64_t interface_id;
    } in6;
} dlock_eid_t;

struct client_cfg {
    char *dev_name;    /* network interface name, may be NULL */
    dlock_eid_t eid;   /* local address, all zero = unset */
    int log_level;     /* syslog level 0..7 */
    int primary_port;  /* <= 0: 21616 */
    struct ssl_cfg ssl;
    trans_mode_t tp_mode;
    bool ub_token_disable;
};

struct primary_cfg {
    unsigned int num_of_replica;      /* must be 0 */
    unsigned int recovery_client_num; /* 0..1000 */
    char *ctrl_cpuset;                /* may be NULL */
    char *cmd_cpuset;                 /* may be NULL */
    char *server_ip_str;              /* dotted IPv4 */
    int server_port;                  /* <= 0: 21616 */
    int replica_port;                 /* range-checked, unused */
    bool replica_enable;              /* must be false */
};

struct replica_cfg {
    char *primary_ip_str;
    int primary_port;
};

struct server_cfg {
    enum server_type type;
    char *dev_name;
    dlock_eid_t eid;
    int log_level;
    bool sleep_mode_enable;
    union {
        struct primary_cfg primary;
        struct replica_cfg replica;
    };
    struct ssl_cfg ssl;
    trans_mode_t tp_mode;
    bool ub_token_disable;
};

struct umo_atomic64_desc {
    char *p_desc;
    uint32_t len;        /* 1..MAX_UMO_ATOMIC64_DESC_LEN */
    uint32_t lease_time; /* seconds, > 0 */
};

struct debug_stats {
    uint64_t stats[DEBUG_STATS_MAX];
};

#ifndef __cplusplus
/* C spellings of the C++ type names. */
typedef struct lock_desc lock_desc;
typedef struct lock_request lock_request;
typedef struct lock_op_res lock_op_res;
typedef struct lock_context lock_context;
typedef struct err_event err_event;
typedef struct ssl_cfg ssl_cfg;
typedef struct client_cfg client_cfg;
typedef struct primary_cfg primary_cfg;
typedef struct replica_cfg replica_cfg;
typedef struct server_cfg server_cfg;
typedef struct umo_atomic64_desc umo_atomic64_desc;
typedef struct debug_stats debug_stats;
#endif

#ifdef __cplusplus
} /* extern "C" */
} /* namespace dlock */
#endif

#endif /* DLOCK_TYPES_H */
