-- One 256-bit key per warm blob (needle key = media_id stored as to_signed, alternate
-- key = rendition). Discarding a key deletes the blob: blob_key goes NULL and the row
-- stays as a tombstone, so a discarded blob is never given a key again.
CREATE TABLE f4_keys (
    needle_key      bigint      NOT NULL,
    alternate_key   bigint      NOT NULL CHECK (alternate_key BETWEEN 0 AND 4294967295),
    blob_key        bytea       CHECK (blob_key IS NULL OR octet_length(blob_key) = 32),
    created_at      timestamptz NOT NULL DEFAULT now(),
    discarded_at    timestamptz,
    PRIMARY KEY (needle_key, alternate_key),
    CHECK ((blob_key IS NULL) = (discarded_at IS NOT NULL))
);
