"""Webhook deliveries over HTTP (CONTRACT §5.4; decision 63): one POST, 2xx within 10 s
or the reason it failed. Redirects are never followed. The addresses a target's name
resolves to are checked when the connection is made, by the resolver the connection uses,
each time the name is resolved (answers are kept 30 s), so a name that rebinds to a
private address after the subscription was checked is refused, unsent; an address
written in the URL is checked before anything is sent. Only the status is read.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from course_management.domain.webhooks import TargetRefused, check_addresses, parse_target

TIMEOUT_S = 10.0
# A name's answer is kept this long, then resolved (and checked) again: a target that
# moves is followed, one that rebinds to a refused address is refused.
DNS_CACHE_S = 30
USER_AGENT = "MoocFlix-course-management-webhooks/1"


class CheckedResolver(AbstractResolver):
    """Resolves with `inner` and refuses (TargetRefused) a name with any address that
    deliveries may not reach; `scheme` http allows loopback addresses only."""

    def __init__(self, inner: AbstractResolver, allow_loopback: bool, scheme: str) -> None:
        self._inner = inner
        self._allow_loopback = allow_loopback
        self._scheme = scheme

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        check_addresses([r["host"] for r in found], self._allow_loopback, self._scheme)
        return found

    async def close(self) -> None:
        await self._inner.close()


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class WebhookSender:
    """POSTs deliveries; `resolver` makes the resolver each scheme's connections use
    (the tests pass one that answers from a table, so nothing leaves loopback)."""

    def __init__(
        self, allow_loopback: bool, resolver: type[AbstractResolver] | None = None
    ) -> None:
        self._allow_loopback = allow_loopback
        self._resolver = resolver or aiohttp.ThreadedResolver
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._checked: dict[str, tuple[str, URL]] = {}  # url -> (scheme, parsed)

    def _session(self, scheme: str) -> aiohttp.ClientSession:
        session = self._sessions.get(scheme)
        if session is None:
            resolver = CheckedResolver(self._resolver(), self._allow_loopback, scheme)
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=resolver, limit=0, ttl_dns_cache=DNS_CACHE_S
                ),
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
                headers={"user-agent": USER_AGENT},
            )
            self._sessions[scheme] = session
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    def _check(self, url: str) -> tuple[str, URL]:
        """The URL's own checks, once per URL (its name's addresses are the resolver's)."""
        target = parse_target(url, self._allow_loopback)
        parsed = URL(url)
        literal = _literal(parsed.host or "")  # the host aiohttp will connect to
        if literal is not None:  # aiohttp does not resolve an address: checked here
            check_addresses([literal], self._allow_loopback, target.scheme)
        if len(self._checked) > 10_000:
            self._checked.clear()
        self._checked[url] = (target.scheme, parsed)
        return target.scheme, parsed

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> str | None:
        """None once the target answered 2xx; else why not, in a line."""
        try:
            scheme, parsed = self._checked.get(url) or self._check(url)
            session = self._session(scheme)
            async with session.post(
                parsed, data=body, headers=headers, allow_redirects=False
            ) as response:
                response.release()  # the status is the answer: no body is read
                if 200 <= response.status < 300:
                    return None
                if 300 <= response.status < 400:
                    return f"HTTP {response.status}: a redirect (not followed)"
                return f"HTTP {response.status}"
        except TargetRefused as exc:
            return f"refused: {exc}"
        except TimeoutError:
            return f"no answer within {TIMEOUT_S:.0f} s"
        except aiohttp.ClientError as exc:
            return _client_error(exc)


def _client_error(exc: Any) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, TargetRefused):
        return f"refused: {cause}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"could not connect: {exc.os_error.strerror or exc.os_error}"
    return f"{type(exc).__name__}: {exc}"[:300]
