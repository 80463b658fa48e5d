-- 004: the injector.  An injected web object is a file of the injector's
-- share, which every registered user may read; each URL has one record:
-- its file, the current version (a newer injection of the URL is a new
-- version of the same file) and the signed statement about it.

-- A share every registered user may read (besides its ACL).
ALTER TABLE shares ADD COLUMN readable_by_all boolean NOT NULL DEFAULT false;

CREATE TABLE injections (
    url           text PRIMARY KEY CHECK (length(url) BETWEEN 1 AND 2048),
    -- sha256('url:' || url): the URL's swarm
    swarm         bytea NOT NULL UNIQUE CHECK (length(swarm) = 32),
    file_id       uuid NOT NULL UNIQUE,
    version       integer NOT NULL,
    broker_id     uuid NOT NULL,                -- the injector that signed
    origin_status smallint NOT NULL,
    meta          text NOT NULL,                -- the metadata text it signed
    x_sign        text NOT NULL,
    expires_at    timestamptz NOT NULL,
    injected_at   timestamptz NOT NULL DEFAULT now(),
    -- the last attempt that failed after this version was injected
    failed_at     timestamptz,
    failure       text,
    FOREIGN KEY (file_id, version) REFERENCES versions ON DELETE CASCADE
);

-- Pieces an injection in progress has stored: each row holds one
-- reference (pieces.refs) until the injection's version counts the piece
-- or the injection fails, so that no sweeper removes a piece between its
-- storing and the version.  A broker that restarts releases the pins it
-- left behind.
CREATE TABLE inject_pins (
    injection_id uuid NOT NULL,
    broker_id    uuid NOT NULL,
    hash         bytea NOT NULL CHECK (length(hash) = 32),
    pinned_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inject_pins_injection ON inject_pins (injection_id);
CREATE INDEX inject_pins_broker ON inject_pins (broker_id);
