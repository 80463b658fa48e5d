/*
 * cmd_group.c - shoal group create NAME [USER...] | add GROUP USER... |
 * rm GROUP USER... | ls | delete GROUP, and finding a group by id or name.
 *
 * add and rm read the group, change its member list and PUT it back
 * (PUT /v1/groups/{id} {"members"}).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "peer.h"
#include "util.h"

/* The groups the caller owns or belongs to: *ans new, *list borrowed. */
static int groups_list(struct pr_ctx *ctx, json_t **ans, json_t **list,
                       struct shoal_err *err)
{
    return pr_call_array(ctx, "GET", "/v1/groups", NULL, "groups",
                         "GET /v1/groups", ans, list, err);
}

/* The group named name among the groups the caller sees (a new reference
 * in *found): its own first, else the one it is a member of. */
static int group_by_name(struct pr_ctx *ctx, const char *name,
                         json_t **found, struct shoal_err *err)
{
    json_t *ans = NULL;
    json_t *list;
    json_t *other = NULL;
    json_t *v;
    size_t i;
    int others = 0;

    if (groups_list(ctx, &ans, &list, err) < 0)
        return -1;
    json_array_foreach(list, i, v) {
        const char *n = json_string_value(json_object_get(v, "name"));
        const char *o = json_string_value(json_object_get(v, "owner_id"));

        if (!n || strcmp(n, name) != 0)
            continue;
        if (o && strcasecmp(o, ctx->id->user_id) == 0) {
            *found = json_incref(v);
            break;
        }
        other = v;
        others++;
    }
    if (!*found && others == 1)
        *found = json_incref(other);
    json_decref(ans);
    if (*found)
        return 0;
    if (others > 1)
        return shoal_err_set(err, SHOAL_EINVAL, "%d groups named '%s' have "
                             "you as a member: give the group id", others,
                             name);
    return shoal_err_set(err, SHOAL_ENOTFOUND, "no group named '%s'", name);
}

int pr_group_find(struct pr_ctx *ctx, const char *arg, json_t **group,
                  char id[37], struct shoal_err *err)
{
    const char *what = "GET /v1/groups";
    json_t *found = NULL;
    char norm[37];
    char path[64];
    int rc;

    if (group)
        *group = NULL;
    if (shoal_uuid_normalize(arg, norm, "group", NULL) == 0) {
        what = "GET /v1/groups/{id}";
        snprintf(path, sizeof(path), "/v1/groups/%s", norm);
        rc = pr_call(ctx, "GET", path, NULL, &found, err);
    } else {
        rc = group_by_name(ctx, arg, &found, err);
    }
    if (rc == 0 && id && shoal_json_uuid(found, "group_id", id, err) < 0)
        rc = pr_err_answer(err, what);
    if (rc == 0 && group)
        *group = found;
    else
        json_decref(found);
    return rc;
}

/* Append the user ids argv[first..argc-1] to members (lowercase). */
static int members_add(json_t *members, int argc, char **argv, int first,
                       struct shoal_err *err)
{
    char id[37];
    int i;

    for (i = first; i < argc; i++) {
        if (shoal_uuid_normalize(argv[i], id, "USER", NULL) < 0)
            return pr_usage_err(err, "USER '%s' is not a user id", argv[i]);
        if (json_array_append_new(members, json_string(id)) < 0)
            return shoal_err_set(err, SHOAL_EIO, "out of memory");
    }
    return 0;
}

static int group_print(const struct pr_ctx *ctx, const json_t *group,
                       const char *line, struct shoal_err *err)
{
    const char *id = json_string_value(json_object_get(group, "group_id"));

    if (ctx->json)
        return pr_json_print(group, err);
    return pr_printf(err, "%s%s\n", line, id ? id : "?");
}

static int group_cmd_create(struct pr_ctx *ctx, int argc, char **argv,
                            struct shoal_err *err)
{
    json_t *body = NULL;
    json_t *group = NULL;
    int rc;

    if (argc < 3)
        return pr_usage_err(err, "'group create' needs a NAME");
    body = json_pack("{s:s, s:[]}", "name", argv[2], "members");
    if (!body)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    rc = members_add(json_object_get(body, "members"), argc, argv, 3, err);
    if (rc == 0)
        rc = pr_call(ctx, "POST", "/v1/groups", body, &group, err);
    if (rc == 0)
        rc = group_print(ctx, group, "", err);
    json_decref(group);
    json_decref(body);
    return rc;
}

/* add (remove 0) or rm (remove 1) members of GROUP. */
static int group_members_change(struct pr_ctx *ctx, int argc, char **argv,
                                int remove, struct shoal_err *err)
{
    json_t *group = NULL;
    json_t *put = NULL;
    json_t *body = NULL;
    json_t *members;
    json_t *change = NULL;
    json_t *v;
    char id[37];
    char path[64];
    size_t i;
    int rc = -1;

    if (argc < 4)
        return pr_usage_err(err, "'group %s' needs a GROUP and USER ids",
                            argv[1]);
    change = json_array();
    if (!change)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    rc = members_add(change, argc, argv, 3, err);
    if (rc < 0)
        goto out;
    rc = -1;
    if (pr_group_find(ctx, argv[2], &group, id, err) < 0)
        goto out;
    if (shoal_json_array(group, "members", &members, err) < 0) {
        pr_err_answer(err, "GET /v1/groups/{id}");
        goto out;
    }
    json_array_foreach(change, i, v) {
        const char *user = json_string_value(v);
        int changed = pr_ids_edit(members, user, remove);

        if (changed < 0) {
            shoal_err_set(err, SHOAL_EIO, "out of memory");
            goto out;
        }
        if (remove && !changed) {
            shoal_err_set(err, SHOAL_ENOTFOUND, "user '%s' is not a member "
                          "of group '%s'", user, argv[2]);
            goto out;
        }
    }
    body = json_pack("{s:O}", "members", members);
    if (!body) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    snprintf(path, sizeof(path), "/v1/groups/%s", id);
    if (pr_call(ctx, "PUT", path, body, &put, err) < 0)
        goto out;
    rc = group_print(ctx, put, remove ? "removed members from group " :
                     "added members to group ", err);
out:
    json_decref(body);
    json_decref(put);
    json_decref(group);
    json_decref(change);
    return rc;
}

static int group_cmd_add(struct pr_ctx *ctx, int argc, char **argv,
                         struct shoal_err *err)
{
    return group_members_change(ctx, argc, argv, 0, err);
}

static int group_cmd_rm(struct pr_ctx *ctx, int argc, char **argv,
                        struct shoal_err *err)
{
    return group_members_change(ctx, argc, argv, 1, err);
}

/* One line of group ls. */
static int group_row(const struct pr_ctx *ctx, const json_t *v,
                     struct shoal_err *err)
{
    const char *id = json_string_value(json_object_get(v, "group_id"));
    const char *name = json_string_value(json_object_get(v, "name"));
    const char *owner = json_string_value(json_object_get(v, "owner_id"));
    size_t members = json_array_size(json_object_get(v, "members"));

    return pr_printf(err, "%s  %-6s %5zu members  %s\n", id ? id : "?",
                     owner && strcasecmp(owner, ctx->id->user_id) == 0 ?
                     "owner" : "member", members, name ? name : "");
}

static int group_cmd_ls(struct pr_ctx *ctx, int argc, char **argv,
                        struct shoal_err *err)
{
    json_t *ans = NULL;
    json_t *list;
    int rc;

    if (argc > 2)
        return pr_usage_err(err, "unexpected argument '%s'", argv[2]);
    if (groups_list(ctx, &ans, &list, err) < 0)
        return -1;
    rc = pr_list_print(ctx, ans, list, group_row, err);
    json_decref(ans);
    return rc;
}

static int group_cmd_delete(struct pr_ctx *ctx, int argc, char **argv,
                            struct shoal_err *err)
{
    char id[37];

    if (argc < 3)
        return pr_usage_err(err, "'group delete' needs a GROUP");
    if (argc > 3)
        return pr_usage_err(err, "unexpected argument '%s'", argv[3]);
    if (pr_group_find(ctx, argv[2], NULL, id, err) < 0)
        return -1;
    return pr_delete(ctx, "group", id, err);
}

static const struct pr_subcmd subcommands[] = {
    { "create", group_cmd_create },
    { "add", group_cmd_add },
    { "rm", group_cmd_rm },
    { "ls", group_cmd_ls },
    { "delete", group_cmd_delete },
    { NULL, NULL },
};

int pr_cmd_group(struct pr_ctx *ctx, int argc, char **argv,
                 struct shoal_err *err)
{
    return pr_subcmd_run(ctx, subcommands, argc, argv, err);
}
