/* Failures that return -1 (or DLOCK_EINVAL) must say why on stderr, at the
 * log level they belong to. One failure per run; the Go test reads stderr.
 *
 * argv: a free port, the log_level to run at, the case, and for the TLS
 * cases: ca, server cert, server key, client cert, client key, another ca
 * (keys encrypted with the password "secret").
 *
 * Before the failure the log level is set with a successful
 * dclient_lib_init / dclient_lib_deinit, and every configuration carries it
 * too, so the level is in force whichever check fails. */
#include "dlock_client_api.h"
#include "dlock_server_api.h"

#include "check.h"

static int level;
static const char *password = "secret";

/* the client's key password: "wrong" in the tls_password case */
static void pwd_cb(char **pwd, int *len)
{
    *pwd = strdup(password);
    *len = (int)strlen(password);
}

static void server_pwd_cb(char **pwd, int *len)
{
    *pwd = strdup("secret");
    *len = 6;
}

static void erase_cb(void *pwd, int len)
{
    memset(pwd, 0, (size_t)len);
    free(pwd);
}

static struct server_cfg server_cfg_at(int port)
{
    struct server_cfg cfg = server_config(port, 0);
    cfg.log_level = level;
    return cfg;
}

static struct client_cfg client_cfg_at(int port)
{
    struct client_cfg cfg = client_config(port);
    cfg.log_level = level;
    return cfg;
}

static void set_ssl(struct ssl_cfg *s, char *ca, char *cert, char *key)
{
    s->ssl_enable = true;
    s->ca_path = ca;
    s->cert_path = cert;
    s->prkey_path = key;
    s->prkey_pwd_cb = pwd_cb;
    s->erase_prkey_cb = erase_cb;
}

/* not_local is ::ffff:192.0.2.1 (TEST-NET-1), an address no host has */
static void set_not_local(dlock_eid_t *eid)
{
    memset(eid, 0, sizeof(*eid));
    eid->raw[10] = 0xff;
    eid->raw[11] = 0xff;
    eid->raw[12] = 192;
    eid->raw[13] = 0;
    eid->raw[14] = 2;
    eid->raw[15] = 1;
}

int main(int argc, char **argv)
{
    int port = arg(argc, argv, 1), id = 0, c = 0;
    level = arg(argc, argv, 2);
    const char *what = argc > 3 ? argv[3] : "";
    struct server_cfg scfg = server_cfg_at(port);
    struct client_cfg ccfg = client_cfg_at(port);

    CHECK(dclient_lib_init(&ccfg), 0);
    dclient_lib_deinit();
    CHECK(dserver_lib_init(1), 0);

    if (!strcmp(what, "client_tp_mode")) {
        ccfg.tp_mode = (trans_mode_t)7;
        CHECK(dclient_lib_init(&ccfg), -1);
    } else if (!strcmp(what, "server_tp_mode")) {
        scfg.tp_mode = (trans_mode_t)7;
        CHECK(SERVER_START(scfg, id), -1);
    } else if (!strcmp(what, "client_port")) {
        ccfg.primary_port = 80;
        CHECK(dclient_lib_init(&ccfg), DLOCK_EINVAL);
    } else if (!strcmp(what, "server_port")) {
        scfg.primary.server_port = 70000;
        CHECK(SERVER_START(scfg, id), -1);
    } else if (!strcmp(what, "client_device")) {
        ccfg.dev_name = (char *)"nosuchdev0";
        CHECK(dclient_lib_init(&ccfg), -1);
    } else if (!strcmp(what, "server_device")) {
        scfg.dev_name = (char *)"nosuchdev0";
        CHECK(SERVER_START(scfg, id), -1);
    } else if (!strcmp(what, "client_eid")) {
        set_not_local(&ccfg.eid);
        CHECK(dclient_lib_init(&ccfg), -1);
    } else if (!strcmp(what, "server_eid")) {
        set_not_local(&scfg.eid);
        CHECK(SERVER_START(scfg, id), -1);
    } else if (!strcmp(what, "tp_mismatch")) {
        scfg.tp_mode = SEPERATE_CONN;
        ccfg.tp_mode = UNI_CONN;
        CHECK(SERVER_START(scfg, id), 0);
        CHECK(dclient_lib_init(&ccfg), 0);
        CHECK(client_init(&c, "127.0.0.1"), -1);
    } else if (!strcmp(what, "refused")) {
        /* nothing listens on port: a program retries DLOCK_NOT_READY */
        CHECK(dclient_lib_init(&ccfg), 0);
        CHECK(client_init(&c, "127.0.0.1"), DLOCK_NOT_READY);
    } else if (!strcmp(what, "tls_path")) {
        set_ssl(&ccfg.ssl, (char *)"/nonexistent/ca.pem", (char *)"/nonexistent/cert.pem", (char *)"/nonexistent/key.pem");
        CHECK(dclient_lib_init(&ccfg), -1);
    } else if (!strcmp(what, "tls_password") || !strcmp(what, "tls_untrusted")) {
        if (argc < 10) {
            fprintf(stderr, "missing TLS files\n");
            return 2;
        }
        char *ca = argv[4], *scert = argv[5], *skey = argv[6], *ccert = argv[7], *ckey = argv[8], *other = argv[9];
        set_ssl(&scfg.ssl, ca, scert, skey);
        scfg.ssl.prkey_pwd_cb = server_pwd_cb;
        CHECK(SERVER_START(scfg, id), 0);
        if (!strcmp(what, "tls_password")) {
            set_ssl(&ccfg.ssl, ca, ccert, ckey);
            password = "wrong";
        } else {
            set_ssl(&ccfg.ssl, other, ccert, ckey);
        }
        CHECK(dclient_lib_init(&ccfg), 0);
        CHECK(client_init(&c, "127.0.0.1"), -1);
    } else {
        fprintf(stderr, "unknown case %s\n", what);
        return 2;
    }
    dclient_lib_deinit();
    dserver_lib_deinit();
    return done();
}
