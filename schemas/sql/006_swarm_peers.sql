-- 006: members of the named swarms that are not a file's.  A peer whose
-- 'shoal serve --act-as-proxy' forwards injections announces its base URL
-- in the swarm sha256("injector proxies"); the announcement lasts
-- peer_ttl unless refreshed, and lapsed rows go at the next announcement
-- of that swarm.  (The swarm sha256("injectors") is not stored: it lists
-- the brokers of the directory with the injector role.)

CREATE TABLE swarm_peers (
    swarm        bytea NOT NULL CHECK (length(swarm) = 32),
    user_id      uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    url          text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    announced_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (swarm, user_id, url)
);
CREATE INDEX swarm_peers_expiry ON swarm_peers (swarm, expires_at);
