"""The fleet side of the upstream breakers: shared state in Redis, one probe for all.

Per upstream, a hash `<prefix>breaker:<upstream>` holds the shared state (`gen`,
`state`, `until` in Redis-server milliseconds, `opens`) and a key `…:probe` marks the
probe slot, taken with `SET NX PX` so exactly one instance of the fleet probes. Every
change is made by a script that compares the generation first, then broadcast on the
`upstream-breakers` channel so the other instances' mirrors follow within a message's
time; a mirror that missed a message catches up at the next script's answer.

Opening and closing never hold a request: the local breaker moves at once and the
script runs in the background. Only claiming the probe is awaited, and only while the
breaker is open. When Redis fails (its own breaker, `store.breaker`), each instance
decides alone, as without a fleet.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import structlog

from ferryman.store.broadcast import Broadcast
from ferryman.upstreams.breaker import OPEN, UpstreamBreaker

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ferryman.clock import Clock
    from ferryman.observability.metrics import Metrics
    from ferryman.proxy.upstream import UpstreamClient
    from ferryman.store.breaker import Breaker as RedisBreaker

log = structlog.get_logger("ferryman.upstreams")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'gen', 'state', 'until', 'opens')
local gen, state = tonumber(h[1] or '0'), h[2] or 'closed'
local untl, opens = tonumber(h[3] or '0'), tonumber(h[4] or '0')
"""

#: Open (again). ARGV: the generation the caller saw, first wait, growth, cap (ms),
#: the hash's lifetime (ms). Opens unless another instance already (re)opened it.
OPEN_SCRIPT = (
    _NOW
    + """
if state == 'open' and gen ~= tonumber(ARGV[1]) then
  return {gen, state, untl, opens, 0}
end
if state == 'open' then opens = opens + 1 else opens = 1 end
local wait = math.min(tonumber(ARGV[2]) * tonumber(ARGV[3]) ^ (opens - 1), tonumber(ARGV[4]))
gen = gen + 1
untl = now + math.floor(wait)
redis.call('HSET', KEYS[1], 'gen', gen, 'state', 'open', 'until', untl, 'opens', opens)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('DEL', KEYS[2])
return {gen, 'open', untl, opens, 1}
"""
)

#: Close after a successful probe. ARGV: the generation the prober saw.
CLOSE_SCRIPT = (
    _NOW
    + """
if state ~= 'open' or gen ~= tonumber(ARGV[1]) then
  return {gen, state, untl, opens, 0}
end
gen = gen + 1
redis.call('HSET', KEYS[1], 'gen', gen, 'state', 'closed', 'until', 0, 'opens', 0)
redis.call('DEL', KEYS[2])
return {gen, 'closed', 0, 0, 1}
"""
)

#: Take the probe slot. ARGV: this instance's token, the slot's lifetime (ms).
#: The last element: 1 taken, 0 not (too early, or another instance has it), 2 the
#: fleet has no open state at all (Redis was emptied: decide locally).
CLAIM_SCRIPT = (
    _NOW
    + """
if state ~= 'open' then
  return {gen, state, untl, opens, 2}
end
if now < untl then
  return {gen, state, untl, opens, 0}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {gen, state, untl, opens, 1}
end
return {gen, state, untl, opens, 0}
"""
)

#: Give the probe slot back (only if it is still this instance's).
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

#: Seconds a Redis call of the breakers may take.
TIMEOUT = 0.5

#: A hash not written for this long (beyond its longest opening) is forgotten.
KEEP_MS = 24 * 3600 * 1000


def install_breakers(
    upstreams: dict[str, UpstreamClient], clock: Clock, metrics: Metrics
) -> dict[str, UpstreamBreaker]:
    """A breaker for each upstream that asks for one; {upstream: breaker}."""
    breakers: dict[str, UpstreamBreaker] = {}
    for name, upstream in upstreams.items():
        if upstream.spec.breaker is not None:
            breaker = UpstreamBreaker(name, upstream.spec.breaker, clock, metrics)
            upstream.breaker = breakers[name] = breaker
    return breakers


class FleetBreakers:
    """Every breaker's fleet side: the scripts, the channel and the shared state."""

    def __init__(self, breakers: dict[str, UpstreamBreaker]) -> None:
        """Attach with `connect()`; until then (or without Redis) each breaker is local."""
        self.breakers = breakers
        self._token = uuid.uuid4().hex
        self._channel = Broadcast("upstream-breakers", self._received)
        self._tasks: set[asyncio.Task[None]] = set()
        self._redis: Redis | None = None
        self._guard: RedisBreaker | None = None
        self._prefix = ""

    async def connect(self, redis: Redis, prefix: str, guard: RedisBreaker) -> None:
        """Subscribe, read each upstream's shared state, and attach to the breakers."""
        self._redis, self._guard, self._prefix = redis, guard, prefix
        self._open = redis.register_script(OPEN_SCRIPT)
        self._close = redis.register_script(CLOSE_SCRIPT)
        self._claim = redis.register_script(CLAIM_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)
        await self._channel.connect(redis, prefix, guard)
        for name, breaker in self.breakers.items():
            state = await redis.hgetall(self._key(name))
            if state:
                breaker.adopt(*_parse([state.get(f, b"0") for f in _FIELDS]))
            breaker.fleet = _Side(self, breaker)

    def _key(self, upstream: str) -> str:
        return f"{self._prefix}breaker:{upstream}"

    def _keys(self, breaker: UpstreamBreaker) -> list[str]:
        key = self._key(breaker.upstream)
        return [key, key + ":probe"]

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> list[Any]:
        assert self._guard is not None
        result: list[Any] = await self._guard.call(lambda: script(keys=keys, args=args), TIMEOUT)
        return result

    async def claim(self, breaker: UpstreamBreaker) -> bool | None:
        ttl = int(breaker.spec.probe_timeout * 1000)
        try:
            answer = await self._call(self._claim, self._keys(breaker), [self._token, ttl])
        except Exception as exc:
            log.info("upstream_breaker_local", upstream=breaker.upstream, error=_name(exc))
            return None
        outcome = int(answer[4])
        if outcome == 2:
            return None
        breaker.adopt(*_parse(answer[:4]))
        return outcome == 1

    def background(self, breaker: UpstreamBreaker, what: str) -> None:
        task = asyncio.create_task(self._change(breaker, what, breaker.fleet_gen))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _change(self, breaker: UpstreamBreaker, what: str, seen: int) -> None:
        keys = self._keys(breaker)
        try:
            if what == "released":
                await self._call(self._release, [keys[1]], [self._token])
                return
            if what == "opened":
                spec = breaker.spec
                args = [seen, spec.open_for * 1000, spec.growth, spec.max_open_for * 1000]
                answer = await self._call(self._open, keys, [*args, KEEP_MS])
            else:
                answer = await self._call(self._close, keys, [seen])
        except Exception as exc:
            log.info("upstream_breaker_local", upstream=breaker.upstream, error=_name(exc))
            return
        state = _parse(answer[:4])
        breaker.adopt(*state)
        if int(answer[4]):
            gen, moved, until, opens = state
            message = {"upstream": breaker.upstream, "gen": gen, "state": moved}
            await self._channel.publish(message | {"until": until, "opens": opens})

    def _received(self, message: dict[str, Any]) -> None:
        breaker = self.breakers.get(str(message.get("upstream")))
        if breaker is not None:
            until = float(message.get("until", 0))
            breaker.adopt(int(message["gen"]), str(message["state"]), until, int(message["opens"]))

    async def checked(self) -> dict[str, Any]:
        """For `/health`: each breaker's state (an open breaker is the upstream's outage,
        not the gateway's: it never makes the gateway unready)."""
        return {"breakers": {n: b.report() for n, b in sorted(self.breakers.items())}}

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._channel.close()
        for breaker in self.breakers.values():
            breaker.fleet = None


class _Side:
    """One breaker's view of the fleet (`upstreams.breaker.Fleet`)."""

    __slots__ = ("breaker", "fleet")

    def __init__(self, fleet: FleetBreakers, breaker: UpstreamBreaker) -> None:
        self.fleet = fleet
        self.breaker = breaker

    async def claim(self, breaker: UpstreamBreaker) -> bool | None:
        return await self.fleet.claim(breaker)

    def opened(self, breaker: UpstreamBreaker) -> None:
        self.fleet.background(breaker, "opened")

    def closed(self, breaker: UpstreamBreaker) -> None:
        self.fleet.background(breaker, "closed")

    def released(self, breaker: UpstreamBreaker) -> None:
        self.fleet.background(breaker, "released")


_FIELDS = (b"gen", b"state", b"until", b"opens")


def _parse(values: list[Any]) -> tuple[int, str, float, int]:
    """(gen, state, until in seconds, opens) from a script's answer or the hash."""
    gen, state, until, opens = values
    text = state.decode() if isinstance(state, bytes) else str(state)
    return int(gen), text if text == OPEN else "closed", int(until) / 1000, int(opens)


def _name(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
