"""Rate limits kept in Redis, so that a budget holds across every worker: GCRA.

The generic cell rate algorithm keeps one number per caller and budget, the theoretical
arrival time (TAT) of the next request, and decides in one atomic Lua script on Redis's
own clock (so workers' clocks do not matter): a budget of `quota` requests per `window`
lets a caller spend the whole quota at once, then one request every `window / quota`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis.asyncio as aioredis

# A Lua function, so that a read can spend a request and fetch its data in one script
# (infra/cache.py). gcra(key, emission interval ms, tolerance ms) returns
# {allowed (0/1), milliseconds until the next request is allowed, TAT - now (ms)}.
GCRA_FUNCTION = """
local function gcra(key, interval, tolerance)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  if allow_at > now then
    return {0, allow_at - now, tat - now}
  end
  redis.call('SET', key, new_tat, 'PX', math.max(1, math.ceil(new_tat - now)))
  return {1, 0, new_tat - now}
end
"""
# KEYS[1]: the caller's key; ARGV: emission interval (ms), tolerance (ms).
_GCRA = GCRA_FUNCTION + "return gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))"


@dataclass(frozen=True)
class Budget:
    name: str  # read, write, service-read, service-write
    quota: int  # requests
    window_s: int  # per this many seconds

    @property
    def interval_ms(self) -> float:
        return self.window_s * 1000 / self.quota


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    remaining: int  # requests the caller may still make at once
    retry_after_s: int  # when denied: seconds until one is allowed again
    reset_s: int  # seconds until the whole quota is back


@dataclass
class Charge:
    """One request of `caller`'s `budget`, to be spent once: by the read that fetches its
    data in the same script (CourseCache.spend_and_get_*), or else by `RateLimiter.take`."""

    budget: Budget
    caller: str
    decision: RateDecision | None = None  # set once spent

    @property
    def key(self) -> str:
        return f"cms:rl:{self.budget.name}:{self.caller}"

    @property
    def args(self) -> list[float]:
        """The script's ARGV for gcra(): the emission interval and the tolerance (ms)."""
        return [self.budget.interval_ms, self.budget.window_s * 1000]

    def settle(self, raw: list[int]) -> RateDecision:
        """Record the decision of gcra()'s answer `{allowed, wait ms, TAT - now ms}`."""
        allowed, wait_ms, tat_ms = raw
        tolerance, interval = self.budget.window_s * 1000, self.budget.interval_ms
        tat = float(tat_ms)
        remaining = max(0, math.floor((tolerance - tat) / interval)) if allowed else 0
        self.decision = RateDecision(
            allowed=bool(allowed),
            remaining=remaining,
            retry_after_s=max(1, math.ceil(float(wait_ms) / 1000)) if not allowed else 0,
            reset_s=max(0, math.ceil(tat / 1000)),
        )
        return self.decision


class RateLimiter:
    def __init__(self, client: aioredis.Redis) -> None:
        self._script = client.register_script(_GCRA)

    async def take(self, budget: Budget, caller: str) -> RateDecision:
        """Spend one request of `caller`'s `budget` (raises the Redis client's errors)."""
        charge = Charge(budget, caller)
        return charge.settle(await self._script(keys=[charge.key], args=charge.args))
