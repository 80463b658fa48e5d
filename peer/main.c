/*
 * main.c - bin/shoal: global flags, the command table, usage, dispatch,
 * and the one place that turns an error into output and an exit code.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "peer.h"
#include "serve.h"
#include "urlfetch.h"
#include "util.h"

struct cmd {
    const char *name;
    pr_cmd_fn fn;
    const char *usage;   /* synopsis and options, after "usage: shoal " */
    const char *help;    /* one line for the command list */
    unsigned flags;      /* enum pr_cmd_flags */
};

static int cmd_help(struct pr_ctx *ctx, int argc, char **argv,
                    struct shoal_err *err);

static const struct cmd commands[] = {
    { "register", pr_cmd_register,
      "register --broker URL [--invite TOKEN] [--force]\n"
      "\n"
      "  --broker URL    the broker to register with (http:// or https://)\n"
      "  --invite TOKEN  invite from the operator, when registration needs one\n"
      "  --force         replace an existing identity (it is lost)",
      "create an identity and register it with a broker", 0 },
    { "login", pr_cmd_login, "login",
      "open a new session with the broker and cache it", PR_RUN_IDENTITY },
    { "logout", pr_cmd_logout, "logout",
      "close the cached session and forget it", PR_RUN_IDENTITY },
    { "whoami", pr_cmd_whoami, "whoami",
      "show the identity and check that the broker knows it",
      PR_RUN_IDENTITY },
    { "sessions", pr_cmd_sessions, "sessions",
      "list the live sessions of this user (* marks this one)",
      PR_RUN_IDENTITY },
    { "trust", pr_cmd_trust,
      "trust add USER_ID\n"
      "   or: shoal trust rm USER_ID\n"
      "   or: shoal trust ls\n"
      "\n"
      "  add  trust a user: they may use this peer's trust bubble\n"
      "  rm   stop trusting a user\n"
      "  ls   list the users trusted",
      "manage the users this user trusts", PR_RUN_IDENTITY },
    { "put", pr_cmd_put,
      "put FILE [--share NAME|ID] [--path P] [--name N] [--piece-size N]\n"
      "          [-j CONNECTIONS]\n"
      "\n"
      "  --share NAME|ID   the share to store in (default: your share\n"
      "                    'default', created on first use)\n"
      "  --path P          folder path in the share, \"a/b\" (default: \"\")\n"
      "  --name N          file name (default: FILE's base name)\n"
      "  --piece-size N    bytes per piece, a power of two from 16K to 16M\n"
      "                    (default: the existing file's, else 512K, or\n"
      "                    larger for a file of more than 262144 pieces)\n"
      "  -j, --jobs N      parallel connections (default 4)\n"
      "\n"
      "Prints the file id.  A file already at that place gets a new version\n"
      "when its content differs.  Running put again resumes: the pieces the\n"
      "broker holds are not sent again.",
      "upload a file (or a new version of it)", PR_RUN_IDENTITY },
    { "get", pr_cmd_get,
      "get ID [-o OUT] [--version N] [-j PER_SOURCE] [--sources]\n"
      "       [--stall SECS] [--data-dir DIR] [--keep | --no-keep]\n"
      "\n"
      "  -o, --output OUT  where to write (default: the file's name, here)\n"
      "  --version N       a version other than the latest\n"
      "  -j, --jobs N      requests in flight per source (default 4)\n"
      "  --sources         tell who served what, on stderr (and as\n"
      "                    \"sources\" with --json)\n"
      "  --stall SECS      drop a source that sends nothing this long\n"
      "                    (default 5)\n"
      "  --data-dir DIR    the peer's data folder (as for seed): it keeps\n"
      "                    the manifest and who served it\n"
      "  --keep            keep the pieces there too, for 'shoal serve'\n"
      "                    (the default when a serve runs on the folder:\n"
      "                    it shares them as they arrive)\n"
      "  --no-keep         never keep the pieces\n"
      "\n"
      "Downloads from the broker and every peer the tracker lists, rarest\n"
      "piece first.  The manifest's signature is checked against the\n"
      "pinned broker key and every piece against the manifest before it is\n"
      "written; a source that sends a bad piece, stalls or disconnects is\n"
      "dropped and its pieces taken from the others.  An OUT that exists\n"
      "is resumed: the pieces in it that check out are kept.  When the\n"
      "broker cannot be reached, the manifest kept in the data folder is\n"
      "used (give -o) and the holders are found through the peers known\n"
      "there (their GET /v1/peers).",
      "download a file, verifying every piece", PR_RUN_IDENTITY },
    { "seed", pr_cmd_seed,
      "seed ID PATH [--version N] [--data-dir DIR]\n"
      "\n"
      "  --version N     a version other than the latest\n"
      "  --data-dir DIR  the peer's data folder (default\n"
      "                  $XDG_DATA_HOME/shoal, else ~/.local/share/shoal)\n"
      "\n"
      "PATH must hold the version's bytes (e.g. from 'shoal get'): the\n"
      "manifest's signature is checked against the pinned broker key and\n"
      "every piece of PATH against the manifest as it is stored.  A running\n"
      "'shoal serve' serves it from its next round (at once on SIGHUP).",
      "offer a file you hold to other peers (see serve)", PR_RUN_IDENTITY },
    { "serve", pr_cmd_serve,
      "serve [--listen ADDR:PORT] [--advertise URL] [--data-dir DIR]\n"
      "            [--max-storage SIZE] [--max-seed-ratio R] [--auth-ttl SECS]\n"
      "            [--max-upload-rate RATE] [--max-web-age SECS]\n"
      "            [--announce-interval SECS] [--trust-interval SECS]\n"
      "\n"
      "  --listen ADDR:PORT       where to listen (default 127.0.0.1:7070)\n"
      "  --advertise URL          the URL others reach it at, announced to\n"
      "                           the tracker (default http://LISTEN)\n"
      "  --data-dir DIR           the peer's data folder (as for seed)\n"
      "  --max-storage SIZE       serve versions up to this many bytes in all\n"
      "                           (e.g. 20GiB; default: no limit)\n"
      "  --max-seed-ratio R       stop serving a version once R times its\n"
      "                           size has been uploaded (default 3; 0: never)\n"
      "  --max-upload-rate RATE   send content and pieces at most this many\n"
      "                           bytes a second in all (e.g. 2M; default:\n"
      "                           no limit)\n"
      "  --max-web-age SECS       stop seeding a web object kept by fetch this\n"
      "                           long after its injection (default 7d; 0:\n"
      "                           never), or once a newer one of its URL is held\n"
      "  --auth-ttl SECS          keep the broker's yes to a session this long\n"
      "                           (default 60)\n"
      "  --announce-interval SECS (default: half the broker's peer_ttl)\n"
      "  --trust-interval SECS    pull the trust bubble this often (default 30)\n"
      "\n"
      "Serves the versions the data folder holds to users the broker lets\n"
      "read them, keeps their announcements fresh, and withdraws them on\n"
      "SIGTERM or SIGINT.  SIGHUP takes in versions seeded meanwhile.",
      "serve what this peer holds to other peers", PR_RUN_IDENTITY },
    { "fetch", pr_cmd_fetch,
      "fetch URL [-o FILE] [-X METHOD] [-d DATA] [-H 'NAME: VALUE']...\n"
      "            [--no-origin] [--no-proxy] [--data-dir DIR]\n"
      "\n"
      "  -o, --output FILE  where to write (default: stdout)\n"
      "  -X, --method M     request method (default GET)\n"
      "  -d, --data DATA    request body (makes the request dynamic)\n"
      "  -H, --header H     a request header, 'Name: value' (repeatable)\n"
      "  --no-origin        never connect to the origin: the URL's swarm,\n"
      "                     then the injector\n"
      "  --no-proxy         use no injector proxy (none is used yet)\n"
      "  --data-dir DIR     the peer's data folder (as for seed)\n"
      "\n"
      "A static request (GET, no body, no credentials or cookies, no\n"
      "Cache-Control: private or no-store) asks the origin and the URL's\n"
      "swarm at once; a swarm copy is used only when an injector key the\n"
      "identity pins signed it and it has not expired; without one the\n"
      "broker's injector is asked.  What came from the swarm or the\n"
      "injector is kept in the data folder for 'shoal serve' to seed.\n"
      "A dynamic request goes to the origin only.  The method that worked\n"
      "is remembered per domain.  With --json and no -o, the summary goes\n"
      "to stderr.",
      "fetch a web object from its origin, its swarm or an injector", 0 },
    { "ls", pr_cmd_ls,
      "ls [--share NAME|ID]\n"
      "\n"
      "  --share NAME|ID   the share to list (default: 'default')",
      "list the files of a share", PR_RUN_IDENTITY },
    { "rm", pr_cmd_rm, "rm ID", "delete a file (every version)",
      PR_RUN_IDENTITY },
    { "versions", pr_cmd_versions, "versions ID",
      "list the versions of a file", PR_RUN_IDENTITY },
    { "share", pr_cmd_share,
      "share create NAME\n"
      "   or: shoal share ls\n"
      "   or: shoal share grant SHARE USER|GROUP [--write]\n"
      "   or: shoal share revoke SHARE USER|GROUP\n"
      "   or: shoal share delete SHARE\n"
      "\n"
      "  create  make a share, print its id\n"
      "  ls      list the shares you may read\n"
      "  grant   let a user (id) or a group (id or name) read the share,\n"
      "          or also write with --write (the owner only)\n"
      "  revoke  take that access away\n"
      "  delete  delete an empty share\n"
      "\n"
      "SHARE is a share id or name.",
      "manage shares and who may use them", PR_RUN_IDENTITY },
    { "group", pr_cmd_group,
      "group create NAME [USER...]\n"
      "   or: shoal group add GROUP USER...\n"
      "   or: shoal group rm GROUP USER...\n"
      "   or: shoal group ls\n"
      "   or: shoal group delete GROUP\n"
      "\n"
      "  create  make a group with these members (user ids), print its id\n"
      "  add     add members\n"
      "  rm      remove members\n"
      "  ls      list the groups you own or belong to\n"
      "  delete  delete a group\n"
      "\n"
      "GROUP is a group id or name.",
      "manage groups of users", PR_RUN_IDENTITY },
    { "help", cmd_help, "help [COMMAND]", "show help on shoal or a command",
      0 },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char global_usage[] =
    "usage: shoal [--identity PATH] [--json] COMMAND [ARGS]\n"
    "       shoal --help | --version\n";

static const char global_flags[] =
    "global flags (before or after the command):\n"
    "  --identity PATH  identity file (default\n"
    "                   $XDG_CONFIG_HOME/shoal/identity.json, else\n"
    "                   ~/.config/shoal/identity.json)\n"
    "  --json           print one JSON object on stdout, errors included\n"
    "  --help           show help ('shoal COMMAND --help' for a command)\n"
    "  --version        print the version\n"
    "\n"
    "exit codes: 0 ok, 1 failure reported by the broker, 2 usage error,\n"
    "  3 authentication (401/403), 4 not found (404/410), 5 conflict (409,\n"
    "  or an identity that already exists), 6 broker unreachable,\n"
    "  7 local failure (identity, file, I/O)\n";

int pr_json_print(const json_t *v, struct shoal_err *err)
{
    if (json_dumpf(v, stdout, JSON_COMPACT) < 0 || fputc('\n', stdout) < 0 ||
        fflush(stdout) != 0)
        return shoal_err_set(err, SHOAL_EIO, "cannot write to stdout");
    return 0;
}

int pr_list_print(const struct pr_ctx *ctx, const json_t *ans,
                  const json_t *list, pr_row_fn *row, struct shoal_err *err)
{
    const json_t *v;
    size_t i;

    if (ctx->json)
        return pr_json_print(ans, err);
    json_array_foreach(list, i, v)
        if (row(ctx, v, err) < 0)
            return -1;
    return 0;
}

int pr_printf(struct shoal_err *err, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = vprintf(fmt, ap);
    va_end(ap);
    if (rc < 0)
        return shoal_err_set(err, SHOAL_EIO, "cannot write to stdout");
    return 0;
}

void pr_warn(const char *fmt, ...)
{
    va_list ap;

    fputs("shoal: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static const struct cmd *find_cmd(const char *name)
{
    size_t i;

    for (i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* The full help of shoal (cmd NULL) or of one command, on stdout. */
static int print_help(const struct pr_ctx *ctx, const struct cmd *cmd)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f;
    size_t i;
    int rc = PR_EXIT_OK;

    f = open_memstream(&text, &size);
    if (!f)
        return PR_EXIT_LOCAL;
    if (cmd) {
        fprintf(f, "usage: shoal %s\n\n%s\n", cmd->usage, cmd->help);
    } else {
        fputs(global_usage, f);
        fputs("\ncommands:\n", f);
        for (i = 0; i < NCOMMANDS; i++)
            fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
        fputc('\n', f);
        fputs(global_flags, f);
    }
    if (fclose(f) != 0 || !text)
        return PR_EXIT_LOCAL;
    if (ctx->json) {
        json_t *v = json_pack("{s:s?, s:s}", "command", cmd ? cmd->name : NULL,
                              "usage", text);
        if (!v || pr_json_print(v, NULL) < 0)
            rc = PR_EXIT_LOCAL;
        json_decref(v);
    } else if (fputs(text, stdout) < 0 || fflush(stdout) != 0) {
        rc = PR_EXIT_LOCAL;
    }
    free(text);
    return rc;
}

/* The exit code of a failure (spec.md). */
static int exit_code(const struct shoal_err *err)
{
    int status;

    switch (err->code) {
    case SHOAL_ENET:
        return PR_EXIT_NET;
    case SHOAL_EIO:
        return PR_EXIT_LOCAL;
    case SHOAL_EPROTO:
    case SHOAL_OK:
        return PR_EXIT_BROKER;
    default:
        break;
    }
    status = err->status ? err->status : shoal_code_status(err->code);
    switch (status) {
    case 401:
    case 403:
        return PR_EXIT_AUTH;
    case 404:
    case 410:
        return PR_EXIT_NOTFOUND;
    case 409:
        return PR_EXIT_CONFLICT;
    default:
        return PR_EXIT_BROKER;
    }
}

/*
 * Report a failure and return its exit code: "shoal: <message>" on stderr,
 * or with --json {"error":{"code","message"}} on stdout.  usage: the
 * command line was wrong (cmd, when known, gets its synopsis shown).
 */
static int fail(const struct pr_ctx *ctx, const struct shoal_err *err,
                int usage, const struct cmd *cmd)
{
    const char *msg = err->msg[0] ? err->msg : shoal_code_name(err->code);
    int code = usage ? PR_EXIT_USAGE : exit_code(err);

    if (ctx->json) {
        json_t *v = json_pack("{s:{s:s, s:s}}", "error", "code",
                              usage ? "usage" : shoal_code_name(err->code),
                              "message", msg);
        if (v)
            pr_json_print(v, NULL);
        json_decref(v);
        return code;
    }
    fprintf(stderr, "shoal: %s\n", msg);
    if (usage && cmd) {
        /* the synopsis: the usage up to its first blank line */
        const char *end = strstr(cmd->usage, "\n\n");
        int len = end ? (int)(end - cmd->usage) : (int)strlen(cmd->usage);
        fprintf(stderr, "usage: shoal %.*s\n", len, cmd->usage);
    }
    else if (usage)
        fputs("see 'shoal --help'\n", stderr);
    return code;
}

static int cmd_help(struct pr_ctx *ctx, int argc, char **argv,
                    struct shoal_err *err)
{
    const struct cmd *cmd = NULL;
    int n;

    n = pr_opts_parse(NULL, argc, argv, err);
    if (n < 0)
        return n;
    if (n > 1)
        return pr_usage_err(err, "'help' takes at most one command");
    if (n == 1 && !(cmd = find_cmd(argv[1])))
        return pr_usage_err(err, "unknown command '%s'", argv[1]);
    if (print_help(ctx, cmd) != PR_EXIT_OK)
        return shoal_err_set(err, SHOAL_EIO, "cannot write to stdout");
    return 0;
}

/* 1 when args (before any "--") ask for help. */
static int wants_help(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return 0;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    }
    return 0;
}

static void log_setup(void)
{
    const char *s = getenv("SHOAL_LOG_LEVEL");
    enum shoal_log_level level = SHOAL_LOG_WARN;

    if (s && shoal_log_level_parse(s, &level) < 0)
        level = SHOAL_LOG_WARN;
    shoal_log_set_level(level);
}

/*
 * Take the global flags out of argv (they may come before or after the
 * command; "--" ends them) and leave the command and its arguments in
 * rest.  Returns 0, or PR_USAGE with err set.
 */
static int global_flags_parse(struct pr_ctx *ctx, int argc, char **argv,
                              const char **identity, int *help, int *version,
                              char **rest, int *nrest, struct shoal_err *err)
{
    int have_cmd = 0;
    int i;

    *nrest = 0;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--") == 0) {
            if (!have_cmd)
                return pr_usage_err(err, "no command before '--'");
            for (; i < argc; i++)
                rest[(*nrest)++] = argv[i];
            break;
        }
        if (strcmp(a, "--json") == 0) {
            ctx->json = 1;
        } else if (strcmp(a, "--identity") == 0) {
            if (i + 1 >= argc)
                return pr_usage_err(err, "option '--identity' needs a value");
            *identity = argv[++i];
        } else if (strncmp(a, "--identity=", 11) == 0) {
            *identity = a + 11;
        } else if (have_cmd) {
            rest[(*nrest)++] = argv[i];
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = 1;
        } else if (strcmp(a, "--version") == 0) {
            *version = 1;
        } else if (a[0] == '-' && a[1]) {
            return pr_usage_err(err, "unknown option '%s'", a);
        } else {
            have_cmd = 1;
            rest[(*nrest)++] = argv[i];
        }
    }
    if (*identity && !**identity)
        return pr_usage_err(err, "option '--identity' is empty");
    return 0;
}

static int run(struct pr_ctx *ctx, int argc, char **argv)
{
    struct shoal_err err;
    const struct cmd *cmd = NULL;
    const char *identity = NULL;
    char **rest;
    int nrest = 0;
    int help = 0;
    int version = 0;
    int rc;

    shoal_err_clear(&err);
    rest = calloc((size_t)argc + 1, sizeof(*rest));
    if (!rest) {
        shoal_err_set(&err, SHOAL_EIO, "out of memory");
        return fail(ctx, &err, 0, NULL);
    }
    rc = global_flags_parse(ctx, argc, argv, &identity, &help, &version, rest,
                            &nrest, &err);
    if (rc < 0) {
        rc = fail(ctx, &err, 1, NULL);
        goto out;
    }
    if (nrest > 0 && !(cmd = find_cmd(rest[0]))) {
        pr_usage_err(&err, "unknown command '%s'", rest[0]);
        rc = fail(ctx, &err, 1, NULL);
        goto out;
    }
    if (version && !cmd) {
        json_t *v = json_pack("{s:s}", "version", PR_VERSION);
        if (ctx->json)
            rc = v && pr_json_print(v, NULL) == 0 ? 0 : PR_EXIT_LOCAL;
        else
            rc = printf("shoal %s\n", PR_VERSION) < 0 ? PR_EXIT_LOCAL : 0;
        json_decref(v);
        goto out;
    }
    if (help || (cmd && wants_help(nrest, rest))) {
        rc = print_help(ctx, cmd);
        goto out;
    }
    if (!cmd) {
        pr_usage_err(&err, "no command given");
        rc = fail(ctx, &err, 1, NULL);
        goto out;
    }

    ctx->identity_path = pr_identity_path(identity, &err);
    if (!ctx->identity_path) {
        rc = fail(ctx, &err, 0, cmd);
        goto out;
    }
    ctx->session_path = pr_session_path(ctx->identity_path);
    if (!ctx->session_path) {
        shoal_err_set(&err, SHOAL_EIO, "out of memory");
        rc = fail(ctx, &err, 0, cmd);
        goto out;
    }
    if (cmd->flags & PR_RUN_IDENTITY) {
        ctx->id = pr_identity_new();
        if (!ctx->id) {
            shoal_err_set(&err, SHOAL_EIO, "out of memory");
            rc = fail(ctx, &err, 0, cmd);
            goto out;
        }
        if (pr_identity_load(ctx->identity_path, ctx->id, &err) < 0) {
            rc = fail(ctx, &err, 0, cmd);
            goto out;
        }
    }

    rc = cmd->fn(ctx, nrest, rest, &err);
    if (rc == PR_USAGE)
        rc = fail(ctx, &err, 1, cmd);
    else if (rc < 0)
        rc = fail(ctx, &err, 0, cmd);
    else
        rc = PR_EXIT_OK;
out:
    free(rest);
    return rc;
}

int main(int argc, char **argv)
{
    struct pr_ctx ctx;
    int rc;

    memset(&ctx, 0, sizeof(ctx));
    log_setup();
    rc = run(&ctx, argc, argv);
    pr_ctx_release(&ctx);
    if (fflush(stdout) != 0 && rc == PR_EXIT_OK)
        rc = PR_EXIT_LOCAL;
    return rc;
}
