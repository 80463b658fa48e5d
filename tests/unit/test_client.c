/*
 * test_client.c - the HTTP client's calls beyond one JSON body each way,
 * against the HTTP server in-process over loopback: a request body made
 * as it is sent (shoal_client_req.read), and an answer whose array goes
 * to a callback one element at a time (each_key), with its strings,
 * nesting, escapes and malformed lists.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client.h"
#include "http.h"
#include "keys.h"
#include "util.h"

/* The answers of GET /raw/{n}, as sent. */
static const char *const raw[] = {
    /* 0: the array, a string and an object that look like it */
    "{\"a\": 1, \"piece_hashes\" : [\"x\", \"y,]\\\"[\", {\"k\": [1, 2]},"
    " [3, \"]\"], null ], \"b\": \"piece_hashes\","
    " \"c\": {\"piece_hashes\": [9]}, \"d\": [\"piece_hashes\", [8]]}",
    /* 1: the name escaped */
    "{\"piece\\u005fhashes\":[1,2]}",
    /* 2: empty */
    "{\"piece_hashes\": [ ], \"z\": true}",
    /* 3-7: malformed */
    "{\"piece_hashes\":[1,,2]}",
    "{\"piece_hashes\":[1,]}",
    "{\"piece_hashes\":[1 2]}",
    "{\"piece_hashes\":[1}",
    "{\"piece_hashes\":[1,2],}",
    /* 8: not an object */
    "[\"piece_hashes\", [1, 2]]",
    /* 9: not an array */
    "{\"piece_hashes\": \"[1, 2]\"}",
};

/* A large answer: NBIG elements with every character the scan follows,
 * so that curl hands it over in parts cut anywhere. */
#define NBIG 20000
static char *big;

static const char *big_elem(size_t i, char *buf, size_t size)
{
    snprintf(buf, size, "%zu:\"]},[{\\", i);
    return buf;
}

static char *big_text(void)
{
    json_t *list = json_array();
    json_t *doc;
    char *text;
    char buf[64];
    size_t i;

    for (i = 0; i < NBIG; i++)
        json_array_append_new(list, i % 7 == 3 ?
                              json_pack("{s:[s]}", "in", big_elem(i, buf,
                                                                 sizeof(buf))) :
                              json_string(big_elem(i, buf, sizeof(buf))));
    doc = json_pack("{s:s, s:o, s:i}", "before", "[{\"", "piece_hashes", list,
                    "after", 7);
    text = json_dumps(doc, JSON_INDENT(1));
    json_decref(doc);
    return text;
}

static int h_raw(struct shoal_req *req, json_t **reply, struct shoal_err *err)
{
    const char *n = shoal_req_param(req, "n");
    size_t i;

    (void)reply;
    if (strcmp(n, "big") == 0)
        return shoal_req_set_body(req, 200, "application/json", big,
                                  strlen(big));
    if (strcmp(n, "error") == 0)
        return shoal_err_set(err, SHOAL_ENOTFOUND, "no '%s'", n);
    i = (size_t)atoi(n);
    assert_true(i < sizeof(raw) / sizeof(raw[0]));
    return shoal_req_set_body(req, 200, "application/json", raw[i],
                              strlen(raw[i]));
}

static int h_echo(struct shoal_req *req, json_t **reply,
                  struct shoal_err *err)
{
    (void)err;
    *reply = json_incref(shoal_req_body(req));
    return 0;
}

static const struct shoal_route routes[] = {
    { "GET", "/raw/{n}", 0, h_raw, NULL, 0 },
    { "POST", "/echo", SHOAL_ROUTE_JSON, h_echo, NULL, 0 },
    { "PUT", "/echo", SHOAL_ROUTE_JSON, h_echo, NULL, 0 },
};

struct fixture {
    struct shoal_server *srv;
    struct shoal_client *c;
};

static int setup(void **state)
{
    static struct fixture f;
    struct shoal_server_opts o;
    struct shoal_err err;
    char url[64];

    memset(&o, 0, sizeof o);
    o.listen = "127.0.0.1:0";
    o.threads = 2;
    o.max_connections = 16;
    o.idle_timeout = 5;
    o.request_timeout = 5;
    o.body_limit = 4 << 20;
    o.routes = routes;
    o.nroutes = sizeof routes / sizeof routes[0];
    f.srv = shoal_server_start(&o, &err);
    assert_non_null(f.srv);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", shoal_server_port(f.srv));
    f.c = shoal_client_new(url, 5);
    assert_non_null(f.c);
    big = big_text();
    assert_non_null(big);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    shoal_client_free(f->c);
    shoal_server_stop(f->srv);
    free(big);
    return 0;
}

/* --- a body made as it is sent --- */

struct text_body {
    const char *text;
    uint64_t fail_at;        /* a read past this fails (0: never) */
    unsigned reads;
};

static int text_read(void *arg, uint64_t off, char *buf, size_t size)
{
    struct text_body *t = arg;

    t->reads++;
    if (t->fail_at && off + size > t->fail_at)
        return -1;
    assert_true(off + size <= strlen(t->text));
    memcpy(buf, t->text + off, size);
    return 0;
}

static void test_read_body(void **state)
{
    struct fixture *f = *state;
    struct shoal_client_req req;
    struct text_body t;
    struct shoal_err err;
    json_t *doc = json_pack("{s:s, s:[]}", "name", "a\"b\\c \xc3\xbc\n",
                            "n");
    json_t *reply = NULL;
    const char *method[] = { "POST", "PUT" };
    char *text;
    int status = 0;
    int i;

    for (i = 0; i < 30000; i++)
        json_array_append_new(json_object_get(doc, "n"), json_integer(i));
    text = json_dumps(doc, JSON_COMPACT);
    for (i = 0; i < 2; i++) {
        memset(&t, 0, sizeof t);
        t.text = text;
        memset(&req, 0, sizeof req);
        req.read = text_read;
        req.read_arg = &t;
        req.len = strlen(text);
        assert_int_equal(shoal_client_call_req(f->c, method[i], "/echo", &req,
                                               &reply, &status, &err), 0);
        assert_int_equal(status, 200);
        assert_true(json_equal(reply, doc));
        assert_true(t.reads > 1);       /* in parts, not whole */
        json_decref(reply);
        reply = NULL;
    }

    /* a read that fails stops the call */
    memset(&t, 0, sizeof t);
    t.text = text;
    t.fail_at = 100000;
    req.read_arg = &t;
    assert_int_equal(shoal_client_call_req(f->c, "POST", "/echo", &req,
                                           &reply, NULL, &err), -1);
    assert_int_equal(err.code, SHOAL_EINTERNAL);
    assert_non_null(strstr(err.msg, "cannot make the body"));
    assert_null(reply);

    /* and the client goes on */
    assert_int_equal(shoal_client_call(f->c, "POST", "/echo", doc, &reply,
                                       NULL, &err), 0);
    assert_true(json_equal(reply, doc));
    json_decref(reply);
    free(text);
    json_decref(doc);
}

/* --- an answer's array, one element at a time --- */

struct got {
    json_t *list;            /* what each was given */
    size_t fail_at;          /* each fails there (0: never) */
};

static int take(void *arg, size_t index, json_t *elem, struct shoal_err *err)
{
    struct got *g = arg;

    if (g->fail_at && index == g->fail_at)
        return shoal_err_set(err, SHOAL_EUNPROCESSABLE, "element %zu "
                             "refused", index);
    assert_int_equal(index, json_array_size(g->list));
    json_array_append(g->list, elem);
    return 0;
}

/* GET /raw/<n> with piece_hashes split off: the call's result, *reply
 * and g->list filled. */
static int get_split(struct fixture *f, const char *n, struct got *g,
                     json_t **reply, struct shoal_err *err)
{
    struct shoal_client_req req;
    char path[32];

    memset(&req, 0, sizeof req);
    req.each_key = "piece_hashes";
    req.each = take;
    req.each_arg = g;
    g->list = json_array();
    snprintf(path, sizeof path, "/raw/%s", n);
    return shoal_client_call_req(f->c, "GET", path, &req, reply, NULL, err);
}

static void test_each(void **state)
{
    struct fixture *f = *state;
    struct shoal_err err;
    struct got g = { NULL, 0 };
    json_t *reply = NULL;
    json_t *whole;

    assert_int_equal(get_split(f, "0", &g, &reply, &err), 0);
    whole = json_loads(raw[0], 0, NULL);
    assert_true(json_equal(g.list, json_object_get(whole, "piece_hashes")));
    assert_int_equal(json_array_size(g.list), 5);
    json_object_set_new(whole, "piece_hashes", json_array());
    assert_true(json_equal(reply, whole));      /* the rest as it was */
    json_decref(whole);
    json_decref(reply);
    json_decref(g.list);

    /* a name written with an escape is the same name */
    assert_int_equal(get_split(f, "1", &g, &reply, &err), 0);
    assert_int_equal(json_array_size(g.list), 2);
    assert_int_equal(json_array_size(json_object_get(reply,
                                                     "piece_hashes")), 0);
    json_decref(reply);
    json_decref(g.list);

    /* empty */
    assert_int_equal(get_split(f, "2", &g, &reply, &err), 0);
    assert_int_equal(json_array_size(g.list), 0);
    assert_true(json_is_array(json_object_get(reply, "piece_hashes")));
    assert_true(json_is_true(json_object_get(reply, "z")));
    json_decref(reply);
    json_decref(g.list);
}

static void test_each_big(void **state)
{
    struct fixture *f = *state;
    struct shoal_err err;
    struct got g = { NULL, 0 };
    json_t *reply = NULL;
    json_t *whole = json_loads(big, 0, NULL);

    assert_int_equal(get_split(f, "big", &g, &reply, &err), 0);
    assert_int_equal(json_array_size(g.list), NBIG);
    assert_true(json_equal(g.list, json_object_get(whole, "piece_hashes")));
    json_object_set_new(whole, "piece_hashes", json_array());
    assert_true(json_equal(reply, whole));
    json_decref(whole);
    json_decref(reply);
    json_decref(g.list);

    /* each refuses: its error is the call's */
    g.fail_at = 1234;
    assert_int_equal(get_split(f, "big", &g, &reply, &err), -1);
    assert_int_equal(err.code, SHOAL_EUNPROCESSABLE);
    assert_string_equal(err.msg, "element 1234 refused");
    assert_null(reply);
    json_decref(g.list);
}

static void test_each_malformed(void **state)
{
    struct fixture *f = *state;
    struct shoal_err err;
    struct got g = { NULL, 0 };
    json_t *reply = NULL;
    char n[16];
    int i;

    for (i = 3; i <= 7; i++) {
        snprintf(n, sizeof n, "%d", i);
        assert_int_equal(get_split(f, n, &g, &reply, &err), -1);
        assert_int_equal(err.code, SHOAL_EPROTO);
        assert_non_null(strstr(err.msg, "malformed JSON"));
        assert_null(reply);
        json_decref(g.list);
    }
}

static void test_each_not_there(void **state)
{
    struct fixture *f = *state;
    struct shoal_err err;
    struct got g = { NULL, 0 };
    json_t *reply = NULL;
    json_t *whole;
    int i;

    /* not an object, not an array: the answer as it is */
    for (i = 8; i <= 9; i++) {
        char n[16];

        snprintf(n, sizeof n, "%d", i);
        assert_int_equal(get_split(f, n, &g, &reply, &err), 0);
        assert_int_equal(json_array_size(g.list), 0);
        whole = json_loads(raw[i], JSON_DECODE_ANY, NULL);
        assert_true(json_equal(reply, whole));
        json_decref(whole);
        json_decref(reply);
        json_decref(g.list);
    }

    /* an error answer is never split */
    assert_int_equal(get_split(f, "error", &g, &reply, &err), -1);
    assert_int_equal(err.code, SHOAL_ENOTFOUND);
    assert_int_equal(err.status, 404);
    assert_string_equal(err.msg, "no 'error'");
    json_decref(g.list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_body),
        cmocka_unit_test(test_each),
        cmocka_unit_test(test_each_big),
        cmocka_unit_test(test_each_malformed),
        cmocka_unit_test(test_each_not_there),
    };

    if (shoal_crypto_init(NULL) != 0)
        return 1;
    return cmocka_run_group_tests_name("client", tests, setup, teardown);
}
