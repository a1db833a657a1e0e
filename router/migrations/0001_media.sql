-- Media metadata: one row per uploaded object. The media_id is stored as a signed
-- bigint (trenchcoat.ids.to_signed: id - 2^63 for ids with the top bit set), so ORDER BY
-- media_id is still ORDER BY upload time.
CREATE TABLE media (
    media_id        bigint      PRIMARY KEY,
    owner_id        bigint      NOT NULL CHECK (owner_id >= 0),
    logical_volume  integer     NOT NULL,
    cookie          bigint      NOT NULL CHECK (cookie BETWEEN 0 AND 4294967295),
    size_bytes      bigint      NOT NULL CHECK (size_bytes >= 0),
    content_type    text        NOT NULL,
    -- 0 pending (replicas being written; never served), 1 active, 2 deleted.
    state           smallint    NOT NULL CHECK (state IN (0, 1, 2)),
    created_at      timestamptz NOT NULL DEFAULT now(),
    idempotency_key text,
    UNIQUE (owner_id, idempotency_key)
);

-- A user's objects, newest first (profile grids).
CREATE INDEX media_by_owner ON media (owner_id, media_id DESC);
