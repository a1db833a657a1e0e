-- The feed's truth: posts, follows, and per-author counts. Post ids are media_ids,
-- stored as signed bigint through trenchcoat.ids.to_signed (id - 2^63), so
-- ORDER BY post_id is ORDER BY time and a page is post_id < cursor ORDER BY post_id DESC.
CREATE TABLE feed_posts (
    post_id         bigint      PRIMARY KEY,
    author_id       bigint      NOT NULL CHECK (author_id >= 0),
    caption         text        NOT NULL,
    -- true: fanned out on write into followers' timelines; false: the author was a
    -- celebrity when it was posted, so followers merge it in at read time. Decided once.
    pushed          boolean     NOT NULL,
    -- 1 live, 2 deleted.
    state           smallint    NOT NULL CHECK (state IN (1, 2)),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- When the current fan-out duty (spreading a live post, or removing a deleted one)
    -- began, and when it finished (NULL: not yet; the sweeper enqueues it again).
    fanout_due_at   timestamptz NOT NULL DEFAULT now(),
    fanned_out_at   timestamptz,
    -- Set when the duty's job was dead-lettered: the sweeper leaves it to an operator.
    fanout_dead_at  timestamptz
);

-- An author's posts, newest first (user feeds, backfill, rebuilding timelines).
CREATE INDEX feed_posts_by_author ON feed_posts (author_id, post_id DESC) WHERE state = 1;
-- Fan-outs that have not finished (the sweeper's question).
CREATE INDEX feed_posts_fanout_pending ON feed_posts (fanout_due_at) WHERE fanned_out_at IS NULL;

CREATE TABLE feed_follows (
    follower_id     bigint      NOT NULL CHECK (follower_id >= 0),
    followee_id     bigint      NOT NULL CHECK (followee_id >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (followee_id, follower_id),
    CHECK (follower_id <> followee_id)
);

-- Whom a user follows (home feeds read it; the primary key serves "who follows me").
CREATE INDEX feed_follows_by_follower ON feed_follows (follower_id, followee_id);

CREATE TABLE feed_authors (
    user_id         bigint      PRIMARY KEY CHECK (user_id >= 0),
    -- Kept in the same transaction as each follow and unfollow: the celebrity test is O(1).
    followers       bigint      NOT NULL DEFAULT 0 CHECK (followers >= 0),
    -- Live posts not fanned out on write; > 0 means followers merge this author in at read time.
    pull_posts      bigint      NOT NULL DEFAULT 0 CHECK (pull_posts >= 0)
);
