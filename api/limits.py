"""Who may send how much: the rate-limit policy of the gateway.

- per account, for writes (``orders``) and for reads (``reads``), once authenticated;
- per client address, for the public market data (``public``);
- per client address, for failed authentication (``auth_failure``): a brute force of wrong keys
  gets 429 after a handful of tries, and from then on each further unknown key from that address
  is refused at once, before it costs a database lookup or a Redis call.

Every limit is tighter (``rate_limit_degraded_factor``) while the engine is degraded. The limiter
itself (Redis, with an in-process fallback) lives in :mod:`matching_engine.ratelimit`.
"""

from __future__ import annotations

import asyncio
import math
import time

from fastapi import Request

from api.problems import HTTPProblem, too_many
from matching_engine.modes import Mode
from matching_engine.ratelimit import Decision, Limit
from matching_engine.service import EngineService

__all__ = ["RequestLimits", "client_address"]

_MAX_BLOCKED_ADDRESSES = 100_000


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


class RequestLimits:
    def __init__(self, service: EngineService) -> None:
        self._service = service
        settings = service.settings
        self._limits = {
            "orders": Limit(settings.rate_limit_orders_per_s, settings.rate_limit_orders_burst),
            "reads": Limit(settings.rate_limit_reads_per_s, settings.rate_limit_reads_burst),
            "public": Limit(settings.rate_limit_public_per_s, settings.rate_limit_public_burst),
            "auth_failure": Limit(
                settings.rate_limit_auth_failures_per_s, settings.rate_limit_auth_failures_burst
            ),
        }
        self._degraded_factor = settings.rate_limit_degraded_factor
        self._blocked_until: dict[str, float] = {}  # address -> monotonic time

    def _limit(self, scope: str) -> Limit:
        limit = self._limits[scope]
        modes = self._service.modes
        if modes.global_mode is not Mode.NORMAL or modes.halted:
            return limit.scaled(self._degraded_factor)
        return limit

    async def _check(self, scope: str, key: str, what: str) -> Decision:
        decision = await self._service.rate_limiter.check(scope, key, self._limit(scope))
        if not decision.allowed:
            raise too_many(decision, what)
        return decision

    async def account(self, account_id: str, *, write: bool) -> None:
        await self._check("orders" if write else "reads", account_id, "requests")

    def admit_order(self, account_id: str) -> asyncio.Future[Decision]:
        """The account's write limit for one order, decided while the order is prepared: the
        sequencer queues the order once the decision allows it (:meth:`Sequencer.submit`)."""
        return self._service.rate_limiter.decide("orders", account_id, self._limit("orders"))

    async def public(self, address: str) -> None:
        await self._check("public", address, "requests")

    def refuse_if_blocked(self, address: str) -> None:
        """429 at once for an address that is over its failed-authentication limit."""
        until = self._blocked_until.get(address)
        if until is None:
            return
        left = until - time.monotonic()
        if left <= 0:
            del self._blocked_until[address]
            return
        raise HTTPProblem(
            429,
            "rate_limited",
            "too many failed authentications from this address",
            headers={"Retry-After": str(max(1, math.ceil(left)))},
        )

    async def failed_authentication(self, address: str) -> None:
        """Count a failure; 429 (and block the address for a while) once over the limit."""
        try:
            await self._check("auth_failure", address, "failed authentications")
        except HTTPProblem as problem:
            if len(self._blocked_until) >= _MAX_BLOCKED_ADDRESSES:
                now = time.monotonic()
                self._blocked_until = {a: t for a, t in self._blocked_until.items() if t > now}
            retry_after = float((problem.headers or {}).get("Retry-After", "1"))
            self._blocked_until[address] = time.monotonic() + retry_after
            raise
