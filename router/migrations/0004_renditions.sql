-- Renditions: the transformer's outputs (image sizes, video segments and playlists), each a
-- needle of its own (key = the media_id, its alternate key, a cookie of its own) on any
-- writable volume, recorded here once every replica holds it. The primary key makes a job
-- that runs twice yield one rendition: the second copy is not recorded, and its needle is
-- journalled for delete (delete_journal) like any dropped needle.
CREATE TABLE renditions (
    media_id        bigint      NOT NULL REFERENCES media (media_id) ON DELETE CASCADE,
    alternate_key   bigint      NOT NULL CHECK (alternate_key BETWEEN 1 AND 4294967295),
    logical_volume  integer     NOT NULL,
    cookie          bigint      NOT NULL CHECK (cookie BETWEEN 0 AND 4294967295),
    size_bytes      bigint      NOT NULL CHECK (size_bytes >= 0),
    content_type    text        NOT NULL,
    width           integer     NOT NULL DEFAULT 0,
    height          integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (media_id, alternate_key)
);

-- Where an upload's renditions stand: 0 pending (jobs queued or running), 1 done under
-- renditions_version, 2 failed for good (dead-lettered; renditions_error says why).
-- renditions_swept_at: when a sweeper last enqueued its job again (so routers sweeping at
-- once, or one sweep after another, do not pile jobs up).
ALTER TABLE media
    ADD COLUMN renditions_state   smallint NOT NULL DEFAULT 0 CHECK (renditions_state IN (0, 1, 2)),
    ADD COLUMN renditions_version integer  NOT NULL DEFAULT 0,
    ADD COLUMN renditions_error   text,
    ADD COLUMN renditions_swept_at timestamptz;

-- The sweeper's scan: active uploads whose renditions are not finished.
CREATE INDEX media_renditions_due ON media (created_at) WHERE state = 1 AND renditions_state = 0;

-- A media_id and alternate key may now name two needles: the rendition recorded, and a
-- copy a second run of its job wrote and dropped. Each is journalled for delete apart.
ALTER TABLE delete_journal DROP CONSTRAINT delete_journal_pkey;
ALTER TABLE delete_journal ADD PRIMARY KEY (media_id, alternate_key, logical_volume, cookie);
-- stray: the needle is a dropped copy nobody was ever given a URL for (not a deleted
-- media): flagging it on its replicas is all there is to do (no cache holds it, and f4
-- keys belong to the media it is a copy for, which lives on).
ALTER TABLE delete_journal ADD COLUMN stray boolean NOT NULL DEFAULT false;
