-- An instance a shard map manages mints ids only for the logical shards the map gives it
-- (trenchcoat_held_shards and trenchcoat_instance.managed, made by trenchcoat.pgmigrate
-- before any migration and written by `trenchcoat shards init` and `trenchcoat up`; see
-- trenchcoat/shards.py): a router routing by a stale map, or a DSN pointing at the wrong
-- instance, gets an error naming the shard rather than a media row where its id says it is
-- not. An instance no map manages yet (one alone) mints for any shard.
CREATE OR REPLACE FUNCTION next_id(shard integer) RETURNS bigint
LANGUAGE plpgsql STRICT AS $$
DECLARE
    seq integer;
    ms bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM trenchcoat_instance WHERE managed)
       AND NOT EXISTS (SELECT 1 FROM trenchcoat_held_shards WHERE shard BETWEEN first AND last) THEN
        RAISE EXCEPTION 'shard % is not held by this instance: the shard map puts it on another', shard
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'trenchcoat shards';
    END IF;
    seq := nextval(shard_sequence(shard)) % 1024;
    ms := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1767225600000;
    RETURN make_id(ms, shard, seq);
END;
$$;
