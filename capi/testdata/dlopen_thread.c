/* The library loaded with dlopen by a thread other than main, then main
 * calls pthread_exit: the process must still end with status 0 once that
 * thread has finished. argv: the library's path, a free port.
 * Output as main_exit.c: the OK line, "END <ns>", "atexit". */
#include <dlfcn.h>
#include <pthread.h>

#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

static const char *path;
static int port, loaded;

static void on_exit_print(void) { printf("atexit\n"); }

static void *user(void *unused)
{
    (void)unused;
    void *h = dlopen(path, RTLD_NOW);
    CHECK_TRUE(h != NULL);
    if (h == NULL) {
        printf("dlopen: %s\n", dlerror());
        __atomic_store_n(&loaded, 1, __ATOMIC_SEQ_CST);
        done();
        return NULL;
    }
    int (*lib_init)(unsigned int) = (int (*)(unsigned int))dlsym(h, "dserver_lib_init");
    int (*start)(const struct server_cfg *, int *) = (int (*)(const struct server_cfg *, int *))dlsym(h, "server_start");
    int (*stop)(int) = (int (*)(int))dlsym(h, "server_stop");
    CHECK_TRUE(lib_init && start && stop);
    __atomic_store_n(&loaded, 1, __ATOMIC_SEQ_CST);
    usleep(1500000); /* main has gone, and the watcher has seen it */
    struct server_cfg cfg = server_config(port, 0);
    int id = 0;
    CHECK(lib_init(1), 0);
    CHECK(start(&cfg, &id), 0);
    CHECK(stop(id), 0);
    done();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    printf("END %lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: dlopen_thread libdlock.so port\n");
        return 2;
    }
    path = argv[1];
    port = arg(argc, argv, 2);
    atexit(on_exit_print);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, user, NULL), 0);
    for (int i = 0; i < 1000 && !__atomic_load_n(&loaded, __ATOMIC_SEQ_CST); i++)
        usleep(10000);
    printf("main: pthread_exit\n");
    pthread_exit(NULL);
}
