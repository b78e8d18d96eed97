// Package dlock is a distributed lock service client and the vocabulary every
// dlock user imports: status codes, lock types and modes, lock state values
// and debug counters.
//
// dlock implements the model of openEuler UMDK's DLock over TCP: atomic
// (leased exclusive) locks, reader/writer locks, fair FIFO ticket locks,
// reentrancy, lock extension, batches, distributed 64-bit atomic objects,
// heartbeats, debug statistics and recovery after the primary server dies.
//
// Status codes are errors: every failure the server reports is a [Status],
// and errors.Is(err, dlock.ErrNotReady) works on any error that wraps one.
package dlock
