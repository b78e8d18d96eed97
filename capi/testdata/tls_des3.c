/* TLS with keys made the way DLock users make them:
 *     openssl req -newkey rsa:2048 -passout pass:... -keyout k.pem
 * (OpenSSL 3: encrypted PKCS#8, PBES2 with DES-EDE3-CBC). A TLS server and
 * a TLS client in one process connect through client_init; a wrong
 * password and a missing key file make client_init fail, and the library
 * logs why (the Go test reads stderr).
 * argv: port, ca, server cert, server key, client cert, client key,
 * password (of both keys), a file that exists but holds no key. */
#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

static const char *password;

static void pwd_cb(char **pwd, int *len)
{
    *pwd = strdup(password);
    *len = (int)strlen(password);
}

static void erase_cb(void *pwd, int len)
{
    memset(pwd, 0, (size_t)len);
    free(pwd);
}

static struct client_cfg tls_client(int port, char *ca, char *cert, char *key)
{
    struct client_cfg cfg = client_config(port);
    cfg.ssl.ssl_enable = true;
    cfg.ssl.ca_path = ca;
    cfg.ssl.cert_path = cert;
    cfg.ssl.prkey_path = key;
    cfg.ssl.prkey_pwd_cb = pwd_cb;
    cfg.ssl.erase_prkey_cb = erase_cb;
    return cfg;
}

int main(int argc, char **argv)
{
    int port = arg(argc, argv, 1);
    struct server_cfg scfg = server_config(port, 0);
    struct client_cfg ccfg;
    int sid = 0, c0 = 0, c1 = 0, lid = 0;
    struct lock_desc d = desc_of("des3 key lock", DLOCK_ATOMIC);
    struct lock_request r;
    atomic_state s;

    if (argc < 9) {
        fprintf(stderr, "usage: tls_des3 port ca scert skey ccert ckey password notakey\n");
        return 2;
    }
    char *ca = argv[2], *scert = argv[3], *skey = argv[4], *ccert = argv[5], *ckey = argv[6], *notakey = argv[8];
    password = argv[7];
    scfg.ssl.ssl_enable = true;
    scfg.ssl.ca_path = ca;
    scfg.ssl.cert_path = scert;
    scfg.ssl.prkey_path = skey;
    scfg.ssl.prkey_pwd_cb = pwd_cb;
    scfg.ssl.erase_prkey_cb = erase_cb;
    CHECK(dserver_lib_init(1), 0);
    CHECK(SERVER_START(scfg, sid), 0);

    /* both ends use their openssl req keys */
    ccfg = tls_client(port, ca, ccert, ckey);
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK(get_lock(c0, &d, &lid), 0);
    r = req_of(lid, LOCK_EXCLUSIVE, 10);
    CHECK(trylock(c0, &r, &s), 0);
    CHECK(s.client_id, c0);
    CHECK(unlock(c0, lid, &s), 0);
    CHECK(client_deinit(c0), 0);
    dclient_lib_deinit();

    /* a wrong password fails client_init (the server's key still loads:
     * it is read once, with the right password, before this point) */
    fprintf(stderr, "=== wrong password\n");
    CHECK(dclient_lib_init(&ccfg), 0);
    password = "not the password";
    CHECK(client_init(&c1, "127.0.0.1"), -1);
    password = argv[7];
    dclient_lib_deinit();

    /* a key file without a key */
    fprintf(stderr, "=== not a key\n");
    ccfg = tls_client(port, ca, ccert, notakey);
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c1, "127.0.0.1"), -1);
    dclient_lib_deinit();

    dserver_lib_deinit();
    return done();
}
