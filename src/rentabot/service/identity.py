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


@dataclass(slots=True)
class _Remembered:
    """What a cache holds for one secret: the key it names (None: none, or revoked)."""

    key: ApiKey | None
    until: float


@dataclass(slots=True)
class _Cache:
    entries: dict[str, _Remembered] = field(default_factory=dict)

    def get(self, digest: str, now: float) -> _Remembered | None:
        entry = self.entries.get(digest)
        return entry if entry is not None and entry.until > now else None

    def put(self, digest: str, key: ApiKey | None, until: float) -> None:
        if len(self.entries) >= CACHE_ENTRIES:
            self.entries.clear()
        self.entries[digest] = _Remembered(key, until)

    def drop(self, digest: str) -> None:
        self.entries.pop(digest, None)


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
        self._keys.entries.clear()
        self._sessions.entries.clear()

    async def has_admin_key(self) -> bool:
        """Whether any admin key is not revoked."""
        return bool(await self._database.read(Store.admin_key_count))

    async def authenticate_key(self, secret: str) -> Principal:
        """The principal of a request carrying this key. Raises UnauthenticatedError for a
        key that is unknown or revoked (never taken for an anonymous caller)."""
        key = await self._valid_key(secret)
        if key is None:
            raise UnauthenticatedError("That API key is not valid: it is unknown or revoked")
        self._used[key.id] = self._clock()
        return key.principal

    async def _valid_key(self, secret: str) -> ApiKey | None:
        if not 0 < len(secret) <= MAX_SECRET_LENGTH:
            return None
        digest = secret_hash(secret)
        now = self._monotonic()
        remembered = self._keys.get(digest, now)
        if remembered is None:
            stored = await self._database.read(lambda store: store.key_by_hash(digest))
            key = stored if stored is not None and stored.revoked_at is None else None
            self._keys.put(digest, key, now + CACHE_S)
            return key
        return remembered.key

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
        key = await self._valid_key(secret)
        if key is None:
            raise UnauthenticatedError("That key is not valid: it is unknown or revoked")
        session = secrets.token_urlsafe(32)
        now = self._clock()
        expires_at = now + self.session_ttl

        def insert(store: Store) -> None:
            store.delete_sessions_ended_before(now)
            store.insert_session(secret_hash(session), key.id, now, expires_at)

        await self._database.write(insert)
        principal = Principal(key.name, key.role, "session")
        return SignedIn(session, principal, expires_at, csrf_token(session))

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
            key, expires_at = found if found is not None else (None, 0.0)
            # Never trusted past the session's own expiry.
            until = min(now + CACHE_S, now + max(0.0, expires_at - self._clock()))
            self._sessions.put(digest, key, until)
            remembered = _Remembered(key, until)
        if remembered.key is None:
            return None
        self._used[remembered.key.id] = self._clock()
        return Principal(remembered.key.name, remembered.key.role, "session")

    async def sign_out(self, secret: str) -> None:
        """End the session (every process refuses it within CACHE_S)."""
        digest = secret_hash(secret)
        now = self._clock()
        await self._database.write(lambda store: store.end_session(digest, now))
        self._sessions.drop(digest)
