"""The application factory: `create_app(settings)` builds one independent rentabot app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from rentabot import __version__
from rentabot.api import (
    docs,
    health,
    original,
    upstream,
    upstream_reservations,
    v2,
    v2_usage,
)
from rentabot.api.errors import install_error_handlers
from rentabot.domain.errors import DatabaseUnavailableError
from rentabot.domain.identity import Role
from rentabot.interfaces.access_log import redact_access_log
from rentabot.interfaces.edge import EdgeGuard
from rentabot.interfaces.runtime import Runtime, Subscribers
from rentabot.service.admin import AdminService
from rentabot.service.bootstrap import open_database_for
from rentabot.service.feed import EventFeed
from rentabot.service.health import HealthService
from rentabot.service.identity import USAGE_FLUSH_S, IdentityService
from rentabot.service.leases import Clock, LeasePolicy, LeaseService
from rentabot.service.locks import LockService
from rentabot.service.reservations import ReservationService
from rentabot.service.usage import UsageService
from rentabot.settings import Settings
from rentabot.storage import migrate
from rentabot.web import actions, activity_page, pages, queue_page, tags_page
from rentabot.web import routes as web

log = logging.getLogger("rentabot")

#: How often expired leases are ended: a lease outlives its TTL by at most about this.
SWEEP_INTERVAL_S = 0.25


class SchemaOutOfDateError(RuntimeError):
    """The database's schema is not the one this rentabot needs."""


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the app. The database opens in the lifespan, so building has no side effect.

    The schema must already be current (`rentabot serve` and `rentabot db upgrade` see to
    it): several worker processes must never race to migrate.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Here, in every worker process, after uvicorn has configured its loggers.
        redact_access_log()
        database = open_database_for(settings)
        try:
            current, head = migrate.current_revision(database), migrate.head_revision(database)
            if current != head:
                raise SchemaOutOfDateError(
                    f"the database schema is at {current or 'nothing'}, this rentabot needs"
                    f" {head}: run `rentabot db upgrade` (rentabot serve does it for you)"
                )
            policy = LeasePolicy(
                default_ttl=settings.default_ttl,
                max_ttl=settings.max_ttl,
                keepalive=settings.queue_keepalive,
                person_grace=settings.queue_person_grace,
                long_poll=settings.long_poll_seconds,
                max_waiting=settings.max_waiting,
                max_waiting_per_principal=settings.max_waiting_per_principal,
            )
            now = clock or time.time
            leases = LeaseService(database, policy=policy, clock=now)
            identity = IdentityService(
                database,
                anonymous_role=Role.parse(settings.anonymous_role),
                proxy=settings.proxy_policy,
                session_ttl=settings.session_ttl,
                clock=now,
            )
            # One reader of the audit trail for every event-stream client of this process.
            feed = EventFeed(database)
            app.state.runtime = Runtime(
                settings=settings,
                health=HealthService(database),
                locks=LockService(database, leases),
                leases=leases,
                admin=AdminService(database, leases),
                identity=identity,
                subscribers=Subscribers(settings.max_stream_subscribers),
                usage=UsageService(database, now),
                reservations=ReservationService(
                    database,
                    leases.wakeups,
                    policy=policy,
                    claim_window=settings.reservation_claim_window,
                    clock=now,
                ),
                feed=feed,
            )
            database.listen(leases.wakeups.wake)
            await feed.start()
            tasks = [
                asyncio.create_task(_sweep_expired_leases(leases), name="expiry sweep"),
                asyncio.create_task(_record_key_usage(identity), name="key usage"),
            ]
            try:
                yield
            finally:
                await feed.stop()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await _flush_key_usage(identity)
        finally:
            database.dispose()

    app = FastAPI(
        title="rentabot",
        version=__version__,
        summary="Lock and lease shared automation resources.",
        lifespan=lifespan,
        # The original answered `…/resources/1/` with a 404, not a redirect.
        redirect_slashes=False,
        # Native OpenTelemetry asks the global providers on every request; nothing here
        # configures them, so the checks are pure cost on the lock path.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Served by api/docs.py instead, which declares who may read them like every route.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(EdgeGuard, max_body_bytes=settings.max_body_bytes)
    # First in the table: the lock path should not be matched against /docs and friends.
    app.router.routes[:0] = original.routes() + upstream.routes()
    app.include_router(upstream_reservations.router)
    app.include_router(v2.router)
    app.include_router(v2_usage.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.include_router(queue_page.router)
    app.include_router(tags_page.router)
    app.include_router(activity_page.router)
    app.include_router(web.router)
    return app


async def _sweep_expired_leases(leases: LeaseService) -> None:
    """End expired leases and stale tickets every SWEEP_INTERVAL_S, and serve the queue.

    No lease outlives its TTL by more than about SWEEP_INTERVAL_S.

    Every replica or worker may sweep at once: ending a lease is a conditional update.
    """
    unavailable = False
    while True:
        try:
            await leases.sweep()
        except DatabaseUnavailableError as error:
            # Once per outage, not four times a second.
            if not unavailable:
                log.warning("expiry sweep paused: database unavailable: %s", error)
            unavailable = True
        except Exception:
            log.exception("expiry sweep failed; retrying")
        else:
            if unavailable:
                log.warning("expiry sweep resumed: the database answers again")
            unavailable = False
        await asyncio.sleep(SWEEP_INTERVAL_S)


async def _record_key_usage(identity: IdentityService) -> None:
    """Write when keys were last used, every USAGE_FLUSH_S (never once per request)."""
    while True:
        await asyncio.sleep(USAGE_FLUSH_S)
        await _flush_key_usage(identity)


async def _flush_key_usage(identity: IdentityService) -> None:
    """Write when keys were last used; a failure (the database is down) only loses that."""
    try:
        await identity.record_usage()
    except DatabaseUnavailableError as error:
        log.warning("could not record when API keys were last used: %s", error)
    except Exception:
        log.exception("could not record when API keys were last used")


def create_app_from_environment() -> FastAPI:
    """The app configured by `RENTABOT_*` variables: what each server worker process runs."""
    return create_app(Settings())
