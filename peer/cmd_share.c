/*
 * cmd_share.c - shoal share create NAME | ls | grant SHARE USER|GROUP
 * [--write] | revoke SHARE USER|GROUP | delete SHARE, and finding a share
 * by id or name for the other commands.
 *
 * grant and revoke read the share (its ACL is shown to the owner only),
 * change the lists and PUT the whole ACL back (PUT /v1/shares/{id}/acl).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "peer.h"
#include "util.h"

/* The shares the caller may read: *ans new, *list borrowed from it. */
static int shares_list(struct pr_ctx *ctx, json_t **ans, json_t **list,
                       struct shoal_err *err)
{
    return pr_call_array(ctx, "GET", "/v1/shares", NULL, "shares",
                         "GET /v1/shares", ans, list, err);
}

static int share_create(struct pr_ctx *ctx, const char *name, json_t **share,
                        struct shoal_err *err)
{
    json_t *body = json_pack("{s:s}", "name", name);
    int rc;

    if (!body)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    rc = pr_call(ctx, "POST", "/v1/shares", body, share, err);
    json_decref(body);
    if (rc == 0 && !json_is_string(json_object_get(*share, "share_id"))) {
        json_decref(*share);
        *share = NULL;
        shoal_err_set(err, SHOAL_EPROTO, "no 'share_id'");
        return pr_err_answer(err, "POST /v1/shares");
    }
    return rc;
}

/* The share named name in list: own ones first (*found new reference, or
 * NULL when none).  -1 when several shares of others bear the name. */
static int share_by_name(struct pr_ctx *ctx, json_t *list, const char *name,
                         int own_only, json_t **found, struct shoal_err *err)
{
    json_t *other = NULL;
    int others = 0;
    json_t *v;
    size_t i;

    *found = NULL;
    json_array_foreach(list, i, v) {
        const char *n = json_string_value(json_object_get(v, "name"));
        const char *o = json_string_value(json_object_get(v, "owner_id"));

        if (!n || strcmp(n, name) != 0)
            continue;
        if (o && strcasecmp(o, ctx->id->user_id) == 0) {
            *found = json_incref(v);
            return 0;
        }
        other = v;
        others++;
    }
    if (own_only || others == 0)
        return 0;
    if (others > 1)
        return shoal_err_set(err, SHOAL_EINVAL, "%d shares named '%s' are "
                             "shared with you: give the share id", others,
                             name);
    *found = json_incref(other);
    return 0;
}

int pr_share_find(struct pr_ctx *ctx, const char *arg, int create,
                  json_t **share, char id[37], struct shoal_err *err)
{
    const char *name = arg ? arg : PR_SHARE_DEFAULT;
    const char *what = "GET /v1/shares";
    json_t *ans = NULL;
    json_t *list;
    json_t *found = NULL;
    char norm[37];
    char path[64];
    int rc = -1;

    if (share)
        *share = NULL;
    if (arg && shoal_uuid_normalize(arg, norm, "share", NULL) == 0) {
        what = "GET /v1/shares/{id}";
        snprintf(path, sizeof(path), "/v1/shares/%s", norm);
        rc = pr_call(ctx, "GET", path, NULL, &found, err);
        goto out;
    }
    if (!*name)
        return pr_usage_err(err, "share name is empty");
    if (shares_list(ctx, &ans, &list, err) < 0)
        return -1;
    if (share_by_name(ctx, list, name, arg == NULL, &found, err) < 0)
        goto out;
    if (!found && !arg && create) {
        what = "POST /v1/shares";
        rc = share_create(ctx, name, &found, err);
        if (rc < 0 && err && err->code == SHOAL_EEXISTS) {
            /* made by a put running beside this one */
            what = "GET /v1/shares";
            json_decref(ans);
            ans = NULL;
            rc = -1;
            if (shares_list(ctx, &ans, &list, err) < 0 ||
                share_by_name(ctx, list, name, 1, &found, err) < 0)
                goto out;
            rc = found ? 0 : -1;
        }
        goto out;
    }
    if (!found) {
        if (arg)
            shoal_err_set(err, SHOAL_ENOTFOUND, "no share named '%s'", name);
        else
            shoal_err_set(err, SHOAL_ENOTFOUND, "you have no share named "
                          "'%s' yet (put creates it)", name);
        goto out;
    }
    rc = 0;
out:
    json_decref(ans);
    if (rc == 0 && id && shoal_json_uuid(found, "share_id", id, err) < 0)
        rc = pr_err_answer(err, what);
    if (rc == 0 && share)
        *share = found;
    else
        json_decref(found);
    return rc;
}

/* --- subcommands ---------------------------------------------------------- */

static int share_cmd_create(struct pr_ctx *ctx, int argc, char **argv,
                            struct shoal_err *err)
{
    json_t *share = NULL;
    int rc;

    if (argc < 3)
        return pr_usage_err(err, "'share create' needs a NAME");
    if (argc > 3)
        return pr_usage_err(err, "unexpected argument '%s'", argv[3]);
    if (share_create(ctx, argv[2], &share, err) < 0)
        return -1;
    if (ctx->json)
        rc = pr_json_print(share, err);
    else
        rc = pr_printf(err, "%s\n", json_string_value(
                           json_object_get(share, "share_id")));
    json_decref(share);
    return rc;
}

/* One line of share ls. */
static int share_row(const struct pr_ctx *ctx, const json_t *v,
                     struct shoal_err *err)
{
    const char *id = json_string_value(json_object_get(v, "share_id"));
    const char *access = json_string_value(json_object_get(v, "access"));
    const char *name = json_string_value(json_object_get(v, "name"));
    json_int_t used = json_integer_value(json_object_get(v, "used"));

    (void)ctx;
    return pr_printf(err, "%s  %-5s  %12lld  %s\n", id ? id : "?",
                     access ? access : "?", (long long)used,
                     name ? name : "");
}

static int share_cmd_ls(struct pr_ctx *ctx, int argc, char **argv,
                        struct shoal_err *err)
{
    json_t *ans = NULL;
    json_t *list;
    int rc;

    if (argc > 2)
        return pr_usage_err(err, "unexpected argument '%s'", argv[2]);
    if (shares_list(ctx, &ans, &list, err) < 0)
        return -1;
    rc = pr_list_print(ctx, ans, list, share_row, err);
    json_decref(ans);
    return rc;
}

/* The array of ids at acl[perm][kind] (borrowed; NULL when missing). */
static json_t *acl_list(json_t *acl, const char *perm, const char *kind)
{
    return json_object_get(json_object_get(acl, perm), kind);
}

/*
 * Who SHARE USER|GROUP means: a UUID that is a group the caller can see is
 * that group, another UUID a user; a name is a group name.  kind gets
 * "users" or "groups", id the lowercase id.
 */
static int grantee_find(struct pr_ctx *ctx, const char *arg,
                        const char **kind, char id[37], struct shoal_err *err)
{
    struct shoal_err gerr;

    if (shoal_uuid_normalize(arg, id, "grantee", NULL) == 0) {
        shoal_err_clear(&gerr);
        if (pr_group_find(ctx, id, NULL, NULL, &gerr) == 0) {
            *kind = "groups";
            return 0;
        }
        if (gerr.code != SHOAL_ENOTFOUND) {
            if (err)
                *err = gerr;
            return -1;
        }
        *kind = "users";
        return 0;
    }
    if (pr_group_find(ctx, arg, NULL, id, err) < 0)
        return -1;
    *kind = "groups";
    return 0;
}

/* grant (write: 0 read, 1 write) or revoke (write -1). */
static int share_acl_change(struct pr_ctx *ctx, int argc, char **argv,
                            int write, struct shoal_err *err)
{
    json_t *share = NULL;
    json_t *put = NULL;
    json_t *acl;
    const char *kind = "users";
    const char *name;
    char share_id[37];
    char id[37];
    char path[80];
    int had;
    int rc = -1;

    if (argc < 4)
        return pr_usage_err(err, "'share %s' needs a SHARE and a USER or "
                            "GROUP", argv[1]);
    if (argc > 4)
        return pr_usage_err(err, "unexpected argument '%s'", argv[4]);
    if (pr_share_find(ctx, argv[2], 0, &share, share_id, err) < 0)
        return -1;
    name = json_string_value(json_object_get(share, "name"));
    acl = json_object_get(share, "acl");
    if (!json_is_object(acl)) {
        shoal_err_set(err, SHOAL_EFORBIDDEN, "only the owner of share '%s' "
                      "may change who uses it", name ? name : share_id);
        goto out;
    }
    if (grantee_find(ctx, argv[3], &kind, id, err) < 0)
        goto out;
    had = pr_ids_edit(acl_list(acl, "read", kind), id, 1);
    had |= pr_ids_edit(acl_list(acl, "write", kind), id, 1);
    if (write < 0 && !had) {
        shoal_err_set(err, SHOAL_ENOTFOUND, "%s '%s' has no access to share "
                      "'%s'", kind[0] == 'u' ? "user" : "group", id,
                      name ? name : share_id);
        goto out;
    }
    if (write >= 0 &&
        pr_ids_edit(acl_list(acl, write ? "write" : "read", kind), id, 0) < 0) {
        shoal_err_set(err, SHOAL_EPROTO, "share '%s' has a malformed acl",
                      share_id);
        goto out;
    }
    snprintf(path, sizeof(path), "/v1/shares/%s/acl", share_id);
    if (pr_call(ctx, "PUT", path, acl, &put, err) < 0)
        goto out;
    if (ctx->json)
        rc = pr_json_print(put, err);
    else if (write < 0)
        rc = pr_printf(err, "revoked access of %s %s to share '%s'\n",
                       kind[0] == 'u' ? "user" : "group", id,
                       name ? name : share_id);
    else
        rc = pr_printf(err, "granted %s on share '%s' to %s %s\n",
                       write ? "write" : "read", name ? name : share_id,
                       kind[0] == 'u' ? "user" : "group", id);
out:
    json_decref(put);
    json_decref(share);
    return rc;
}

static int share_cmd_grant(struct pr_ctx *ctx, int argc, char **argv,
                           struct shoal_err *err)
{
    int write = 0;
    const struct pr_opt opts[] = {
        { "write", NULL, &write },
        { NULL, NULL, NULL },
    };
    int n = pr_opts_parse(opts, argc - 1, argv + 1, err);

    if (n < 0)
        return n;
    return share_acl_change(ctx, n + 2, argv, write, err);
}

static int share_cmd_revoke(struct pr_ctx *ctx, int argc, char **argv,
                            struct shoal_err *err)
{
    return share_acl_change(ctx, argc, argv, -1, err);
}

static int share_cmd_delete(struct pr_ctx *ctx, int argc, char **argv,
                            struct shoal_err *err)
{
    char id[37];

    if (argc < 3)
        return pr_usage_err(err, "'share delete' needs a SHARE");
    if (argc > 3)
        return pr_usage_err(err, "unexpected argument '%s'", argv[3]);
    if (pr_share_find(ctx, argv[2], 0, NULL, id, err) < 0)
        return -1;
    return pr_delete(ctx, "share", id, err);
}

/* grant parses options of its own: the options are parsed past the
 * subcommand here, not by pr_subcmd_run. */
static const struct pr_subcmd subcommands[] = {
    { "create", share_cmd_create },
    { "ls", share_cmd_ls },
    { "grant", share_cmd_grant },
    { "revoke", share_cmd_revoke },
    { "delete", share_cmd_delete },
    { NULL, NULL },
};

int pr_cmd_share(struct pr_ctx *ctx, int argc, char **argv,
                 struct shoal_err *err)
{
    const struct pr_subcmd *t;

    /* "grant" has an option of its own: parse past the subcommand */
    if (argc < 2 || argv[1][0] == '-')
        return pr_usage_err(err, "'share' needs a subcommand: create, ls, "
                            "grant, revoke or delete");
    for (t = subcommands; t->name; t++) {
        if (strcmp(argv[1], t->name) != 0)
            continue;
        if (t->fn != share_cmd_grant) {
            int n = pr_opts_parse(NULL, argc - 1, argv + 1, err);
            if (n < 0)
                return n;
            argc = n + 2;
        }
        return t->fn(ctx, argc, argv, err);
    }
    return pr_usage_err(err, "unknown subcommand 'share %s'", argv[1]);
}
