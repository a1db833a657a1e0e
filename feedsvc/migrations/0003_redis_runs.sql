-- The Redis the timelines were last seen on (trenchcoat.redisio.primaries_run: the run id of
-- each primary), kept on the first instance. When it changes (a restart, or a replica taking
-- over from a primary that had not passed on its last writes), fan-outs finished shortly
-- before are run again: their timeline writes may be gone (feedsvc/sweeper.py).
CREATE TABLE feed_redis_runs (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    run         text        NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now()
);
