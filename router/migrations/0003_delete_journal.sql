-- Deletes still to be carried out where the bytes are. A delete turns the media row
-- deleted and inserts its needles here in the same transaction; the router then flags the
-- needle on every replica of its volume and drops it from every cache, and removes the
-- entry only when all of them have. Until then the entry is retried (next_attempt_at,
-- with backoff), by any router: a replica that was down at the time is flagged when it
-- comes back. Reads never look here: they never look at PostgreSQL at all.
CREATE TABLE delete_journal (
    media_id        bigint      NOT NULL,
    alternate_key   bigint      NOT NULL DEFAULT 0 CHECK (alternate_key BETWEEN 0 AND 4294967295),
    logical_volume  integer     NOT NULL,
    cookie          bigint      NOT NULL CHECK (cookie BETWEEN 0 AND 4294967295),
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    PRIMARY KEY (media_id, alternate_key)
);

CREATE INDEX delete_journal_due ON delete_journal (next_attempt_at);
