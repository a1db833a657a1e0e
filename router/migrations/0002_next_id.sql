-- Media ids minted inside PostgreSQL, Instagram's way: no coordinator, and ORDER BY id is
-- ORDER BY time. Layout (trenchcoat.ids): [41 bits ms since 2026-01-01][13 bits shard]
-- [10 bits per-shard sequence mod 1024]. Stored as signed bigint through the same map
-- as trenchcoat.ids.to_signed (id - 2^63), so ids keep their order across the sign bit.

-- The packing, with the time given: next_id's arithmetic, testable at the edges.
CREATE FUNCTION make_id(ms bigint, shard integer, seq integer) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    IF ms < 0 OR ms > 2199023255551 THEN  -- 2^41 - 1
        RAISE EXCEPTION 'ms % is outside the 41 bits an id holds', ms USING ERRCODE = 'numeric_value_out_of_range';
    END IF;
    IF shard < 0 OR shard > 8191 OR seq < 0 OR seq > 1023 THEN
        RAISE EXCEPTION 'shard % or sequence % out of range', shard, seq USING ERRCODE = 'numeric_value_out_of_range';
    END IF;
    -- to_signed(id) = id - 2^63: ids below 2^63 (ms < 2^40) become negative, the rest
    -- non-negative; computed without ever leaving bigint.
    IF ms < 1099511627776 THEN  -- 2^40
        RETURN ((ms << 23) | (shard::bigint << 10) | seq) + (-9223372036854775807 - 1);
    END IF;
    RETURN ((ms - 1099511627776) << 23) | (shard::bigint << 10) | seq;
END;
$$;

-- One sequence per logical shard, made when the shard mints its first id (looked up
-- without an exception block, so minting costs no subtransaction once it exists).
CREATE FUNCTION shard_sequence(shard integer) RETURNS regclass
LANGUAGE plpgsql STRICT AS $$
DECLARE
    name text := format('media_id_seq_%s', shard);
    found regclass := to_regclass(name);
BEGIN
    IF found IS NOT NULL THEN
        RETURN found;
    END IF;
    IF shard < 0 OR shard > 8191 THEN
        RAISE EXCEPTION 'shard % out of range', shard USING ERRCODE = 'numeric_value_out_of_range';
    END IF;
    BEGIN
        EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %I', name);
    EXCEPTION WHEN unique_violation OR duplicate_table THEN
        NULL;  -- another session created it at the same moment
    END;
    RETURN name::regclass;
END;
$$;

-- Ids of one shard are unique up to 1,024 a millisecond and ordered by the millisecond
-- (within one, the sequence may wrap: the order there is not the minting order).
CREATE FUNCTION next_id(shard integer) RETURNS bigint
LANGUAGE plpgsql STRICT AS $$
DECLARE
    seq integer := nextval(shard_sequence(shard)) % 1024;
    ms bigint := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1767225600000;
BEGIN
    RETURN make_id(ms, shard, seq);
END;
$$;
