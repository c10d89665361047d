-- Every consent decision a citizen made, as it was asked: which client, which claims, the exact
-- wording shown, allow or refuse, and when. Append-only: the proof Decree 13/2023 asks for.
CREATE TABLE consent_records (
    record_id TEXT PRIMARY KEY,
    subject_key TEXT NOT NULL,      -- SHA-256 of the upstream issuer and subject
    client_id TEXT NOT NULL,
    claims TEXT NOT NULL,           -- JSON array of claim names
    wording TEXT NOT NULL,
    decision TEXT NOT NULL,         -- allow or refuse
    decided_at BIGINT NOT NULL
);
CREATE INDEX consent_records_by_client ON consent_records (client_id, decided_at);
