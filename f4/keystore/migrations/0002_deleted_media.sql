-- Media deleted as a whole (every rendition), whether or not any of its blobs had a key
-- yet: a delete that lands while its volume is being encoded must stop the encode from
-- making keys for it afterwards. Keys are made and discarded under a per-media advisory
-- lock, so the two cannot interleave.
CREATE TABLE f4_deleted_media (
    needle_key  bigint      PRIMARY KEY,
    deleted_at  timestamptz NOT NULL DEFAULT now()
);
