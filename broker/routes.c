/*
 * routes.c - the broker's route table.  A new endpoint is one row here,
 * one handler, one schema, one entry in api/openapi.yaml, one test.
 */
#include "broker.h"

#define AUTH SHOAL_ROUTE_AUTH
#define JSON SHOAL_ROUTE_JSON
#define ADMIN SHOAL_ROUTE_ADMIN
#define STREAM SHOAL_ROUTE_STREAM
#define ADMIN_OK SHOAL_ROUTE_ADMIN_OK

/* A route; a route with its own body limit; a route whose body streams
 * through body_fn. */
#define R(method, path, flags, fn) { method, path, flags, fn, NULL, 0 }
#define RL(method, path, flags, fn, limit) { method, path, flags, fn, NULL, limit }
#define S(method, path, flags, fn, body_fn) \
    { method, path, (flags) | STREAM, fn, body_fn, 0 }

/* A file's piece list: 32 MiB of JSON hold about 480,000 piece hashes,
 * 240 GiB in 512 KiB pieces, 7 TiB in 16 MiB pieces. */
#define MANIFEST_BODY (32u << 20)

const struct shoal_route br_routes[] = {
    R("GET", "/healthz", 0, h_health),
    R("GET", "/metrics", 0, h_metrics),

    R("POST", "/v1/users", JSON, h_user_create),
    R("GET", "/v1/users/{id}", AUTH, h_user_get),
    R("GET", "/v1/users/{id}/trusted", AUTH, h_trusted_get),
    R("PUT", "/v1/users/{id}/trusted", AUTH | JSON, h_trusted_put),
    /* GET: the admin token or the user's own session, checked by the
     * handler. */
    R("GET", "/v1/users/{id}/quota", 0, h_quota_get),
    R("PUT", "/v1/users/{id}/quota", ADMIN | JSON, h_quota_put),

    R("POST", "/v1/sessions", JSON, h_session_create),
    R("GET", "/v1/sessions", AUTH, h_session_list),
    R("GET", "/v1/sessions/{sid}", AUTH, h_session_check),
    R("DELETE", "/v1/sessions/{sid}", AUTH, h_session_delete),

    R("GET", "/v1/trust/sessions", AUTH, h_trust_sessions),

    R("GET", "/v1/brokers", AUTH, h_broker_list),
    R("POST", "/v1/brokers", ADMIN | JSON, h_broker_create),
    R("DELETE", "/v1/brokers/{id}", ADMIN, h_broker_delete),

    R("POST", "/v1/invites", ADMIN, h_invite_create),

    R("POST", "/v1/groups", AUTH | JSON, h_group_create),
    R("GET", "/v1/groups", AUTH, h_group_list),
    R("GET", "/v1/groups/{id}", AUTH, h_group_get),
    R("PUT", "/v1/groups/{id}", AUTH | JSON, h_group_update),
    R("DELETE", "/v1/groups/{id}", AUTH, h_group_delete),

    R("POST", "/v1/shares", AUTH | JSON, h_share_create),
    R("GET", "/v1/shares", AUTH, h_share_list),
    R("GET", "/v1/shares/{id}", AUTH, h_share_get),
    R("PUT", "/v1/shares/{id}", AUTH | JSON, h_share_update),
    R("DELETE", "/v1/shares/{id}", AUTH, h_share_delete),
    R("PUT", "/v1/shares/{id}/acl", AUTH | JSON, h_share_acl_put),
    R("PUT", "/v1/shares/{id}/allocation", ADMIN | JSON, h_share_allocation_put),

    RL("POST", "/v1/files", AUTH | JSON, h_file_create, MANIFEST_BODY),
    R("GET", "/v1/files", AUTH, h_file_list),
    R("GET", "/v1/files/{id}", AUTH, h_file_get),
    RL("PUT", "/v1/files/{id}", AUTH | JSON, h_file_update, MANIFEST_BODY),
    R("DELETE", "/v1/files/{id}", AUTH, h_file_delete),
    R("GET", "/v1/files/{id}/versions", AUTH, h_file_versions),
    R("GET", "/v1/files/{id}/manifest", AUTH, h_file_manifest),
    R("GET", "/v1/files/{id}/have", AUTH, h_piece_have),
    R("GET", "/v1/files/{id}/content", AUTH, h_file_content),
    R("GET", "/v1/files/{id}/pieces/{n}", AUTH, h_piece_get),
    S("PUT", "/v1/files/{id}/pieces/{n}", AUTH, h_piece_put, br_piece_body),
    R("POST", "/v1/files/{id}/peers", AUTH | JSON, h_peer_announce),
    R("GET", "/v1/files/{id}/peers", AUTH, h_peer_list),
    R("DELETE", "/v1/files/{id}/peers", AUTH, h_peer_withdraw),
    R("POST", "/v1/files/{id}/reports", AUTH | JSON, h_report_create),
    R("GET", "/v1/reports", ADMIN, h_report_list),

    R("POST", "/v1/inject", AUTH | JSON, h_inject),
    R("GET", "/v1/inject", AUTH, h_inject_get),
    R("GET", "/v1/swarms/{swarm}", AUTH, h_swarm_get),
    R("GET", "/v1/swarms/{swarm}/peers", AUTH, h_swarm_peers_list),
    R("POST", "/v1/swarms/{swarm}/peers", AUTH | JSON, h_swarm_peers_announce),
    R("DELETE", "/v1/swarms/{swarm}/peers", AUTH, h_swarm_peers_withdraw),
    R("POST", "/v1/challenge", JSON, h_challenge),

    R("GET", "/v1/usage", AUTH | ADMIN_OK, h_usage),
};

const size_t br_nroutes = sizeof br_routes / sizeof br_routes[0];
