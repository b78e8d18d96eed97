/*
 * dlock_server_api.h — DLock server API (C linkage), as implemented by
 * github.com/dlock-io/dlock. Signatures, symbols and return codes are those
 * of openEuler UMDK DLock's header of the same name; usable from C and C++.
 *
 * server_start takes C++ references under C++ (as upstream) and pointers
 * under C: both are the same symbol and the same calling convention.
 */
#ifndef DLOCK_SERVER_API_H
#define DLOCK_SERVER_API_H

#include "dlock_types.h"

#ifdef __cplusplus
namespace dlock {
extern "C" {
#endif

/* Server library (one per process), 1..32 servers. */
int dserver_lib_init(unsigned int max_server_num);
void dserver_lib_deinit(void);

#ifdef __cplusplus
int server_start(const struct server_cfg &cfg, int &server_id);
#else
int server_start(const struct server_cfg *cfg, int *server_id);
#endif
int server_stop(int server_id);

int get_server_debug_stats(int server_id, struct debug_stats *stats);
int clear_server_debug_stats(int server_id);

#ifdef __cplusplus
} /* extern "C" */
} /* namespace dlock */
#endif

#endif /* DLOCK_SERVER_API_H */
