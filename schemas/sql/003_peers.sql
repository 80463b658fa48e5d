-- 003: the tracker.  Each row is one announcement: user_id's peer at url
-- (the base URL of its 'shoal serve') holds the pieces of one version of
-- a file that the bitfield 'have' marks, as GET /v1/files/{id}/have
-- encodes it.  Announcing again refreshes the row; a row whose
-- expires_at has passed is no longer listed, and is purged.

CREATE TABLE peers (
    file_id      uuid NOT NULL,
    version      integer NOT NULL,
    user_id      uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    url          text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    have         bytea NOT NULL,
    held         bigint NOT NULL CHECK (held >= 0),
    announced_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (file_id, version, user_id, url),
    FOREIGN KEY (file_id, version) REFERENCES versions ON DELETE CASCADE
);
CREATE INDEX peers_user ON peers (user_id);
CREATE INDEX peers_expiry ON peers (expires_at);
