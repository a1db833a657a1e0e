"""The sections of the social side: [feed] (posts, follows and home feeds) and [fanout]
(the workers pushing posts into followers' timelines)."""

from __future__ import annotations

from dataclasses import dataclass

from trenchcoat.config.checks import require
from trenchcoat.config.service import (
    JobWorkerConfig,
    ServiceConfig,
    count_setting,
    port_setting,
)
from trenchcoat.config.setting import setting


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedConfig(ServiceConfig):
    """Posts, follows, fan-out and home feeds."""

    port: int = port_setting("gRPC port.", default=7700)
    metrics_port: int = port_setting("Prometheus /metrics port.", default=9700)
    workers: int = setting(
        "Processes of each feed process sharing its ports (SO_REUSEPORT), one core each; the first "
        "starts the others and serves /metrics for all.",
        default=1, ge=1, le=256,
    )
    timeline_max: int = setting("Entries a home timeline keeps in Redis (older ones come from PostgreSQL).",
                                default=800, ge=10)
    celebrity_threshold: int = setting(
        "Authors with at least this many followers are not fanned out on write: their posts "
        "are merged into followers' feeds at read time. Decided per post when it is made.",
        default=10_000, ge=1,
    )
    celebrity_recent: int = setting("Posts kept in each celebrity's shared recent list.", default=200, ge=10)
    backfill_posts: int = setting("A new follow pushes at most this many of the followee's recent posts.",
                                  default=100, ge=0)
    page_size: int = setting("Entries in a feed page when the request does not say.", default=20, ge=1)
    max_page_size: int = setting("Most entries a feed page may ask for.", default=200, ge=1, le=1000)
    metadata_ttl_s: float = setting("Seconds hydrated facts (caption, media info) stay in the metadata cache.",
                                    default=300.0, gt=0)
    lease_period_s: float = setting(
        "A metadata-cache miss's lease lasts this long: at most one BatchStat per media_id "
        "per period, however many readers miss at once.",
        default=10.0, gt=0,
    )
    lease_wait_s: float = setting(
        "Longest a reader waits for another's lease on hydrated facts before it is told to retry.",
        default=2.0, gt=0,
    )
    sweep_interval_s: float = setting("Seconds between sweeps for posts whose fan-out never finished.",
                                      default=10.0, gt=0)
    sweep_after_s: float = setting(
        "A post whose fan-out has not finished this long after it was made is enqueued again "
        "(a lost job, a Redis restart); the follow-up of a follow, unfollow or post delete "
        "that its request did not finish in this long is finished by the intent sweeper.",
        default=30.0, gt=0,
    )
    intent_interval_s: float = setting(
        "Seconds between the intent sweeper's passes over due follow-ups of follows, unfollows "
        "and post deletes whose requests could not finish them (Redis or the router away); a "
        "failed one is retried after a backoff of 1 s doubling to 30 s.",
        default=1.0, gt=0,
    )
    call_timeout_s: float = setting(
        "Deadline of each call to a router's MediaService (checking a post's media, hydrating, "
        "deleting). Keep it above postgres.timeout_s, so a router's own answer (naming what it "
        "waited for) arrives first. PostgreSQL and Redis calls are bounded by postgres.timeout_s "
        "and redis.timeout_s.",
        default=5.0, gt=0,
    )

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        require(self.page_size <= self.max_page_size, f"{section}.page_size",
                f"must be at most max_page_size ({self.max_page_size}), got {self.page_size}")
        require(self.lease_wait_s <= self.lease_period_s, f"{section}.lease_wait_s",
                f"must be at most lease_period_s ({self.lease_period_s}), got {self.lease_wait_s}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FanoutConfig(JobWorkerConfig):
    """Fan-out workers: processes that push posts into followers' timelines, fed by a
    Redis stream (at-least-once, reclaimed when a worker dies, dead-lettered when a job
    keeps failing)."""

    count: int = count_setting("Fan-out worker processes `trenchcoat up` starts.", default=2)
    port: int = port_setting("gRPC port (health) of the first worker; worker i listens on port + i.", default=7720)
    metrics_port: int = port_setting("/metrics port of the first worker; worker i uses metrics_port + i.",
                                     default=9720)
    batch_size: int = setting("Followers read from PostgreSQL and written to Redis per pipelined batch.",
                              default=1000, ge=10, le=100_000)
