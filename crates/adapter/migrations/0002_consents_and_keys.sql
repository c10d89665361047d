-- Durable records that must outlive a cache and be shared by every broker node.

-- A citizen's consent to release claims to a client: one row per claim, so two consents
-- recorded at once (two nodes, two tabs) add up instead of overwriting each other.
CREATE TABLE consents (
    subject_key TEXT NOT NULL,      -- SHA-256 of the upstream issuer and subject: no number here
    client_id TEXT NOT NULL,
    claim TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (subject_key, client_id, claim)
);

-- Signing keys generated once and shared by every node (sealed by the broker before they are
-- written: this table never holds a private key in clear). Per algorithm, the highest
-- generation is the next key, the one below it the current, the one below that the previous;
-- `lienthong keys rotate` adds a generation and prunes what fell out of use.
CREATE TABLE signing_keys (
    alg TEXT NOT NULL,
    generation BIGINT NOT NULL,
    sealed_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (alg, generation)
);
