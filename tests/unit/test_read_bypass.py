"""API reads skip the cache while Redis is unreachable. Pure (no Redis: the calls are fakes)."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from course_management.infra.cache import ReadBypass


class Calls:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.count = 0

    async def __call__(self) -> str:
        self.count += 1
        if self.fail:
            raise RedisConnectionError("Connection refused")
        return "cached"


async def test_a_failed_cache_call_is_a_miss_and_later_reads_skip_the_cache() -> None:
    bypass = ReadBypass(cooldown_s=60)
    down = Calls(fail=True)
    assert await bypass.call(down) is None
    assert await bypass.call(down) is None
    assert down.count == 1  # the second read did not wait for Redis again
    up = Calls(fail=False)
    assert await bypass.call(up) is None and up.count == 0  # still cooling down


async def test_after_the_cooldown_reads_use_the_cache_again() -> None:
    bypass = ReadBypass(cooldown_s=0)
    assert await bypass.call(Calls(fail=True)) is None
    up = Calls(fail=False)
    assert await bypass.call(up) == "cached" and up.count == 1


async def test_other_errors_are_not_swallowed() -> None:
    async def broken() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        await ReadBypass().call(broken)
