/*
 * dlock_client_api.h — DLock client API (C linkage), as implemented by
 * github.com/dlock-io/dlock. Signatures, symbols and return codes are those
 * of openEuler UMDK DLock's header of the same name; usable from C and C++.
 *
 * Functions return DLOCK_SUCCESS (0), a dlock_status_t value, or a plain -1.
 */
#ifndef DLOCK_CLIENT_API_H
#define DLOCK_CLIENT_API_H

#include "dlock_types.h"

#ifdef __cplusplus
namespace dlock {
extern "C" {
#endif

/* Client library (one per process). */
int dclient_lib_init(const struct client_cfg *p_client_cfg);
void dclient_lib_deinit(void);

/* Client instances; a client id is the handle of one instance. */
int client_init(int *p_client_id, const char *ip_str);
int client_reinit(int client_id, const char *ip_str);
int client_deinit(int client_id);
int client_heartbeat(int client_id, unsigned int timeout);
int client_reinit_done(int client_id);

/* Lock lifecycle. */
int get_lock(int client_id, const struct lock_desc *desc, int *lock_id);
int release_lock(int client_id, int lock_id);
int update_all_locks(int client_id);

/* Debug statistics (at most 10000 calls per second per process). */
int get_client_debug_stats(int client_id, struct debug_stats *stats);
int clear_client_debug_stats(int client_id);

/* Lock operations. result points to a lock-state buffer of at least 16
 * bytes (atomic_state, rw_state, fairlock_state, lock_state or
 * struct lock_op_res). */
int trylock(int client_id, const struct lock_request *req, void *result);
int lock(int client_id, const struct lock_request *req, void *result);
int unlock(int client_id, int lock_id, void *result);
int lock_extend(int client_id, const struct lock_request *req, void *result);

/* Batches of 1..MAX_LOCK_BATCH_SIZE entries; results is an array of
 * lock_num struct lock_op_res. */
int batch_get_lock(int client_id, unsigned int lock_num, const struct lock_desc *descs, int *lock_ids);
int batch_release_lock(int client_id, unsigned int lock_num, int *lock_ids);
int batch_trylock(int client_id, unsigned int lock_num, const struct lock_request *reqs, void *results);
int batch_unlock(int client_id, unsigned int lock_num, const int *lock_ids, void *results);
int batch_lock_extend(int client_id, unsigned int lock_num, const struct lock_request *reqs, void *results);

/* Asynchronous lock operation: one outstanding per client instance. */
int lock_request_async(int client_id, const struct lock_request *req);
int lock_result_check(int client_id, void *result);

/* Distributed 64-bit objects. */
int umo_atomic64_create(int client_id, const struct umo_atomic64_desc *desc, uint64_t init_val, int *obj_id);
int umo_atomic64_destroy(int client_id, int obj_id);
int umo_atomic64_get(int client_id, const struct umo_atomic64_desc *desc, int *obj_id);
int umo_atomic64_release(int client_id, int obj_id);
int umo_atomic64_faa(int client_id, int obj_id, uint64_t add_val, uint64_t *res_val);
int umo_atomic64_cas(int client_id, int obj_id, uint64_t cmp_val, uint64_t swap_val);
int umo_atomic64_get_snapshot(int client_id, int obj_id, uint64_t *res_val);

#ifdef __cplusplus
} /* extern "C" */
} /* namespace dlock */
#endif

#endif /* DLOCK_CLIENT_API_H */
