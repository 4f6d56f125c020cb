"""Who is calling: API keys, sign-in sessions, and the principal of every request.

Keys and session ids are random 256-bit secrets, stored only as SHA-256 hashes. Looking one
up is on every request's path, so answers are kept for `CACHE_S` in each process: a revoked
key or an ended session is refused by every process and replica within that (plus the
commit), and a busy key costs one database read per second per process. When a key was last
used is written every `USAGE_FLUSH_S`, never once per request.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from rentabot.domain.errors import KeyExistsError, NotFoundError, UnauthenticatedError
from rentabot.domain.identity import (
    KEY_PREFIX,
    ApiKey,
    Principal,
    ProxyPolicy,
    Role,
    anonymous,
    check_key_name,
    csrf_token,
    secret_hash,
)
from rentabot.storage.database import Database
from rentabot.storage.store import Store

#: How long a process trusts what it read of a key or a session.
CACHE_S = 1.0
#: How often the times keys were last used are written.
USAGE_FLUSH_S = 10.0
#: Entries kept per cache (unknown keys included); past it, the cache starts afresh.
CACHE_ENTRIES = 10_000
#: Longest secret looked up at all: anything longer is no key of ours.
MAX_SECRET_LENGTH = 200

Clock = Callable[[], float]


def new_key_secret() -> str:
    """A new API key: the prefix and 256 random bits (43 URL-safe characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A new session: the secret for the browser's cookie (never stored: only its hash),
    who it is, until when, and the token its page sends with writes."""

    secret: str
    principal: Principal
    expires_at: float
    csrf_token: str


@dataclass(frozen=True, slots=True)
class _Remembered:
    """What a cache holds for one secret: the principal it proves and its key's id (both
    None: no such key or session, or revoked), until when to trust it."""

    principal: Principal | None
    key_id: int | None
    until: float


@dataclass(slots=True)
class _Cache:
    """Secrets seen lately, by hash. Unknown ones are kept apart, so a flood of made-up
    keys (each one database read) can never push the real ones out."""

    known: dict[str, _Remembered] = field(default_factory=dict)
    unknown: dict[str, _Remembered] = field(default_factory=dict)

    def get(self, digest: str, now: float) -> _Remembered | None:
        entry = self.known.get(digest) or self.unknown.get(digest)
        return entry if entry is not None and entry.until > now else None

    def put(self, digest: str, entry: _Remembered) -> None:
        shelf = self.known if entry.principal is not None else self.unknown
        if len(shelf) >= CACHE_ENTRIES:
            shelf.clear()
        shelf[digest] = entry
        (self.unknown if shelf is self.known else self.known).pop(digest, None)

    def clear(self) -> None:
        self.known.clear()
        self.unknown.clear()


class IdentityService:
    """API keys (create, list, revoke, authenticate) and sessions (sign in and out)."""

    def __init__(
        self,
        database: Database,
        *,
        anonymous_role: Role = Role.LOCK,
        proxy: ProxyPolicy | None = None,
        session_ttl: float = 8 * 3600.0,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self._database = database
        #: Who a caller that proves nothing is.
        self.anonymous = anonymous(anonymous_role)
        self.proxy = proxy or ProxyPolicy()
        self.session_ttl = session_ttl
        self._clock = clock
        self._monotonic = monotonic
        self._keys = _Cache()
        self._sessions = _Cache()
        self._used: dict[int, float] = {}

    # ------------------------------------------------------------------ keys

    async def create_key(self, name: str, role: Role) -> tuple[ApiKey, str]:
        """A new key: its public record and the secret, which is shown only now. Raises
        InvalidRequestError (bad name), KeyExistsError (that name has a key not revoked)."""
        check_key_name(name)
        secret = new_key_secret()
        now = self._clock()

        def insert(store: Store) -> ApiKey:
            key_id = store.insert_key(name, role.label, secret_hash(secret), now)
            if key_id is None:
                raise KeyExistsError(f"a key named {name!r} exists: revoke it first to replace it")
            return ApiKey(key_id, name, role, now, None, None)

        return await self._database.write(insert), secret

    async def keys(self, *, revoked: bool = False) -> list[ApiKey]:
        """Every key not revoked (with `revoked`, those too), by name."""
        return await self._database.read(partial(Store.keys, revoked=revoked))

    async def revoke_key(self, name: str) -> None:
        """Revoke the key of that name: refused everywhere within CACHE_S; the sessions
        opened with it end too. Raises NotFoundError."""
        now = self._clock()

        def revoke(store: Store) -> None:
            if not store.revoke_key(name, now):
                raise NotFoundError(None, f"No key named {name!r} (or it is revoked already)")

        await self._database.write(revoke)
        # This process at once; the others when their cache entry runs out.
        self._keys.clear()
        self._sessions.clear()

    async def has_admin_key(self) -> bool:
        """Whether any admin key is not revoked."""
        return bool(await self._database.read(Store.admin_key_count))

    async def authenticate_key(self, secret: str) -> Principal:
        """The principal of a request carrying this key. Raises UnauthenticatedError for a
        key that is unknown or revoked (never taken for an anonymous caller)."""
        remembered = await self._key(secret)
        if remembered.principal is None or remembered.key_id is None:
            raise UnauthenticatedError("That API key is not valid: it is unknown or revoked")
        self._used[remembered.key_id] = self._clock()
        return remembered.principal

    async def _key(self, secret: str) -> _Remembered:
        """What the key proves, from the cache or the database."""
        now = self._monotonic()
        if not 0 < len(secret) <= MAX_SECRET_LENGTH:
            return _Remembered(None, None, now)
        digest = secret_hash(secret)
        remembered = self._keys.get(digest, now)
        if remembered is None:
            stored = await self._database.read(lambda store: store.key_by_hash(digest))
            if stored is not None and stored.revoked_at is None:
                remembered = _Remembered(stored.principal, stored.id, now + CACHE_S)
            else:
                remembered = _Remembered(None, None, now + CACHE_S)
            self._keys.put(digest, remembered)
        return remembered

    async def record_usage(self) -> None:
        """Write when keys were last used (since the last call)."""
        if not self._used:
            return
        uses, self._used = sorted(self._used.items()), {}
        await self._database.write(lambda store: store.mark_keys_used(uses))

    # ------------------------------------------------------------------ sessions

    async def sign_in(self, secret: str) -> SignedIn:
        """Open a session for the holder of this key (a person's own key). Raises
        UnauthenticatedError for a key that is unknown or revoked."""
        key = await self._key(secret)
        key_id, principal = key.key_id, key.principal
        if key_id is None or principal is None:
            raise UnauthenticatedError("That key is not valid: it is unknown or revoked")
        session = secrets.token_urlsafe(32)
        now = self._clock()
        expires_at = now + self.session_ttl

        def insert(store: Store) -> None:
            store.delete_sessions_ended_before(now)
            store.insert_session(secret_hash(session), key_id, now, expires_at)

        await self._database.write(insert)
        signed_in = Principal(principal.name, principal.role, "session")
        return SignedIn(session, signed_in, expires_at, csrf_token(session))

    async def session(self, secret: str) -> Principal | None:
        """Who a browser with this session cookie is; None when the session is unknown,
        ended, expired, or its key is revoked (the caller is then anonymous)."""
        if not 0 < len(secret) <= MAX_SECRET_LENGTH:
            return None
        digest = secret_hash(secret)
        now = self._monotonic()
        remembered = self._sessions.get(digest, now)
        if remembered is None:
            found = await self._database.read(
                lambda store: store.session_key(digest, self._clock())
            )
            if found is None:
                remembered = _Remembered(None, None, now + CACHE_S)
            else:
                key, expires_at = found
                # Never trusted past the session's own expiry.
                until = now + min(CACHE_S, max(0.0, expires_at - self._clock()))
                remembered = _Remembered(Principal(key.name, key.role, "session"), key.id, until)
            self._sessions.put(digest, remembered)
        if remembered.key_id is not None:
            self._used[remembered.key_id] = self._clock()
        return remembered.principal

    async def sign_out(self, secret: str) -> None:
        """End the session (every process refuses it within CACHE_S)."""
        digest = secret_hash(secret)
        now = self._clock()
        await self._database.write(lambda store: store.end_session(digest, now))
        self._sessions.put(digest, _Remembered(None, None, self._monotonic() + CACHE_S))
