/* TLS (README, "Securing dlock"): a TLS server and TLS clients in one process, with the three
 * ssl_cfg callbacks called through C trampolines; lazy loading (a wrong
 * password or a rejecting verify callback only fails client_init).
 * argv: port, ca, server cert, server key, client cert, client key,
 * other ca. The keys are encrypted with the password "secret". */
#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

static int server_pwd_calls, server_erase_calls;
static int client_pwd_calls, client_erase_calls, verify_calls, verify_result;
static const char *client_password = "secret";
static char last_crl[4096];
static int last_crl_null;

static void bump(int *n) { __atomic_fetch_add(n, 1, __ATOMIC_SEQ_CST); }
static int load(int *n) { return __atomic_load_n(n, __ATOMIC_SEQ_CST); }

static void server_pwd_cb(char **pwd, int *len)
{
    bump(&server_pwd_calls);
    *pwd = strdup("secret");
    *len = 6;
}

static void server_erase_cb(void *pwd, int len)
{
    bump(&server_erase_calls);
    memset(pwd, 0, (size_t)len);
    free(pwd);
}

static void client_pwd_cb(char **pwd, int *len)
{
    bump(&client_pwd_calls);
    if (client_password == NULL) {
        *pwd = NULL;
        *len = 0;
        return;
    }
    *pwd = strdup(client_password);
    *len = (int)strlen(client_password);
}

static void client_erase_cb(void *pwd, int len)
{
    bump(&client_erase_calls);
    memset(pwd, 0, (size_t)len);
    free(pwd);
}

static int verify_cb(void *ctx, const char *crl_path)
{
    (void)ctx;
    bump(&verify_calls);
    last_crl_null = crl_path == NULL;
    if (crl_path)
        snprintf(last_crl, sizeof(last_crl), "%s", crl_path);
    return verify_result;
}

static struct client_cfg tls_client(int port, char *ca, char *cert, char *key)
{
    struct client_cfg cfg = client_config(port);
    cfg.ssl.ssl_enable = true;
    cfg.ssl.ca_path = ca;
    cfg.ssl.cert_path = cert;
    cfg.ssl.prkey_path = key;
    cfg.ssl.prkey_pwd_cb = client_pwd_cb;
    cfg.ssl.erase_prkey_cb = client_erase_cb;
    return cfg;
}

int main(int argc, char **argv)
{
    int port = arg(argc, argv, 1);
    char *ca = argv[2], *scert = argv[3], *skey = argv[4], *ccert = argv[5], *ckey = argv[6], *otherca = argv[7];
    struct server_cfg scfg = server_config(port, 0);
    struct client_cfg ccfg;
    int sid = 0, c0 = 0, c1 = 0, lid = 0, n;
    struct lock_desc d = desc_of("tls lock", DLOCK_ATOMIC);
    struct lock_request r;
    atomic_state s;

    if (argc < 8) {
        fprintf(stderr, "usage: tls port ca scert skey ccert ckey otherca\n");
        return 2;
    }
    scfg.ssl.ssl_enable = true;
    scfg.ssl.ca_path = ca;
    scfg.ssl.cert_path = scert;
    scfg.ssl.prkey_path = skey;
    scfg.ssl.prkey_pwd_cb = server_pwd_cb;
    scfg.ssl.erase_prkey_cb = server_erase_cb;
    CHECK(dserver_lib_init(1), 0);
    CHECK(SERVER_START(scfg, sid), 0);
    CHECK(load(&server_pwd_calls), 0); /* nothing is loaded before a connection */

    ccfg = tls_client(port, ca, ccert, ckey);
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(load(&client_pwd_calls), 0);
    CHECK(client_init(&c0, "127.0.0.1"), 0);
    CHECK_TRUE(load(&client_pwd_calls) >= 1);
    CHECK_TRUE(load(&server_pwd_calls) >= 1);
    CHECK(load(&client_erase_calls), load(&client_pwd_calls));
    CHECK(load(&server_erase_calls), load(&server_pwd_calls));
    CHECK(get_lock(c0, &d, &lid), 0);
    r = req_of(lid, LOCK_EXCLUSIVE, 10);
    CHECK(trylock(c0, &r, &s), 0);
    CHECK(s.client_id, c0);
    n = load(&client_pwd_calls);
    CHECK(client_reinit(c0, "127.0.0.1"), 0); /* a new TLS connection */
    CHECK(client_reinit_done(c0), 0);
    CHECK_TRUE(load(&client_pwd_calls) > n);
    CHECK(unlock(c0, lid, &s), 0);
    dclient_lib_deinit();

    /* a wrong password: dclient_lib_init succeeds, the connection fails */
    client_password = "wrong";
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c1, "127.0.0.1"), -1);
    CHECK(load(&client_erase_calls), load(&client_pwd_calls));
    /* no password at all: fails too, and the erase callback is not called */
    client_password = NULL;
    n = load(&client_erase_calls);
    CHECK(client_init(&c1, "127.0.0.1"), -1);
    CHECK(load(&client_erase_calls), n);
    dclient_lib_deinit();
    client_password = "secret";

    /* cert_verify_cb replaces the chain verification */
    ccfg.ssl.cert_verify_cb = verify_cb;
    verify_result = -1;
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c1, "127.0.0.1"), -1);
    CHECK_TRUE(load(&verify_calls) >= 1);
    CHECK(last_crl_null, 0);
    CHECK(strcmp(last_crl, ""), 0); /* no CRL configured: "" */
    verify_result = 0;
    CHECK(client_init(&c1, "127.0.0.1"), 0);
    CHECK(client_deinit(c1), 0);
    dclient_lib_deinit();
    /* with a CRL path, the callback receives it canonicalised */
    ccfg.ssl.crl_path = ca;
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c1, "127.0.0.1"), 0);
    CHECK(last_crl[0], '/');
    CHECK(client_deinit(c1), 0);
    dclient_lib_deinit();

    /* a CA that did not sign the server's certificate */
    ccfg = tls_client(port, otherca, ccert, ckey);
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c1, "127.0.0.1"), -1);
    dclient_lib_deinit();

    /* a plaintext client cannot talk to a TLS server */
    ccfg = client_config(port);
    CHECK(dclient_lib_init(&ccfg), 0);
    CHECK(client_init(&c1, "127.0.0.1"), -1);
    dclient_lib_deinit();

    /* the first client is still registered: the server kept it */
    dserver_lib_deinit();
    return done();
}
