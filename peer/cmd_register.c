/*
 * cmd_register.c - shoal register --broker URL [--invite TOKEN] [--force]
 *
 * Rolls a user id and an Ed25519 key pair, registers them
 * (POST /v1/users), saves the identity with the Authentication ID the
 * broker returned (it is returned only once, so the file is written before
 * anything else can fail), logs in, and pins the key of the broker that
 * answered (GET /v1/brokers).
 */
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "keys.h"
#include "peer.h"
#include "util.h"

/* Create the folder of the identity file now, so that a folder we cannot
 * write fails before the broker hands out an Authentication ID. */
static int make_folder(const char *path, struct shoal_err *err)
{
    char *copy = strdup(path);
    int rc;

    if (!copy)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    rc = shoal_mkdir_p(dirname(copy), 0700, err);
    free(copy);
    if (rc < 0 && err && err->code != SHOAL_EIO)
        err->code = SHOAL_EIO;
    return rc;
}

/* Copy the public key of broker entry b into id, checking it. */
static int pin_entry(struct pr_identity *id, const json_t *b,
                     struct shoal_err *err)
{
    unsigned char pk[SHOAL_PK_BYTES];
    const char *key;

    if (shoal_json_uuid(b, "broker_id", id->broker_id, err) < 0 ||
        shoal_json_str(b, "public_key", &key, err) < 0 ||
        shoal_b64_decode_exact(key, pk, sizeof(pk), "public_key", err) < 0)
        return pr_err_answer(err, "GET /v1/brokers");
    if (strlen(key) >= sizeof(id->broker_key))
        return shoal_err_set(err, SHOAL_EPROTO, "broker key is too long");
    strcpy(id->broker_key, key);
    return 0;
}

/*
 * Pin the broker that answered: the entry of GET /v1/brokers named by the
 * X-Broker-Id header of that answer, else the entry whose URL is ours.
 */
static int pin_broker(struct pr_ctx *ctx, struct shoal_err *err)
{
    struct pr_identity *id = ctx->id;
    const json_t *match = NULL;
    json_t *ans = NULL;
    json_t *list;
    json_t *b;
    const char *hdr;
    char answered[37] = "";
    char url[PR_URL_MAX];
    size_t i;
    int rc = -1;

    if (pr_call(ctx, "GET", "/v1/brokers", NULL, &ans, err) < 0)
        return -1;
    hdr = shoal_client_header(ctx->client, "X-Broker-Id");
    if (hdr && shoal_uuid_valid(hdr))
        shoal_uuid_normalize(hdr, answered, "X-Broker-Id", NULL);
    if (shoal_json_array(ans, "brokers", &list, err) < 0) {
        pr_err_answer(err, "GET /v1/brokers");
        goto out;
    }
    json_array_foreach(list, i, b) {
        const char *bid = json_string_value(json_object_get(b, "broker_id"));
        if (answered[0] && bid && strcasecmp(bid, answered) == 0) {
            match = b;
            break;
        }
    }
    json_array_foreach(list, i, b) {
        const char *u = json_string_value(json_object_get(b, "url"));
        if (match)
            break;
        if (u && pr_broker_url(u, url, NULL) == 0 &&
            strcmp(url, id->broker) == 0)
            match = b;
    }
    if (match) {
        rc = pin_entry(id, match, err);
        goto out;
    }
    strcpy(id->broker_id, answered);
    id->broker_key[0] = '\0';
    pr_warn("broker '%s' is not in its own list of brokers: its key is not "
            "pinned", id->broker);
    rc = 0;
out:
    json_decref(ans);
    return rc;
}

static int print_result(const struct pr_ctx *ctx, struct shoal_err *err)
{
    const struct pr_identity *id = ctx->id;
    json_t *v;
    int rc;

    if (!ctx->json) {
        if (printf("%s\n", id->user_id) < 0)
            return shoal_err_set(err, SHOAL_EIO, "cannot write to stdout");
        return 0;
    }
    v = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s}",
                  "user_id", id->user_id,
                  "public_key", id->public_key,
                  "broker", id->broker,
                  "broker_id", id->broker_id[0] ? id->broker_id : NULL,
                  "broker_key", id->broker_key[0] ? id->broker_key : NULL,
                  "identity", ctx->identity_path);
    if (!v)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    rc = pr_json_print(v, err);
    json_decref(v);
    return rc;
}

/* Roll the user id and key pair into id. */
static int roll_identity(struct pr_identity *id, struct shoal_err *err)
{
    unsigned char pk[SHOAL_PK_BYTES];
    unsigned char sk[SHOAL_SK_BYTES];
    char *pk64 = NULL;
    char *sk64 = NULL;
    int rc = -1;

    if (shoal_crypto_init(err) < 0) {
        err->code = SHOAL_EIO;
        return -1;
    }
    shoal_uuid_v4(id->user_id);
    shoal_keypair_new(pk, sk);
    pk64 = shoal_b64_encode(pk, sizeof(pk));
    sk64 = shoal_b64_encode(sk, sizeof(sk));
    if (!pk64 || !sk64 || strlen(pk64) >= sizeof(id->public_key) ||
        strlen(sk64) >= sizeof(id->secret_key)) {
        shoal_err_set(err, SHOAL_EIO, "cannot encode the new key pair");
        goto out;
    }
    strcpy(id->public_key, pk64);
    strcpy(id->secret_key, sk64);
    rc = 0;
out:
    sodium_memzero(sk, sizeof(sk));
    if (sk64) {
        sodium_memzero(sk64, strlen(sk64));
        free(sk64);
    }
    free(pk64);
    return rc;
}

int pr_cmd_register(struct pr_ctx *ctx, int argc, char **argv,
                    struct shoal_err *err)
{
    const char *broker = NULL;
    const char *invite = NULL;
    int force = 0;
    const struct pr_opt opts[] = {
        { "broker", &broker, NULL },
        { "invite", &invite, NULL },
        { "force", NULL, &force },
        { NULL, NULL, NULL },
    };
    json_t *body = NULL;
    json_t *ans = NULL;
    int n;
    int rc = -1;

    n = pr_opts_parse(opts, argc, argv, err);
    if (n < 0)
        return n;
    if (n > 0)
        return pr_usage_err(err, "unexpected argument '%s'", argv[1]);
    if (!broker)
        return pr_usage_err(err, "missing option '--broker URL'");
    if (invite && !*invite)
        return pr_usage_err(err, "option '--invite' is empty");

    pr_identity_free(ctx->id);
    ctx->id = pr_identity_new();
    if (!ctx->id)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    if (pr_broker_url(broker, ctx->id->broker, err) < 0)
        return PR_USAGE;
    if (!force && pr_path_exists(ctx->identity_path))
        return shoal_err_set(err, SHOAL_EEXISTS,
                             "identity '%s' already exists (use --force to "
                             "replace it)", ctx->identity_path);
    if (make_folder(ctx->identity_path, err) < 0 ||
        roll_identity(ctx->id, err) < 0)
        return -1;

    body = json_pack("{s:s, s:s}", "user_id", ctx->id->user_id,
                     "public_key", ctx->id->public_key);
    if (!body || (invite && json_object_set_new(body, "invite",
                                                json_string(invite)) < 0)) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    ctx->client = shoal_client_new(ctx->id->broker, 0);
    if (!ctx->client) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    if (shoal_client_call(ctx->client, "POST", "/v1/users", body, &ans, NULL,
                          err) < 0)
        goto out;
    if (shoal_json_uuid(ans, "auth_id", ctx->id->auth_id, err) < 0) {
        pr_err_answer(err, "POST /v1/users");
        goto out;
    }
    if (pr_identity_save(ctx->identity_path, ctx->id, err) < 0)
        goto out;
    /* A cached session belongs to the identity just replaced. */
    if (pr_session_remove(ctx->session_path, err) < 0 ||
        pr_login(ctx, NULL, err) < 0 ||
        pin_broker(ctx, err) < 0 ||
        pr_identity_save(ctx->identity_path, ctx->id, err) < 0)
        goto out;
    rc = print_result(ctx, err);
out:
    json_decref(ans);
    json_decref(body);
    return rc;
}
