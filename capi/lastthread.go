package main

// The Go runtime's calls to pthread_create go through lastthread.c, which
// records the library's threads so that the process can end once main has
// called pthread_exit and the program's own threads have finished, as a
// plain pthreads program does.

// #cgo LDFLAGS: -Wl,--wrap=pthread_create
import "C"
