// main_exit.c built as C++ with g++, as DLock's example programs are, with a
// static object whose destructor must run when the process ends (exit()
// runs it after the atexit handler registered later, in main).
#include "dlock_client_api.h"
#include "dlock_server_api.h"
using namespace dlock;

#include "main_exit.c"

static struct Goodbye {
    ~Goodbye() { printf("static destructor\n"); }
} goodbye;
