/*
 * routes.c - the broker's route table.  A new endpoint is one row here,
 * one handler, one schema, one entry in api/openapi.yaml, one test.
 */
#include "broker.h"

#define AUTH SHOAL_ROUTE_AUTH
#define JSON SHOAL_ROUTE_JSON
#define ADMIN SHOAL_ROUTE_ADMIN

const struct shoal_route br_routes[] = {
    { "GET",    "/healthz",                  0,           h_health },
    { "GET",    "/metrics",                  0,           h_metrics },

    { "POST",   "/v1/users",                 JSON,        h_user_create },
    { "GET",    "/v1/users/{id}",            AUTH,        h_user_get },
    { "GET",    "/v1/users/{id}/trusted",    AUTH,        h_trusted_get },
    { "PUT",    "/v1/users/{id}/trusted",    AUTH | JSON, h_trusted_put },

    { "POST",   "/v1/sessions",              JSON,        h_session_create },
    { "GET",    "/v1/sessions",              AUTH,        h_session_list },
    { "GET",    "/v1/sessions/{sid}",        AUTH,        h_session_check },
    { "DELETE", "/v1/sessions/{sid}",        AUTH,        h_session_delete },

    { "GET",    "/v1/trust/sessions",        AUTH,        h_trust_sessions },

    { "GET",    "/v1/brokers",               AUTH,        h_broker_list },
    { "POST",   "/v1/brokers",               ADMIN | JSON, h_broker_create },
    { "DELETE", "/v1/brokers/{id}",          ADMIN,       h_broker_delete },

    { "POST",   "/v1/invites",               ADMIN,       h_invite_create },
};

const size_t br_nroutes = sizeof br_routes / sizeof br_routes[0];
