// lastthread.c — makes a process that uses the library end the way a plain
// pthreads program does: when main has called pthread_exit and the program's
// last thread ends, the process exits with status 0 (glibc calls exit(0)
// when its count of threads reaches zero).
//
// The Go runtime's threads never end, so glibc's count never reaches zero
// by itself. Instead a watcher thread, created when the library is loaded,
// waits for the main thread to end; then it counts the threads in
// /proc/self/task that are neither the library's (the Go runtime's and its
// own) nor the exited main thread, and calls exit(0) when none is left —
// running atexit handlers and flushing stdio, as glibc does.
//
// The watcher learns that main is ending from a thread-specific-data
// destructor set on the main thread at load time (glibc runs the main
// thread's destructors when it calls pthread_exit, and never when main
// returns), and then waits for /proc/self/stat to show the main thread
// gone (other destructors may still run on it). It does not join the main
// thread: a second joiner would never wake up, and the program may join
// main itself. When the library is loaded by dlopen from another thread, the
// destructor cannot be set and the watcher reads /proc/self/stat once a
// second instead.
//
// A running server counts as a program thread: DLock runs each server on
// threads of its own (a control thread and a data-plane thread) until
// server_stop or dserver_lib_deinit, so a server program whose main calls
// pthread_exit goes on serving, as it does with DLock. The client library
// has no threads of its own in DLock, and none count here.
//
// The library's threads are known exactly: the Go runtime creates every
// thread through pthread_create in runtime/cgo, and the library is linked
// with -Wl,--wrap=pthread_create (lastthread.go), so those calls come here
// first. A new thread records its own tid before running Go code and
// removes it (from a thread-specific-data destructor) while it still exists.
// A thread whose tid is not recorded counts as the program's, so any race
// errs on the side of staying alive: a program thread is never mistaken for
// the library's.

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int __real_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

// The tids of the library's live threads.
static pthread_mutex_t lib_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t *lib_tids;
static size_t lib_len, lib_cap;

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static int key_ok;

static pid_t self_tid(void) { return (pid_t)syscall(SYS_gettid); }

static void forget_tid(pid_t tid)
{
    pthread_mutex_lock(&lib_mu);
    for (size_t i = 0; i < lib_len; i++) {
        if (lib_tids[i] == tid) {
            lib_tids[i] = lib_tids[--lib_len];
            break;
        }
    }
    pthread_mutex_unlock(&lib_mu);
}

// on_thread_exit runs as the thread ends, however it ends (return or
// pthread_exit), while its tid is still in use.
static void on_thread_exit(void *tid) { forget_tid((pid_t)(intptr_t)tid); }

static void make_key(void) { key_ok = pthread_key_create(&exit_key, on_thread_exit) == 0; }

// remember_self records the calling thread as the library's. If the record
// cannot be made the thread simply counts as the program's (the process then
// stays alive after main's pthread_exit, as without this file).
static void remember_self(void)
{
    pid_t tid = self_tid();
    pthread_once(&key_once, make_key);
    if (!key_ok || pthread_setspecific(exit_key, (void *)(intptr_t)tid) != 0)
        return;
    pthread_mutex_lock(&lib_mu);
    if (lib_len == lib_cap) {
        size_t cap = lib_cap ? 2 * lib_cap : 64;
        pid_t *p = realloc(lib_tids, cap * sizeof *p);
        if (p == NULL) {
            pthread_mutex_unlock(&lib_mu);
            pthread_setspecific(exit_key, NULL);
            return;
        }
        lib_tids = p;
        lib_cap = cap;
    }
    lib_tids[lib_len++] = tid;
    pthread_mutex_unlock(&lib_mu);
}

struct start {
    void *(*fn)(void *);
    void *arg;
};

static void *library_thread(void *p)
{
    struct start s = *(struct start *)p;
    free(p);
    remember_self();
    return s.fn(s.arg);
}

// __wrap_pthread_create is what the Go runtime's calls to pthread_create
// reach (and only those: the wrapping is a link-time option of this
// library; the program's pthread_create is untouched).
__attribute__((visibility("hidden"))) int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    struct start *s = malloc(sizeof *s);
    if (s == NULL)
        return __real_pthread_create(t, attr, fn, arg);
    s->fn = fn;
    s->arg = arg;
    int err = __real_pthread_create(t, attr, library_thread, s);
    if (err != 0)
        free(s);
    return err;
}

// main_exiting is posted by the main thread's destructor of main_key.
static sem_t main_exiting;
static pthread_key_t main_key;

static void on_main_exit(void *unused)
{
    (void)unused;
    sem_post(&main_exiting);
}

// The number of servers running (server_start .. server_stop).
static int servers_running;

__attribute__((visibility("hidden"))) void dlock_servers_running_add(int delta)
{
    __atomic_add_fetch(&servers_running, delta, __ATOMIC_SEQ_CST);
}

// program_threads counts the live threads that are neither the library's nor
// the main thread (which has ended; as the thread group leader
// it stays listed until the process ends), plus one if a server runs. -1 if
// /proc is unreadable.
static int program_threads(void)
{
    if (__atomic_load_n(&servers_running, __ATOMIC_SEQ_CST) > 0)
        return 1;
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        return -1;
    pid_t pid = getpid();
    int n = 0;
    struct dirent *e;
    pthread_mutex_lock(&lib_mu);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        pid_t tid = (pid_t)strtol(e->d_name, NULL, 10);
        if (tid == pid)
            continue;
        int mine = 0;
        for (size_t i = 0; i < lib_len && !mine; i++)
            mine = lib_tids[i] == tid;
        n += !mine;
    }
    pthread_mutex_unlock(&lib_mu);
    closedir(d);
    return n;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

// main_ended reports whether the main thread has ended (as the thread group
// leader it is then a zombie, state Z in /proc/self/stat), -1 if unknown.
static int main_ended(void)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); // the command name may hold anything
    if (p == NULL || p[1] != ' ' || p[2] == 0)
        return -1;
    return p[2] == 'Z';
}

static const char no_proc[] =
    "dlock: cannot read /proc/self: the process will not end by itself after main called pthread_exit\n";

static void *watch_main(void *armed)
{
    remember_self();
    // Returns only once main has called pthread_exit: when main returns or
    // anything calls exit, the process ends meanwhile.
    long wait = 1000;
    if (armed != NULL) {
        while (sem_wait(&main_exiting) != 0 && errno == EINTR)
            ;
        wait = 1;
    }
    int ended;
    while ((ended = main_ended()) == 0) {
        pause_ms(wait);
        if (armed != NULL && wait < 100)
            wait *= 2;
    }
    if (ended < 0) {
        fputs(no_proc, stderr);
        return NULL;
    }
    wait = 5;
    for (;;) {
        int n = program_threads();
        if (n < 0) {
            fputs(no_proc, stderr);
            return NULL;
        }
        // Two scans a moment apart both seeing no program thread: a
        // directory read that raced with threads starting and ending
        // cannot make the process end early.
        if (n == 0) {
            pause_ms(2);
            if (program_threads() == 0)
                exit(0);
        }
        pause_ms(wait);
        if (wait < 100)
            wait *= 2;
    }
}

// start_watcher runs when the library is loaded: on the main thread when the
// program is linked with the library, on whichever thread calls dlopen
// otherwise.
__attribute__((constructor)) static void start_watcher(void)
{
    void *armed = NULL;
    if (self_tid() == getpid() && sem_init(&main_exiting, 0, 0) == 0 &&
        pthread_key_create(&main_key, on_main_exit) == 0) {
        if (pthread_setspecific(main_key, &main_exiting) == 0)
            armed = &main_exiting;
        else
            pthread_key_delete(main_key);
    }
    // The watcher takes no signals meant for the program.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    __real_pthread_create(&t, &attr, watch_main, armed);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}
