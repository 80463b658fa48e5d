-- 005: bad-source reports.  A downloader whose 'shoal get' dropped a
-- source for sending a piece that failed its hash check says so: which
-- version and piece of a file, the source's base URL, and why.  One row
-- per reporter, version, piece and URL: reporting again refreshes it.
-- peer_user_id is the user whose latest announcement of that URL for the
-- version the tracker held when the report came (NULL: a file broker, or
-- a URL nobody announced).  Operators read them with GET /v1/reports.

CREATE TABLE reports (
    report_id    uuid PRIMARY KEY,
    file_id      uuid NOT NULL,
    version      integer NOT NULL,
    piece        bigint NOT NULL CHECK (piece >= 0),
    url          text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 255),
    reporter_id  uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    peer_user_id uuid REFERENCES users ON DELETE SET NULL,
    reported_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (file_id, version, piece, url, reporter_id),
    FOREIGN KEY (file_id, version) REFERENCES versions ON DELETE CASCADE
);
CREATE INDEX reports_time ON reports (reported_at);
CREATE INDEX reports_reporter ON reports (reporter_id);
CREATE INDEX reports_peer_user ON reports (peer_user_id);
