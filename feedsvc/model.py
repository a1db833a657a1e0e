"""The feed's values: an entry (which post, whose), a post as PostgreSQL holds it, a page.
A feed entry is (media_id, author_id); its time is inside the media_id, so "newest first"
is "largest id first" and a page boundary is one id."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Entry:
    """One feed item. Ordered by media_id (then author), which is time order."""

    media_id: int
    author_id: int


class PostState(enum.IntEnum):
    LIVE = 1
    DELETED = 2


@dataclass(frozen=True, slots=True)
class Post:
    """A post row."""

    media_id: int
    author_id: int
    caption: str
    pushed: bool
    """Fanned out on write (False: its author was a celebrity then; merged in at read time)."""
    state: PostState
    created_at: float = 0.0
    """When the post was made (Unix seconds)."""

    @property
    def entry(self) -> Entry:
        return Entry(self.media_id, self.author_id)


class IntentKind(enum.IntEnum):
    FOLLOW = 1
    """The follow edge (a = follower, b = followee) changed: the follower's timeline and
    cached follow sets follow the edge as it is now."""
    DELETE = 2
    """The post a was deleted: its marks, cached facts, timeline entries and media go."""


@dataclass(frozen=True, slots=True)
class Intent:
    """A committed change's follow-up not yet known to be done (``feed_intents``)."""

    kind: IntentKind
    a: int
    b: int
    token: int
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Hydrated:
    """An entry with its small facts: the caption and the media's (see MediaClient.Media)."""

    entry: Entry
    caption: str
    media: dict[str, object]
    """The media facts as the metadata cache holds them (MediaInfo fields by name)."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a feed, newest first; ``next_cursor`` 0 when there is no more."""

    entries: list[Entry]
    next_cursor: int
    hydrated: list[Hydrated] | None = None
