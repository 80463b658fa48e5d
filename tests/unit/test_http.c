/*
 * test_http.c - the HTTP server wrapper, driven in-process by the HTTP
 * client over loopback: routing (404, 405 with Allow, path parameters),
 * route flags (auth, admin, JSON body), the body limit, error bodies,
 * X-Request-Id, X-Forwarded-For from trusted proxies only.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "client.h"
#include "http.h"
#include "keys.h"
#include "util.h"

static int h_echo(struct shoal_req *req, json_t **reply, struct shoal_err *err)
{
    (void)err;
    *reply = json_pack("{s:s, s:s, s:s?}", "id", shoal_req_param(req, "id"),
                       "ip", shoal_req_ip(req), "q", shoal_req_query(req, "q"));
    return 0;
}

static int h_body(struct shoal_req *req, json_t **reply, struct shoal_err *err)
{
    const char *name;
    if (shoal_json_str(shoal_req_body(req), "name", &name, err) != 0)
        return -1;
    *reply = json_pack("{s:s, s:s}", "name", name, "user",
                       (const char *)shoal_req_user(req));
    shoal_req_set_status(req, 201);
    return 0;
}

static int h_admin(struct shoal_req *req, json_t **reply, struct shoal_err *err)
{
    (void)req;
    (void)err;
    *reply = json_pack("{s:b}", "admin", 1);
    return 0;
}

static int h_text(struct shoal_req *req, json_t **reply, struct shoal_err *err)
{
    (void)reply;
    (void)err;
    return shoal_req_set_body(req, 200, "text/plain", "hello\n", 6);
}

/* A streamed body: counts its bytes, refuses more than 1000. */
struct counted {
    size_t n;
    int begun;
};

static int h_stream_body(struct shoal_req *req, const char *data, size_t len,
                         struct shoal_err *err)
{
    struct counted *c = shoal_req_state(req);
    if (data == NULL) {
        if (strcmp(shoal_req_param(req, "id"), "no") == 0)
            return shoal_err_set(err, SHOAL_EFORBIDDEN, "not this one");
        c = calloc(1, sizeof *c);
        c->begun = 1;
        shoal_req_set_state(req, c, free);
        return 0;
    }
    c->n += len;
    if (c->n > 1000)
        return shoal_err_set(err, SHOAL_ETOOLARGE, "more than 1000 bytes");
    return 0;
}

static int h_stream(struct shoal_req *req, json_t **reply, struct shoal_err *err)
{
    struct counted *c = shoal_req_state(req);
    (void)err;
    *reply = json_pack("{s:I, s:b}", "bytes", (json_int_t)c->n, "begun", c->begun);
    return 0;
}

/* 100 bytes of a file, by sendfile. */
static char fd_path[64];

static int h_fd(struct shoal_req *req, json_t **reply, struct shoal_err *err)
{
    (void)reply;
    int fd = open(fd_path, O_RDONLY);
    if (fd < 0)
        return shoal_err_set(err, SHOAL_EIO, "cannot open");
    return shoal_req_set_fd(req, 206, "application/octet-stream", fd, 10, 100);
}

/* 300000 bytes made by a reader: byte i is i % 251. */
static long gen_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    for (size_t i = 0; i < max; i++)
        buf[i] = (char)((pos + i) % 251);
    return (long)max;
}

static int h_reader(struct shoal_req *req, json_t **reply, struct shoal_err *err)
{
    (void)reply;
    (void)err;
    return shoal_req_set_reader(req, 200, "application/octet-stream", 300000,
                                gen_read, NULL, NULL);
}

static int auth(struct shoal_req *req, const char *bearer,
                struct shoal_err *err)
{
    if (strcmp(bearer, "good") != 0)
        return shoal_err_set(err, SHOAL_ESESSION_UNKNOWN, "unknown session");
    shoal_req_set_user(req, (void *)"alice", NULL);
    return 0;
}

static const struct shoal_route routes[] = {
    { "GET", "/things/{id}", 0, h_echo, NULL, 0 },
    { "DELETE", "/things/{id}", SHOAL_ROUTE_AUTH, h_echo, NULL, 0 },
    { "POST", "/things", SHOAL_ROUTE_AUTH | SHOAL_ROUTE_JSON, h_body, NULL, 0 },
    { "POST", "/admin", SHOAL_ROUTE_ADMIN, h_admin, NULL, 0 },
    { "GET", "/text", 0, h_text, NULL, 0 },
    { "PUT", "/stream/{id}", SHOAL_ROUTE_AUTH | SHOAL_ROUTE_STREAM, h_stream,
      h_stream_body, 0 },
    { "POST", "/big", SHOAL_ROUTE_AUTH | SHOAL_ROUTE_JSON, h_body, NULL, 4096 },
    { "GET", "/fd", 0, h_fd, NULL, 0 },
    { "GET", "/reader", 0, h_reader, NULL, 0 },
};

struct fixture {
    struct shoal_server *srv;
    struct shoal_client *c;
};

static int start(void **state, const char *proxies)
{
    static struct fixture f;
    struct shoal_server_opts o;
    struct shoal_err err;
    char url[64];

    memset(&o, 0, sizeof o);
    o.listen = "127.0.0.1:0";
    o.threads = 2;
    o.max_connections = 64;
    o.idle_timeout = 5;
    o.request_timeout = 5;
    o.body_limit = 256;
    o.routes = routes;
    o.nroutes = sizeof routes / sizeof routes[0];
    o.auth = auth;
    o.admin_token = "s3cret";
    o.trusted_proxies = proxies;
    f.srv = shoal_server_start(&o, &err);
    assert_non_null(f.srv);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", shoal_server_port(f.srv));
    f.c = shoal_client_new(url, 5);
    assert_non_null(f.c);
    *state = &f;
    return 0;
}

static int setup(void **state) { return start(state, NULL); }
static int setup_proxy(void **state) { return start(state, "127.0.0.1"); }

static int teardown(void **state)
{
    struct fixture *f = *state;
    shoal_client_free(f->c);
    shoal_server_stop(f->srv);
    return 0;
}

static void test_params_and_query(void **state)
{
    struct fixture *f = *state;
    json_t *reply = NULL;
    int status = 0;
    assert_int_equal(shoal_client_call(f->c, "GET", "/things/a%20b?q=x", NULL,
                                       &reply, &status, NULL), 0);
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(reply, "id")), "a b");
    assert_string_equal(json_string_value(json_object_get(reply, "q")), "x");
    assert_string_equal(json_string_value(json_object_get(reply, "ip")), "127.0.0.1");
    const char *rid = shoal_client_header(f->c, "X-Request-Id");
    assert_non_null(rid);
    assert_int_equal(strlen(rid), SHOAL_REQ_ID_LEN);
    json_decref(reply);
}

static void test_not_found_and_method(void **state)
{
    struct fixture *f = *state;
    struct shoal_err err;
    int status = 0;
    assert_int_equal(shoal_client_call(f->c, "GET", "/nothing", NULL, NULL,
                                       &status, &err), -1);
    assert_int_equal(status, 404);
    assert_int_equal(err.code, SHOAL_ENOTFOUND);
    /* a parameter never matches an empty segment */
    assert_int_equal(shoal_client_call(f->c, "GET", "/things/", NULL, NULL,
                                       &status, &err), -1);
    assert_int_equal(status, 404);
    assert_int_equal(shoal_client_call(f->c, "PUT", "/things/1", NULL, NULL,
                                       &status, &err), -1);
    assert_int_equal(status, 405);
    assert_int_equal(err.code, SHOAL_EMETHOD);
    const char *allow = shoal_client_header(f->c, "Allow");
    assert_non_null(allow);
    assert_non_null(strstr(allow, "GET"));
    assert_non_null(strstr(allow, "DELETE"));
}

static void test_auth_flag(void **state)
{
    struct fixture *f = *state;
    struct shoal_err err;
    int status = 0;
    json_t *body = json_pack("{s:s}", "name", "n1");

    shoal_client_set_bearer(f->c, NULL);
    assert_int_equal(shoal_client_call(f->c, "POST", "/things", body, NULL,
                                       &status, &err), -1);
    assert_int_equal(status, 400);
    assert_int_equal(err.code, SHOAL_ESESSION_MISSING);

    shoal_client_set_bearer(f->c, "bad");
    assert_int_equal(shoal_client_call(f->c, "POST", "/things", body, NULL,
                                       &status, &err), -1);
    assert_int_equal(status, 403);
    assert_int_equal(err.code, SHOAL_ESESSION_UNKNOWN);

    json_t *reply = NULL;
    shoal_client_set_bearer(f->c, "good");
    assert_int_equal(shoal_client_call(f->c, "POST", "/things", body, &reply,
                                       &status, &err), 0);
    assert_int_equal(status, 201);
    assert_string_equal(json_string_value(json_object_get(reply, "user")), "alice");
    json_decref(reply);
    json_decref(body);
}

static void test_json_flag(void **state)
{
    struct fixture *f = *state;
    struct shoal_err err;
    int status = 0;
    shoal_client_set_bearer(f->c, "good");

    json_t *arr = json_array();
    assert_int_equal(shoal_client_call(f->c, "POST", "/things", arr, NULL,
                                       &status, &err), -1);
    assert_int_equal(status, 400);
    assert_int_equal(err.code, SHOAL_EINVAL);
    json_decref(arr);

    json_t *wrong = json_pack("{s:i}", "name", 3);
    assert_int_equal(shoal_client_call(f->c, "POST", "/things", wrong, NULL,
                                       &status, &err), -1);
    assert_int_equal(status, 400);
    assert_non_null(strstr(err.msg, "name"));
    json_decref(wrong);

    /* "\u0000" is valid JSON but no C string can hold it: refused once,
     * for every handler, naming the member */
    json_t *nul = json_object();
    json_object_set_new(nul, "name", json_stringn("a\0b", 3));
    assert_int_equal(shoal_client_call(f->c, "POST", "/things", nul, NULL,
                                       &status, &err), -1);
    assert_int_equal(status, 400);
    assert_int_equal(err.code, SHOAL_EINVAL);
    assert_non_null(strstr(err.msg, "'name'"));
    json_decref(nul);

    /* a route with its own, larger limit takes what the server's refuses */
    char mid[1000];
    memset(mid, 'm', sizeof mid - 1);
    mid[sizeof mid - 1] = '\0';
    json_t *medium = json_pack("{s:s}", "name", mid);
    assert_int_equal(shoal_client_call(f->c, "POST", "/big", medium, NULL,
                                       &status, &err), 0);
    assert_int_equal(status, 201);
    json_decref(medium);

    /* over the 256-byte limit */
    char big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    json_t *large = json_pack("{s:s}", "name", big);
    assert_int_equal(shoal_client_call(f->c, "POST", "/things", large, NULL,
                                       &status, &err), -1);
    assert_int_equal(status, 413);
    assert_int_equal(err.code, SHOAL_ETOOLARGE);
    json_decref(large);
}

static void test_admin_flag(void **state)
{
    struct fixture *f = *state;
    struct shoal_err err;
    int status = 0;
    shoal_client_set_bearer(f->c, "s3cre");
    assert_int_equal(shoal_client_call(f->c, "POST", "/admin", NULL, NULL,
                                       &status, &err), -1);
    assert_int_equal(status, 403);
    shoal_client_set_bearer(f->c, "good");   /* a session is not the token */
    assert_int_equal(shoal_client_call(f->c, "POST", "/admin", NULL, NULL,
                                       &status, &err), -1);
    assert_int_equal(status, 403);
    shoal_client_set_bearer(f->c, "s3cret");
    assert_int_equal(shoal_client_call(f->c, "POST", "/admin", NULL, NULL,
                                       &status, &err), 0);
    assert_int_equal(status, 200);
}

static void test_raw_body(void **state)
{
    struct fixture *f = *state;
    int status = 0;
    json_t *reply = NULL;
    assert_int_equal(shoal_client_call(f->c, "GET", "/text", NULL, &reply,
                                       &status, NULL), 0);
    assert_int_equal(status, 200);
    assert_null(reply);                      /* not JSON */
    assert_string_equal(shoal_client_header(f->c, "Content-Type"), "text/plain");
}

/* Without trusted proxies, X-Forwarded-For is ignored; with 127.0.0.1 as a
 * trusted proxy, the rightmost untrusted address is the client. */
static void test_forwarded_ignored(void **state)
{
    struct fixture *f = *state;
    json_t *reply = NULL;
    shoal_client_set_bearer(f->c, NULL);
    assert_int_equal(shoal_client_call(f->c, "GET", "/things/1", NULL, &reply,
                                       NULL, NULL), 0);
    assert_string_equal(json_string_value(json_object_get(reply, "ip")), "127.0.0.1");
    json_decref(reply);
}

/* Send a raw request and read the whole answer (the server closes or the
 * 5 s receive timeout ends it). */
static void raw_request(struct fixture *f, const char *req, char *out,
                        size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)shoal_server_port(f->srv)) };
    struct timeval tv = { .tv_sec = 5 };
    assert_true(fd >= 0);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(shoal_write_all(fd, req, strlen(req)), 0);
    size_t used = 0;
    for (int i = 0; i < 100 && used + 1 < cap; i++) {
        ssize_t n = read(fd, out + used, cap - 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    out[used] = '\0';
    close(fd);
}

static void test_forwarded_trusted(void **state)
{
    struct fixture *f = *state;
    char out[4096];
    raw_request(f, "GET /things/1 HTTP/1.1\r\nHost: x\r\n"
                   "X-Forwarded-For: 203.0.113.7, 127.0.0.1\r\n"
                   "Connection: close\r\n\r\n", out, sizeof out);
    assert_non_null(strstr(out, "\"ip\":\"203.0.113.7\""));
    /* a client's own header line comes first; the proxy adds its line
     * after it: the proxy's word counts */
    raw_request(f, "GET /things/1 HTTP/1.1\r\nHost: x\r\n"
                   "X-Forwarded-For: 198.51.100.9\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n"
                   "Connection: close\r\n\r\n", out, sizeof out);
    assert_non_null(strstr(out, "\"ip\":\"203.0.113.7\""));
    /* garbage: the proxy itself stays the client */
    raw_request(f, "GET /things/1 HTTP/1.1\r\nHost: x\r\n"
                   "X-Forwarded-For: not-an-address\r\n"
                   "Connection: close\r\n\r\n", out, sizeof out);
    assert_non_null(strstr(out, "\"ip\":\"127.0.0.1\""));
}

static void test_forwarded_untrusted(void **state)
{
    struct fixture *f = *state;
    char out[4096];
    raw_request(f, "GET /things/1 HTTP/1.1\r\nHost: x\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n"
                   "Connection: close\r\n\r\n", out, sizeof out);
    assert_non_null(strstr(out, "\"ip\":\"127.0.0.1\""));
}

/* A declared body over the limit is refused before it is sent, and the
 * connection is closed. */
static void test_declared_too_large(void **state)
{
    struct fixture *f = *state;
    char out[4096];
    raw_request(f, "POST /things HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer good\r\n"
                   "Content-Type: application/json\r\n"
                   "Content-Length: 100000000\r\n\r\n", out, sizeof out);
    assert_non_null(strstr(out, "HTTP/1.1 413"));
    assert_non_null(strstr(out, "body_too_large"));
}

/* A streamed body reaches the callback in parts, never buffered whole,
 * and is not held to body_limit (256 here); the callback's limit holds. */
static void test_stream_body(void **state)
{
    struct fixture *f = *state;
    char out[4096], req[2048];
    char body[900];
    memset(body, 'b', sizeof body);
    snprintf(req, sizeof req, "PUT /stream/1 HTTP/1.1\r\nHost: x\r\n"
             "Authorization: Bearer good\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%.*s", sizeof body, (int)sizeof body, body);
    raw_request(f, req, out, sizeof out);
    assert_non_null(strstr(out, "HTTP/1.1 200"));
    assert_non_null(strstr(out, "\"bytes\":900"));
    assert_non_null(strstr(out, "\"begun\":true"));

    /* refused before the body: auth first, then the begin callback */
    raw_request(f, "PUT /stream/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                   "Connection: close\r\n\r\nhello", out, sizeof out);
    assert_non_null(strstr(out, "HTTP/1.1 400"));
    raw_request(f, "PUT /stream/no HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
                   "Content-Length: 5\r\nConnection: close\r\n\r\nhello", out, sizeof out);
    assert_non_null(strstr(out, "HTTP/1.1 403"));

    /* the callback's own limit */
    char big[1500];
    memset(big, 'c', sizeof big);
    snprintf(req, sizeof req, "PUT /stream/1 HTTP/1.1\r\nHost: x\r\n"
             "Authorization: Bearer good\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%.*s", sizeof big, (int)sizeof big, big);
    raw_request(f, req, out, sizeof out);
    assert_non_null(strstr(out, "HTTP/1.1 413"));
}

static void test_fd_and_reader(void **state)
{
    struct fixture *f = *state;
    static char out[400000];
    unsigned char data[200];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 7);
    snprintf(fd_path, sizeof fd_path, "/tmp/shoal-test-http-XXXXXX");
    int fd = mkstemp(fd_path);
    assert_true(fd >= 0);
    assert_int_equal(shoal_write_all(fd, data, sizeof data), 0);
    close(fd);

    raw_request(f, "GET /fd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                out, sizeof out);
    assert_non_null(strstr(out, "HTTP/1.1 206"));
    assert_non_null(strstr(out, "Content-Length: 100"));
    char *body = strstr(out, "\r\n\r\n");
    assert_non_null(body);
    assert_memory_equal(body + 4, data + 10, 100);
    unlink(fd_path);

    raw_request(f, "GET /reader HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                out, sizeof out);
    assert_non_null(strstr(out, "Content-Length: 300000"));
    body = strstr(out, "\r\n\r\n") + 4;
    for (size_t i = 0; i < 300000; i += 9973)
        assert_int_equal((unsigned char)body[i], i % 251);
    assert_int_equal((unsigned char)body[299999], 299999 % 251);
}

static void test_canonical_ip(void **state)
{
    char out[SHOAL_IP_MAX];
    (void)state;
    assert_int_equal(shoal_ip_canonical("::ffff:127.0.0.2", out), 0);
    assert_string_equal(out, "127.0.0.2");
    assert_int_equal(shoal_ip_canonical("::1", out), 0);
    assert_string_equal(out, "::1");
    assert_int_equal(shoal_ip_canonical("127.0.0.256", out), -1);
    assert_int_equal(shoal_ip_canonical("localhost", out), -1);
    assert_int_equal(shoal_ip_canonical("", out), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_and_query),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_auth_flag),
        cmocka_unit_test(test_json_flag),
        cmocka_unit_test(test_admin_flag),
        cmocka_unit_test(test_raw_body),
        cmocka_unit_test(test_forwarded_ignored),
        cmocka_unit_test(test_forwarded_untrusted),
        cmocka_unit_test(test_declared_too_large),
        cmocka_unit_test(test_stream_body),
        cmocka_unit_test(test_fd_and_reader),
        cmocka_unit_test(test_canonical_ip),
    };
    if (shoal_crypto_init(NULL) != 0)
        return 1;
    int failed = cmocka_run_group_tests_name("http", tests, setup, teardown);
    const struct CMUnitTest proxy_tests[] = {
        cmocka_unit_test(test_forwarded_trusted),
    };
    failed += cmocka_run_group_tests_name("http behind a proxy", proxy_tests,
                                          setup_proxy, teardown);
    return failed;
}
