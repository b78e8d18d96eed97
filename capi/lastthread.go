package main

// The Go runtime's calls to pthread_create go through lastthread.c, which
// records the library's threads so that the process can end once main has
// called pthread_exit and the program's own threads have finished, as a
// plain pthreads program does.

/*
#cgo LDFLAGS: -Wl,--wrap=pthread_create
void dlock_servers_running_add(int delta);
*/
import "C"

// serversRunning counts a server that starts (+1) or has stopped (-1): a
// running server keeps the process alive after main's pthread_exit, as
// DLock's server threads do.
func serversRunning(delta int) { C.dlock_servers_running_add(C.int(delta)) }
