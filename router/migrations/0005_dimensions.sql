-- The original's size as displayed (EXIF orientation or a video's display matrix applied),
-- reported by the transformer when it finishes the object's renditions; 0 until then, or
-- for a type it does not read (MediaInfo.width and height say 0 for unknown).
ALTER TABLE media
    ADD COLUMN width  integer NOT NULL DEFAULT 0 CHECK (width >= 0),
    ADD COLUMN height integer NOT NULL DEFAULT 0 CHECK (height >= 0);
