-- 002: the metadata and file broker: groups, shares and their ACLs,
-- files, versions and their pieces, quotas.

ALTER TABLE users ADD COLUMN quota bigint CHECK (quota >= 0);  -- NULL: none

CREATE TABLE groups (
    group_id    uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, name)
);

CREATE TABLE group_members (
    group_id    uuid NOT NULL REFERENCES groups ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE shares (
    share_id    uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    name        text NOT NULL,
    allocation  bigint CHECK (allocation >= 0),                -- NULL: none
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, name)
);

-- perm 1: read, 2: read and write.  Exactly one of user_id, group_id.
CREATE TABLE share_acl (
    share_id    uuid NOT NULL REFERENCES shares ON DELETE CASCADE,
    user_id     uuid REFERENCES users ON DELETE CASCADE,
    group_id    uuid REFERENCES groups ON DELETE CASCADE,
    perm        smallint NOT NULL CHECK (perm IN (1, 2)),
    CHECK ((user_id IS NULL) <> (group_id IS NULL))
);
CREATE UNIQUE INDEX share_acl_user ON share_acl (share_id, user_id) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX share_acl_group ON share_acl (share_id, group_id) WHERE group_id IS NOT NULL;
CREATE INDEX share_acl_by_user ON share_acl (user_id);
CREATE INDEX share_acl_by_group ON share_acl (group_id);

CREATE TABLE files (
    file_id     uuid PRIMARY KEY,
    share_id    uuid NOT NULL REFERENCES shares ON DELETE RESTRICT,
    owner_id    uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    path        text NOT NULL,
    name        text NOT NULL,
    latest      integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz                               -- set: answers 410
);
CREATE UNIQUE INDEX files_name ON files (share_id, path, name) WHERE deleted_at IS NULL;
CREATE INDEX files_owner ON files (owner_id) WHERE deleted_at IS NULL;

CREATE TABLE versions (
    file_id     uuid NOT NULL REFERENCES files ON DELETE CASCADE,
    version     integer NOT NULL CHECK (version >= 1),
    size        bigint NOT NULL CHECK (size >= 0),
    piece_size  integer NOT NULL,
    npieces     bigint NOT NULL,
    root        bytea NOT NULL CHECK (length(root) = 32),
    -- the SHA-256 of every piece, concatenated (32 bytes each, in order)
    hashes      bytea NOT NULL CHECK (length(hashes) = 32 * npieces),
    created_by  uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (file_id, version)
);

-- Every distinct piece some version references, with the number of
-- (version, index) references.  A piece whose count falls to 0 keeps its
-- row (freed_at set) until every file broker has removed its copy; a
-- broker removes a copy only while it holds the row locked with refs 0,
-- so a new version, which must lock the row to count a reference, never
-- loses a piece it relies on.  Rows freed long ago are deleted.
CREATE TABLE pieces (
    hash        bytea PRIMARY KEY CHECK (length(hash) = 32),
    size        integer NOT NULL,
    refs        bigint NOT NULL CHECK (refs >= 0),
    freed_at    timestamptz
);
CREATE INDEX pieces_freed ON pieces (hash) WHERE refs = 0;

-- What operators bill, per user and hour.  ingress/egress/requests are
-- added to by every broker (each flushes its own counts); stored is the
-- bytes the user stored when last sampled in that hour (every version of
-- every live file the user owns, at full size: dedup does not lower it).
CREATE TABLE usage (
    user_id     uuid NOT NULL,
    hour        timestamptz NOT NULL,
    ingress     bigint NOT NULL DEFAULT 0,
    egress      bigint NOT NULL DEFAULT 0,
    requests    bigint NOT NULL DEFAULT 0,
    stored      bigint,
    PRIMARY KEY (user_id, hour)
);
CREATE INDEX usage_hour ON usage (hour);

-- Brokers cache file rows and share access (see 001 for sessions): every
-- change that could make a cached answer wrong is announced.
CREATE FUNCTION shoal_file_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('shoal_file', OLD.file_id::text);
    ELSE
        PERFORM pg_notify('shoal_file', NEW.file_id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER files_changed AFTER UPDATE OR DELETE ON files
    FOR EACH ROW EXECUTE FUNCTION shoal_file_changed();

CREATE FUNCTION shoal_acl_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shoal_acl', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER share_acl_changed AFTER INSERT OR UPDATE OR DELETE ON share_acl
    FOR EACH STATEMENT EXECUTE FUNCTION shoal_acl_changed();
CREATE TRIGGER group_members_changed AFTER INSERT OR UPDATE OR DELETE ON group_members
    FOR EACH STATEMENT EXECUTE FUNCTION shoal_acl_changed();
CREATE TRIGGER shares_changed AFTER UPDATE OR DELETE ON shares
    FOR EACH STATEMENT EXECUTE FUNCTION shoal_acl_changed();
CREATE TRIGGER groups_changed AFTER UPDATE OR DELETE ON groups
    FOR EACH STATEMENT EXECUTE FUNCTION shoal_acl_changed();
