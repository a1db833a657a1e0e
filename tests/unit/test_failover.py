"""trenchcoat/failover.py: only Unavailable moves a call on; sticky starts where the last
answer came from, spreading starts at each target in turn; none answering names them all."""

from __future__ import annotations

import pytest

from trenchcoat.errors import NotFound, Unavailable
from trenchcoat.failover import Failover


def answering(down: set[str], asked: list[str]):
    async def attempt(target: str) -> str:
        asked.append(target)
        if target in down:
            raise Unavailable(f"{target} does not answer")
        return target

    return attempt


async def test_sticky_stays_with_the_one_that_answered() -> None:
    asked: list[str] = []
    targets = Failover(["a", "b", "c"], kind="directory", sticky=True)
    assert await targets.call("Locate", answering({"a"}, asked)) == "b"
    assert await targets.call("Locate", answering(set(), asked)) == "b"  # b answered last: asked first
    assert asked == ["a", "b", "b"]


async def test_spreading_starts_at_each_in_turn() -> None:
    asked: list[str] = []
    targets = Failover(["a", "b", "c"], kind="router")
    answers = [await targets.call("BatchStat", answering(set(), asked)) for _ in range(4)]
    assert answers == ["a", "b", "c", "a"]


async def test_only_unavailable_moves_on_and_none_answering_names_every_target() -> None:
    targets = Failover(["r1", "r2"], kind="router")

    async def not_found(target: str) -> str:
        raise NotFound("media 5 does not exist")

    with pytest.raises(NotFound):  # every router would say the same: no second ask
        await targets.call("Stat", not_found)
    with pytest.raises(Unavailable, match=r"no router answered Stat \(r1, r2\); retry. The last said: r. does not"):
        await targets.call("Stat", answering({"r1", "r2"}, []))
    with pytest.raises(ValueError, match="no router"):
        Failover([], kind="router")
