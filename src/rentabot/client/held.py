"""A lease being kept: renewed in the background until released, or lost."""

from __future__ import annotations

import threading
from collections.abc import Callable

from rentabot.client.errors import LeaseLostError
from rentabot.client.models import HeldResource, Lease

#: Called once, from the renewing thread (or task), when the lease is lost.
OnLost = Callable[[LeaseLostError], None]


class HeldLease:
    """What `Client.lease()` yields: the lease, kept fresh by background renewals.

    `lost` turns true when a renewal finds the lease ended (expired, force-released) or
    cannot renew it before its deadline; `check()` then raises the LeaseLostError, and the
    `on_lost` callback (if any) has been called with it.
    """

    def __init__(self, lease: Lease, on_lost: OnLost | None = None) -> None:
        self._lease = lease
        self._on_lost = on_lost
        self._lost = threading.Event()
        self._error: LeaseLostError | None = None
        self._stopper: Callable[[], object] = lambda: None

    @property
    def lease(self) -> Lease:
        """The lease as of its last renewal."""
        return self._lease

    @property
    def id(self) -> int:
        """The lease id."""
        return self._lease.id

    @property
    def token(self) -> str:
        """The lease token (secret)."""
        return self._lease.token

    @property
    def resources(self) -> tuple[HeldResource, ...]:
        """What the lease holds: id, name, endpoint, properties, fence."""
        return self._lease.resources

    @property
    def expires_at(self) -> float | None:
        """The deadline after the last renewal (seconds since the epoch, server clock)."""
        return self._lease.expires_at

    @property
    def lost(self) -> bool:
        """Whether the lease was lost while held."""
        return self._lost.is_set()

    @property
    def error(self) -> LeaseLostError | None:
        """Why the lease was lost, once it was."""
        return self._error

    def check(self) -> None:
        """Raise LeaseLostError if the lease was lost; call it between steps of a long job."""
        if self._error is not None:
            raise self._error

    def wait_lost(self, timeout: float | None = None) -> bool:
        """Block until the lease is lost (True) or `timeout` seconds pass (False)."""
        return self._lost.wait(timeout)

    def stop(self) -> None:
        """Stop renewing (the lease is not released: `Client.release` does that)."""
        self._stopper()

    def _renewed(self, lease: Lease) -> None:
        self._lease = lease

    def _mark_lost(self, error: LeaseLostError) -> None:
        self._error = error
        self._lost.set()
        if self._on_lost is not None:
            self._on_lost(error)
