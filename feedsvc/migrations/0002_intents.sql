-- Follow-ups of committed changes not yet known to be done: a follow or unfollow's
-- timeline and caches in Redis, a deleted post's marks, caches and media. Written in the
-- change's own transaction, removed by whoever finishes the follow-up (the request itself,
-- at once, or the sweeper, when Redis or the router was away, or the feed process died).
-- An intent names what to bring in line with the truth, not a step to replay: finishing it
-- reads the truth again, so intents finish in any order and any number of times.
CREATE TABLE feed_intents (
    -- 1: the follow edge (a = follower, b = followee) changed; 2: the post a was deleted (b = 0).
    kind        smallint    NOT NULL CHECK (kind IN (1, 2)),
    a           bigint      NOT NULL,
    b           bigint      NOT NULL,
    -- Random, new at every write: a finisher removes only the intent it read, never one a
    -- later change of the same edge or post wrote meanwhile.
    token       bigint      NOT NULL,
    -- When the sweeper may take it: after the request had its chance, then after each failure
    -- a backoff later.
    due_at      timestamptz NOT NULL,
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text,
    PRIMARY KEY (kind, a, b)
);

-- The sweeper's question: which are due.
CREATE INDEX feed_intents_due ON feed_intents (due_at);
