"""The intent sweeper: finishes the follow-ups of committed changes that their requests
could not (``feed_intents``): an edge that changed (follow, unfollow) gets the follower's
Redis keys brought in line with it; a deleted post gets its deletion mark, its cached facts
dropped, its removal enqueued and its media deleted. Each intent is due once its request
had its chance (``hold_s``), and again after a backoff each time it fails (Redis or the
router still away); finishing one reads the truth again, so an intent finished twice, or
after a later change of the same edge, does no harm. A finished intent is kept for
``FINISHED_KEPT_S``: if Redis changes meanwhile (a failover that lost the follow-up's
writes), it is done again. Runs in every feed process; two sweepers take different
intents (claims skip locked rows).
"""

from __future__ import annotations

import logging

from feedsvc import metrics
from feedsvc.follows import Follows
from feedsvc.model import Intent, IntentKind
from feedsvc.posts import Posts
from feedsvc.records import Records
from trenchcoat.backoff import Backoff
from trenchcoat.errors import TrenchcoatError
from trenchcoat.workers import PeriodicWorker

log = logging.getLogger(__name__)


BATCH = 200
"""Intents one pass claims."""
FINISHED_KEPT_S = 600.0
"""How long a finished intent is kept, to be opened again if Redis changes meanwhile
(``Records.redis_changed`` reopens what finished up to ``sweeper.REPLICATION_LAG_S`` before
Redis was last seen the same, which every sweeper tick renews)."""
RETRY = Backoff(base_s=1.0, max_s=30.0)


class IntentSweeper(PeriodicWorker):
    def __init__(self, records: Records, follows: Follows, posts: Posts, *, interval_s: float,
                 hold_s: float) -> None:
        super().__init__("intent sweeper", interval_s)
        self._records = records
        self._follows = follows
        self._posts = posts
        self._hold_s = hold_s

    async def tick(self) -> None:
        for intent in await self._records.claim_intents(BATCH, hold_s=self._hold_s):
            await self.finish(intent)
        await self._records.forget_finished_intents(FINISHED_KEPT_S, 10 * BATCH)
        metrics.INTENTS_PENDING.set(await self._records.pending_intents())

    async def finish(self, intent: Intent) -> bool:
        """One attempt at an intent's follow-up; True when done (the intent is gone)."""
        kind = intent.kind.name.lower()
        try:
            if intent.kind is IntentKind.FOLLOW:
                await self._follows.settle(intent.a, intent.b)
            else:
                await self._posts.settle_delete(intent.a)
        except TrenchcoatError as exc:
            metrics.INTENTS_FINISHED.labels(kind, "retry").inc()
            retry_in = RETRY.pause(intent.attempts)
            log.warning("follow-up %s %d/%d not done yet (retry in %.1fs): %s", kind, intent.a, intent.b,
                        retry_in, exc)
            await self._records.postpone_intent(intent, str(exc), retry_in)
            return False
        await self._records.finish_intent(intent)
        metrics.INTENTS_FINISHED.labels(kind, "done").inc()
        return True
