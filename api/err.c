/*
 * err.c - the error type of shoal, its wire names and HTTP statuses, and
 * the one error body {"error":{"code":…,"message":…}}.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "util.h"

struct code_info {
    const char *name;
    int status;
};

/* Indexed by enum shoal_code; every code has a row. */
static const struct code_info codes[SHOAL_CODE_COUNT] = {
    [SHOAL_OK] = {"ok", 200},
    [SHOAL_EINVAL] = {"invalid_request", 400},
    [SHOAL_EJSON] = {"malformed_json", 400},
    [SHOAL_ESESSION_MISSING] = {"session_missing", 400},
    [SHOAL_EAUTH] = {"invalid_auth_id", 401},
    [SHOAL_ESESSION_EXPIRED] = {"session_expired", 401},
    [SHOAL_EPAYMENT] = {"balance_exhausted", 402},
    [SHOAL_EFORBIDDEN] = {"forbidden", 403},
    [SHOAL_ESESSION_UNKNOWN] = {"session_unknown", 403},
    [SHOAL_ENOTFOUND] = {"not_found", 404},
    [SHOAL_EMETHOD] = {"method_not_allowed", 405},
    [SHOAL_EEXISTS] = {"already_exists", 409},
    [SHOAL_EIPMISMATCH] = {"ip_mismatch", 409},
    [SHOAL_EGONE] = {"gone", 410},
    [SHOAL_EQUOTA] = {"over_quota", 412},
    [SHOAL_ETOOLARGE] = {"body_too_large", 413},
    [SHOAL_EMEDIA] = {"unsupported_media_type", 415},
    [SHOAL_ERANGE] = {"range_not_satisfiable", 416},
    [SHOAL_EINCOMPLETE] = {"incomplete", 409},
    [SHOAL_ENOTEMPTY] = {"not_empty", 409},
    [SHOAL_EUNPROCESSABLE] = {"unprocessable", 422},
    [SHOAL_EINTERNAL] = {"internal", 500},
    [SHOAL_EUNAVAILABLE] = {"unavailable", 503},
    [SHOAL_ESTORAGE] = {"insufficient_storage", 507},
    [SHOAL_EBADGATEWAY] = {"bad_gateway", 502},
    [SHOAL_ENET] = {"network_error", 500},
    [SHOAL_EIO] = {"io_error", 500},
    [SHOAL_EPROTO] = {"protocol_error", 500},
};

static int code_known(enum shoal_code code)
{
    return (int)code >= 0 && code < SHOAL_CODE_COUNT;
}

/* 1 for the codes a server may send: the ones with a wire meaning. */
static int code_on_wire(enum shoal_code code)
{
    return code > SHOAL_OK && code < SHOAL_ENET;
}

/* Cut a trailing incomplete UTF-8 sequence left by truncation. */
static void utf8_trim_tail(char *s)
{
    size_t len = strlen(s);
    size_t i = len;
    size_t need;
    unsigned char lead;

    /* Step back over at most three continuation bytes to the lead byte. */
    while (i > 0 && len - i < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return;
    lead = (unsigned char)s[i - 1];
    if (lead < 0x80)
        return;
    if ((lead & 0xE0) == 0xC0)
        need = 2;
    else if ((lead & 0xF0) == 0xE0)
        need = 3;
    else if ((lead & 0xF8) == 0xF0)
        need = 4;
    else
        need = 0;
    if (len - (i - 1) < need)
        s[i - 1] = '\0';
}

int shoal_err_set(struct shoal_err *err, enum shoal_code code,
                  const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return -1;
    err->code = code_known(code) ? code : SHOAL_EINTERNAL;
    err->status = shoal_code_status(err->code);
    va_start(ap, fmt);
    if (vsnprintf(err->msg, sizeof(err->msg), fmt, ap) < 0)
        snprintf(err->msg, sizeof(err->msg), "%s", codes[err->code].name);
    va_end(ap);
    utf8_trim_tail(err->msg);
    return -1;
}

void shoal_err_clear(struct shoal_err *err)
{
    if (err == NULL)
        return;
    err->code = SHOAL_OK;
    err->status = 0;
    err->msg[0] = '\0';
}

int shoal_code_status(enum shoal_code code)
{
    if (!code_known(code))
        return 500;
    return codes[code].status;
}

const char *shoal_code_name(enum shoal_code code)
{
    if (!code_known(code))
        return codes[SHOAL_EINTERNAL].name;
    return codes[code].name;
}

enum shoal_code shoal_code_from_name(const char *name)
{
    int i;

    if (name == NULL)
        return SHOAL_EPROTO;
    for (i = 0; i < SHOAL_CODE_COUNT; i++)
        if (strcmp(codes[i].name, name) == 0)
            return (enum shoal_code)i;
    return SHOAL_EPROTO;
}

/* Codes that no server may send (client-side ones) go out as "internal",
 * so that every body on the wire carries a code of the spec. */
json_t *shoal_err_to_json(const struct shoal_err *err)
{
    json_t *inner = NULL;
    json_t *body = NULL;
    json_t *msg = NULL;

    msg = shoal_json_string_lossy(err->msg);
    if (msg == NULL)
        return NULL;
    inner = json_object();
    if (inner == NULL)
        goto fail;
    if (json_object_set_new(inner, "code", json_string(shoal_code_name(
            code_on_wire(err->code) ? err->code : SHOAL_EINTERNAL))) != 0)
        goto fail;
    if (json_object_set_new(inner, "message", msg) != 0) {
        msg = NULL;     /* stolen even on failure */
        goto fail;
    }
    msg = NULL;
    body = json_object();
    if (body == NULL)
        goto fail;
    if (json_object_set_new(body, "error", inner) != 0) {
        inner = NULL;
        goto fail;
    }
    return body;
fail:
    json_decref(msg);
    json_decref(inner);
    json_decref(body);
    return NULL;
}

int shoal_err_from_json(struct shoal_err *err, int status, const json_t *body)
{
    const json_t *inner;
    const json_t *jcode;
    const json_t *jmsg;
    enum shoal_code code;

    if (err == NULL)
        return -1;
    inner = json_is_object(body) ? json_object_get(body, "error") : NULL;
    jcode = json_is_object(inner) ? json_object_get(inner, "code") : NULL;
    jmsg = json_is_object(inner) ? json_object_get(inner, "message") : NULL;
    if (!json_is_string(jcode) || (jmsg != NULL && !json_is_string(jmsg))) {
        shoal_err_set(err, SHOAL_EPROTO,
                      "unexpected answer with status %d", status);
        err->status = status;
        return -1;
    }
    code = shoal_code_from_name(json_string_value(jcode));
    if (!code_on_wire(code)) {
        shoal_err_set(err, SHOAL_EPROTO,
                      "unknown error code '%s' with status %d: %s",
                      json_string_value(jcode), status,
                      jmsg != NULL ? json_string_value(jmsg) : "");
        err->status = status;
        return -1;
    }
    shoal_err_set(err, code, "%s",
                  jmsg != NULL ? json_string_value(jmsg) : shoal_code_name(code));
    err->status = status;
    return -1;
}
