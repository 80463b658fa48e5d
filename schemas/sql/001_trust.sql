-- 001: the trust broker: users, sessions, trust bubbles, brokers, invites.

CREATE TABLE users (
    user_id     uuid PRIMARY KEY,
    public_key  bytea NOT NULL CHECK (length(public_key) = 32),
    -- keyed BLAKE2b-256 of the Authentication ID; the ID itself is never kept
    auth_hash   bytea NOT NULL CHECK (length(auth_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    session_id  uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    ip          inet NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id, expires_at);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- user_id trusts trusted_id: trusted_id's peers may see user_id's sessions
CREATE TABLE trust (
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    trusted_id  uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    PRIMARY KEY (user_id, trusted_id),
    CHECK (user_id <> trusted_id)
);
CREATE INDEX trust_trusted ON trust (trusted_id);

CREATE TABLE brokers (
    broker_id   uuid PRIMARY KEY,
    url         text NOT NULL,
    roles       text NOT NULL,
    public_key  bytea NOT NULL CHECK (length(public_key) = 32),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE invites (
    -- keyed BLAKE2b-256 of the invite token
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    used_by     uuid
);

-- Every broker caches session rows; a deleted session (logout, purge,
-- user removal) is announced so that each broker forgets it at once.
CREATE FUNCTION shoal_session_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shoal_session', OLD.session_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_deleted AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION shoal_session_deleted();
