/*
 * peer.h - what the files of bin/shoal share: the context a command runs
 * in, the command functions of the table in main.c, option parsing, output
 * and the broker session (session.c).
 *
 * A command has one shape, as git's builtins do:
 *
 *   int pr_cmd_thing(struct pr_ctx *ctx, int argc, char **argv,
 *                    struct shoal_err *err);
 *
 * argv[0] is the command's name.  It returns 0 when done (its output
 * already printed), -1 with err set, or PR_USAGE with err set when the
 * command line is wrong.  main.c turns err into the exit code and prints
 * it, always in the same way.
 */
#ifndef PR_PEER_H
#define PR_PEER_H

#include <jansson.h>

#include "client.h"
#include "err.h"
#include "identity.h"

#define PR_VERSION "0.1.0"

/* Returned by a command (and pr_opts_parse) for a wrong command line. */
#define PR_USAGE (-2)

/* Exit codes of bin/shoal (spec.md). */
enum pr_exit {
    PR_EXIT_OK = 0,
    PR_EXIT_BROKER = 1,     /* failure reported by the broker */
    PR_EXIT_USAGE = 2,      /* wrong command line */
    PR_EXIT_AUTH = 3,       /* 401 or 403 */
    PR_EXIT_NOTFOUND = 4,   /* 404 or 410 */
    PR_EXIT_CONFLICT = 5,   /* 409, or an identity that already exists */
    PR_EXIT_NET = 6,        /* the broker could not be reached */
    PR_EXIT_LOCAL = 7       /* identity, file or other local failure */
};

/* Set-up main.c does before a command runs (flags of the command table).
 * Commands connect themselves (pr_call), after checking their arguments. */
enum pr_cmd_flags {
    PR_RUN_IDENTITY = 1 << 0    /* load the identity into ctx->id */
};

struct pr_ctx {
    char *identity_path;          /* resolved path of the identity file */
    char *session_path;           /* "<identity_path>.session" */
    int json;                     /* --json: one JSON object on stdout */
    struct pr_identity *id;       /* loaded identity, or NULL */
    struct shoal_client *client;  /* client of id->broker, or NULL */
    struct pr_session session;    /* the session the client uses */
    int have_session;             /* 1 when session holds a live session */
    int logged_in;                /* 1 when this run opened that session */
    int relogged;                 /* 1 once a call has logged in again */
};

typedef int (*pr_cmd_fn)(struct pr_ctx *ctx, int argc, char **argv,
                         struct shoal_err *err);

/* The commands (one file each, cmd_<verb>.c). */
int pr_cmd_register(struct pr_ctx *ctx, int argc, char **argv,
                    struct shoal_err *err);
int pr_cmd_login(struct pr_ctx *ctx, int argc, char **argv,
                 struct shoal_err *err);
int pr_cmd_logout(struct pr_ctx *ctx, int argc, char **argv,
                  struct shoal_err *err);
int pr_cmd_whoami(struct pr_ctx *ctx, int argc, char **argv,
                  struct shoal_err *err);
int pr_cmd_sessions(struct pr_ctx *ctx, int argc, char **argv,
                    struct shoal_err *err);
int pr_cmd_trust(struct pr_ctx *ctx, int argc, char **argv,
                 struct shoal_err *err);
int pr_cmd_put(struct pr_ctx *ctx, int argc, char **argv,
               struct shoal_err *err);
int pr_cmd_get(struct pr_ctx *ctx, int argc, char **argv,
               struct shoal_err *err);
int pr_cmd_ls(struct pr_ctx *ctx, int argc, char **argv,
              struct shoal_err *err);
int pr_cmd_rm(struct pr_ctx *ctx, int argc, char **argv,
              struct shoal_err *err);
int pr_cmd_versions(struct pr_ctx *ctx, int argc, char **argv,
                    struct shoal_err *err);
int pr_cmd_share(struct pr_ctx *ctx, int argc, char **argv,
                 struct shoal_err *err);
int pr_cmd_group(struct pr_ctx *ctx, int argc, char **argv,
                 struct shoal_err *err);

/* --- shares and groups by name or id (cmd_share.c, cmd_group.c) --- */

/* The share put uses when none is named, created on first use. */
#define PR_SHARE_DEFAULT "default"

/*
 * The share arg names: a share id, else a share name, the caller's own
 * shares first, then the shares others let it read (a name two of those
 * share is refused: give the id).  arg NULL means PR_SHARE_DEFAULT among
 * the caller's own shares, created when create is set.  *share gets the
 * share object, a new reference, and id its share_id (lowercase); either
 * may be NULL.  -1 with err (SHOAL_ENOTFOUND when there is no such share),
 * or PR_USAGE for an empty name.
 */
int pr_share_find(struct pr_ctx *ctx, const char *arg, int create,
                  json_t **share, char id[37], struct shoal_err *err);

/*
 * The group arg names: a group id, else a group name among the groups the
 * caller owns, then those it is a member of.  *group gets the group
 * object, a new reference, and id its group_id (lowercase); either may be
 * NULL.  -1 with err (SHOAL_ENOTFOUND when none).
 */
int pr_group_find(struct pr_ctx *ctx, const char *arg, json_t **group,
                  char id[37], struct shoal_err *err);

/* Print a line on stdout; -1 with SHOAL_EIO when stdout cannot be
 * written. */
int pr_printf(struct shoal_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* --- options (opts.c) --- */

/*
 * One option of a command: "--name VALUE" (and "--name=VALUE") when value
 * is set, a switch "--name" when flag is set.  A one-letter name is also
 * written "-j VALUE" or "-jVALUE" (and a switch "-f").  A table ends with
 * a NULL name.
 */
struct pr_opt {
    const char *name;      /* without the dashes: "broker" */
    const char **value;    /* receives the value (borrowed from argv) */
    int *flag;             /* set to 1 when the switch is present */
};

/*
 * Parse the options of argv[1..argc-1] (argv[0] is the command's name).
 * The other arguments are moved, in order, to argv[1..n]; "--" ends the
 * options.  Returns n, or PR_USAGE with err set on an unknown option or a
 * missing value.
 */
int pr_opts_parse(const struct pr_opt *opts, int argc, char **argv,
                  struct shoal_err *err);

/* For a command without options nor arguments: 0, or PR_USAGE with err
 * set when argv has more than the command's name. */
int pr_opts_none(int argc, char **argv, struct shoal_err *err);

/* One subcommand of a command ("group ls"); a table ends with a NULL
 * name. */
struct pr_subcmd {
    const char *name;
    pr_cmd_fn fn;
};

/*
 * Run the subcommand argv[1] of command argv[0] from table, for a command
 * whose subcommands take no options: the options of argv are parsed (none
 * is known) and the subcommand gets the other arguments, its own name as
 * argv[1].  PR_USAGE with err set when no subcommand, or an unknown one,
 * is given.
 */
int pr_subcmd_run(struct pr_ctx *ctx, const struct pr_subcmd *table,
                  int argc, char **argv, struct shoal_err *err);

/* Fill err for a wrong command line; always returns PR_USAGE. */
int pr_usage_err(struct shoal_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* --- output (main.c) --- */

/* Print v as one line of compact JSON on stdout.  v is borrowed.
 * -1 with SHOAL_EIO when stdout cannot be written. */
int pr_json_print(const json_t *v, struct shoal_err *err);

/* Print one entry of a list as a line on stdout; -1 with err set. */
typedef int pr_row_fn(const struct pr_ctx *ctx, const json_t *entry,
                      struct shoal_err *err);

/* Print a list answer: ans as it is with --json, else row for each entry
 * of list (borrowed from ans), up to the first that fails. */
int pr_list_print(const struct pr_ctx *ctx, const json_t *ans,
                  const json_t *list, pr_row_fn *row, struct shoal_err *err);

/* Print "shoal: warning: <message>" on stderr (never with secrets). */
void pr_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- the broker session (session.c) --- */

/*
 * Connect to the broker of ctx->id with a live Bearer session: the cached
 * session when it has not expired, else a new one (POST /v1/sessions),
 * which is cached.  Returns the client, borrowed (owned by ctx and freed
 * by pr_ctx_release), or NULL with err set.
 */
struct shoal_client *pr_connect(struct pr_ctx *ctx, struct shoal_err *err);

/*
 * Log in to the broker of ctx->id (POST /v1/sessions), make the client
 * use the new session and cache it.  Creates ctx->client when it is NULL.
 * On success, reply (may be NULL) gets the broker's answer, a new
 * reference.
 */
int pr_login(struct pr_ctx *ctx, json_t **reply, struct shoal_err *err);

/*
 * One authenticated call on ctx->client (see shoal_client_call).  When the
 * broker says the session expired, is unknown (revoked) or is bound to
 * another address, logs in again once and repeats the call.
 */
int pr_call(struct pr_ctx *ctx, const char *method, const char *path,
            const json_t *body, json_t **reply, struct shoal_err *err);

/* pr_call with a body or an answer that req describes
 * (shoal_client_call_req). */
int pr_call_req(struct pr_ctx *ctx, const char *method, const char *path,
                const struct shoal_client_req *req, json_t **reply,
                struct shoal_err *err);

/* 1 when the broker refused the caller's own session on client c:
 * expired, unknown or revoked, or bound to another address (the broker
 * then closes the connection; an ip_mismatch about another session, asked
 * after, does not). */
int pr_session_refused(struct shoal_client *c, const struct shoal_err *err);

/* Free what ctx holds (client, identity, paths). */
void pr_ctx_release(struct pr_ctx *ctx);

/* Turn a failure to read an answer of the broker (a missing or mistyped
 * field) into SHOAL_EPROTO naming the call.  Always returns -1. */
int pr_err_answer(struct shoal_err *err, const char *what);

/*
 * pr_call, then the array key of the answer: *ans gets the answer (a new
 * reference), *list its array (borrowed from *ans).  An answer without
 * that array is SHOAL_EPROTO naming what ("GET /v1/groups") and leaves
 * *ans NULL.
 */
int pr_call_array(struct pr_ctx *ctx, const char *method, const char *path,
                  const json_t *body, const char *key, const char *what,
                  json_t **ans, json_t **list, struct shoal_err *err);

/*
 * Add id to (remove 0) or remove it from (remove 1) the JSON array ids,
 * whose entries are compared without regard to case.  1 when ids changed,
 * 0 when id was there already (add) or was not there (remove), -1 when it
 * cannot be added (out of memory, or ids is not an array).
 */
int pr_ids_edit(json_t *ids, const char *id, int remove);

/* DELETE /v1/<kind>s/<id> ("group", …), then print the answer (--json)
 * or "deleted <kind> <id>". */
int pr_delete(struct pr_ctx *ctx, const char *kind, const char *id,
              struct shoal_err *err);

#endif
