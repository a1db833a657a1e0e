-- A finished follow-up is kept a while (finished_at set) instead of removed at once: when
-- Redis changes (a replica took over from a primary that had not passed on its last
-- writes), the follow-ups finished shortly before are opened again like the fan-outs
-- (feedsvc/records.py, redis_changed): a follow's backfill, an unfollow's cleanup or a
-- deletion mark may be gone with the primary. The sweeper removes them after a while.
ALTER TABLE feed_intents ADD COLUMN finished_at timestamptz;

-- The sweeper's questions: which are due (unfinished), which finished long enough ago to go.
DROP INDEX feed_intents_due;
CREATE INDEX feed_intents_due ON feed_intents (due_at) WHERE finished_at IS NULL;
CREATE INDEX feed_intents_finished ON feed_intents (finished_at) WHERE finished_at IS NOT NULL;
