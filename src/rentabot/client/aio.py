"""The asyncio client: the same flows as `Client` (`protocol.py`), driven with `await`.

    async with AsyncClient(url) as client:
        async with client.lease(tags=["nrf52"], ttl=600) as held:
            await flash(held.resources[0].endpoint)

Renewals run in a task. Unlike `Client.lease`, it installs no SIGTERM handler: an asyncio
program decides itself how it stops (`loop.add_signal_handler`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar, Unpack

import httpx

from rentabot.client.held import HeldLease, OnLost
from rentabot.client.models import Identity, Lease, Resource, Ticket
from rentabot.client.protocol import (
    DEFAULT_LEASE_TTL,
    Call,
    Flow,
    LockOptions,
    Outcome,
    Protocol,
    RetryPolicy,
    Step,
    Steps,
    lease_id_and_token,
    renew_interval,
)
from rentabot.client.transport import build_request, headers, reply_of

T = TypeVar("T")


class AsyncClient:
    """`Client` for asyncio: the same methods, as coroutines, and `async with lease()`."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:5000",
        api_key: str | None = None,
        *,
        retry_for: float = 60.0,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._protocol = Protocol(self.url, RetryPolicy(budget=retry_for))
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers(api_key), transport=transport, timeout=timeout
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def _run(self, flow: Flow[T]) -> T:
        steps = Steps(flow)
        while not steps.done:
            try:
                outcome = await self._perform(steps.step)
            except BaseException as error:  # cancelled: the flow leaves the queue first
                steps.fail(error)
                continue
            steps.feed(outcome)
        return steps.result

    async def _perform(self, step: Step) -> Outcome:
        if isinstance(step, Call):
            try:
                request = build_request(self._http, step, self.timeout)
                return reply_of(await self._http.send(request))
            except httpx.TransportError as error:
                return error
        await asyncio.sleep(step.seconds)
        return None

    async def lock(self, **options: Unpack[LockOptions]) -> Lease:
        """See `Client.lock`."""
        return await self._run(self._protocol.acquire(options))

    async def renew(
        self, lease: Lease | int, token: str | None = None, ttl: float | None = None
    ) -> Lease:
        """See `Client.renew`."""
        return await self._run(self._protocol.renew(*lease_id_and_token(lease, token), ttl))

    async def release(self, lease: Lease | int, token: str | None = None) -> Lease:
        """See `Client.release`."""
        return await self._run(self._protocol.release(*lease_id_and_token(lease, token)))

    async def get(self, lease: Lease | int, token: str | None = None) -> Lease:
        """See `Client.get`."""
        return await self._run(self._protocol.get(*lease_id_and_token(lease, token)))

    async def resources(self, tags: Sequence[str] = (), state: str | None = None) -> list[Resource]:
        """See `Client.resources`."""
        return await self._run(self._protocol.resources(tags, state))

    async def queue(self) -> list[Ticket]:
        """See `Client.queue`."""
        return await self._run(self._protocol.queue())

    async def force_release(self, resource_id: int, *, reason: str | None = None) -> int:
        """See `Client.force_release`."""
        return await self._run(self._protocol.force_release(resource_id, reason))

    async def whoami(self) -> Identity:
        """See `Client.whoami`."""
        return await self._run(self._protocol.whoami())

    @contextlib.asynccontextmanager
    async def lease(
        self,
        *,
        renew_every: float | None = None,
        on_lost: OnLost | None = None,
        **options: Unpack[LockOptions],
    ) -> AsyncIterator[HeldLease]:
        """See `Client.lease` (no SIGTERM handler here). Renewals run in a task."""
        options.setdefault("ttl", DEFAULT_LEASE_TTL)
        lease = await self.lock(**options)
        held = HeldLease(lease, on_lost)
        interval = renew_interval(lease, renew_every)

        async def renew_until_cancelled() -> None:
            held._mark_lost(await self._run(self._protocol.keep(lease, interval, held._renewed)))

        task = asyncio.create_task(renew_until_cancelled())
        held._stopper = task.cancel
        try:
            yield held
        except BaseException:
            held.stop()
            await self._run(self._protocol.finish(held, failed=True))
            raise
        held.stop()
        await self._run(self._protocol.finish(held, failed=False))
