"""API keys and sessions on both databases: hashes only, revocation across processes within
the cache time, sessions that end, and when keys were last used."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from rentabot.domain.errors import (
    InvalidRequestError,
    KeyExistsError,
    NotFoundError,
    UnauthenticatedError,
)
from rentabot.domain.identity import Principal, Role, csrf_token
from rentabot.service import identity as identity_module
from rentabot.service.identity import CACHE_S, MAX_SECRET_LENGTH, IdentityService
from rentabot.storage.database import Database
from rentabot.storage.opening import open_database
from tests.support import rows

pytestmark = pytest.mark.anyio


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def other(database: Database, database_url: str) -> Iterator[Database]:
    """The same database opened again, as another process or replica would."""
    opened = open_database(database_url)
    yield opened
    opened.dispose()


async def test_a_new_key_is_shown_once_and_only_its_hash_is_stored(database: Database) -> None:
    """create_key answers the record and a 47-character `rbk_` secret; the table holds its
    SHA-256, never the secret."""
    clock = Clock()
    record, secret = await IdentityService(database, clock=clock).create_key("ci", Role.LOCK)
    assert (record.name, record.role, record.created_at) == ("ci", Role.LOCK, clock.now)
    assert (record.last_used_at, record.revoked_at) == (None, None)
    assert secret.startswith("rbk_")
    assert len(secret) == 47
    stored = rows(database, "SELECT secret_hash FROM api_keys")
    assert stored == [(hashlib.sha256(secret.encode()).hexdigest(),)]
    assert stored != [(secret,)]
    everything = repr(rows(database, "SELECT * FROM api_keys"))
    assert secret not in everything
    assert secret[len("rbk_") :] not in everything


async def test_every_key_is_a_new_secret(database: Database) -> None:
    """Two keys never share a secret, even created for the same name after a revocation."""
    identity = IdentityService(database)
    _, first = await identity.create_key("ci", Role.LOCK)
    await identity.revoke_key("ci")
    _, second = await identity.create_key("ci", Role.LOCK)
    assert first != second


async def test_a_bad_name_is_refused_before_anything_is_stored(database: Database) -> None:
    """A name check_key_name refuses is InvalidRequestError and no row."""
    identity = IdentityService(database)
    for name in ("", "-ci", "a b", "x" * 101):
        with pytest.raises(InvalidRequestError):
            await identity.create_key(name, Role.LOCK)
    assert rows(database, "SELECT COUNT(*) FROM api_keys") == [(0,)]


async def test_a_name_is_taken_until_its_key_is_revoked(database: Database) -> None:
    """A second key of a live name is KeyExistsError; after revoking, the name is free again."""
    identity = IdentityService(database)
    await identity.create_key("ci", Role.LOCK)
    with pytest.raises(KeyExistsError, match="revoke it first"):
        await identity.create_key("ci", Role.ADMIN)
    await identity.revoke_key("ci")
    replacement, _ = await identity.create_key("ci", Role.ADMIN)
    assert replacement.role is Role.ADMIN
    with pytest.raises(KeyExistsError):
        await identity.create_key("ci", Role.READ)
    assert rows(database, "SELECT COUNT(*) FROM api_keys WHERE name = 'ci'") == [(2,)]


async def test_keys_are_listed_by_name_then_age_revoked_ones_on_request(
    database: Database,
) -> None:
    """keys() lists live keys by name; revoked=True adds the revoked ones, each name's
    oldest first, with when they were revoked."""
    clock = Clock()
    identity = IdentityService(database, clock=clock)
    for name in ("zed", "alice", "mallory"):
        await identity.create_key(name, Role.READ)
        clock.now += 1
    await identity.revoke_key("mallory")
    revoked_at = clock.now
    clock.now += 1
    await identity.create_key("mallory", Role.LOCK)
    live = await identity.keys()
    assert [(key.name, key.role) for key in live] == [
        ("alice", Role.READ),
        ("mallory", Role.LOCK),
        ("zed", Role.READ),
    ]
    every = await identity.keys(revoked=True)
    assert [(key.name, key.revoked_at) for key in every] == [
        ("alice", None),
        ("mallory", revoked_at),
        ("mallory", None),
        ("zed", None),
    ]


async def test_revoking_what_is_not_there_is_not_found(database: Database) -> None:
    """Revoking an unknown name, or one revoked already, is NotFoundError."""
    identity = IdentityService(database)
    with pytest.raises(NotFoundError, match="No key named 'ghost'"):
        await identity.revoke_key("ghost")
    await identity.create_key("ci", Role.LOCK)
    await identity.revoke_key("ci")
    with pytest.raises(NotFoundError):
        await identity.revoke_key("ci")


async def test_a_valid_key_authenticates_as_its_principal(database: Database) -> None:
    """The secret of a live key is Principal(name, role, "key")."""
    identity = IdentityService(database)
    _, secret = await identity.create_key("jenkins", Role.ADMIN)
    assert await identity.authenticate_key(secret) == Principal("jenkins", Role.ADMIN, "key")


async def test_an_unknown_key_is_refused_never_anonymous(database: Database) -> None:
    """Unknown, empty, overlong, almost-right or unstorable secrets are UnauthenticatedError."""
    identity = IdentityService(database)
    _, secret = await identity.create_key("jenkins", Role.LOCK)
    for wrong in (
        "rbk_" + "A" * 43,
        "",
        secret[:-1],
        secret + "x",
        secret.upper(),
        "x" * (MAX_SECRET_LENGTH + 1),
        "\x00",
        "\ud800",
    ):
        with pytest.raises(UnauthenticatedError, match="unknown or revoked"):
            await identity.authenticate_key(wrong)


async def test_a_revoked_key_is_refused_at_once_where_it_was_revoked(database: Database) -> None:
    """The process that revokes a key refuses it on the next request, cache or not."""
    monotonic = Clock()
    identity = IdentityService(database, monotonic=monotonic)
    _, secret = await identity.create_key("ci", Role.LOCK)
    await identity.authenticate_key(secret)
    await identity.revoke_key("ci")
    with pytest.raises(UnauthenticatedError):
        await identity.authenticate_key(secret)


async def test_a_key_revoked_elsewhere_is_refused_once_the_cache_time_has_passed(
    database: Database, other: Database
) -> None:
    """Revoked by another process, a key this process just read stays accepted until this
    process's clock passes CACHE_S, and is refused from then on (a replacement key of the
    same name does not bring the old secret back)."""
    monotonic = Clock()
    here = IdentityService(database, monotonic=monotonic)
    there = IdentityService(other)
    _, secret = await there.create_key("ci", Role.LOCK)
    assert (await here.authenticate_key(secret)).name == "ci"
    await there.revoke_key("ci")
    _, replacement = await there.create_key("ci", Role.LOCK)
    monotonic.now += CACHE_S * 0.9
    assert (await here.authenticate_key(secret)).name == "ci"
    monotonic.now += CACHE_S * 0.1
    with pytest.raises(UnauthenticatedError):
        await here.authenticate_key(secret)
    monotonic.now += 10 * CACHE_S
    with pytest.raises(UnauthenticatedError):
        await here.authenticate_key(secret)
    assert (await here.authenticate_key(replacement)).name == "ci"


async def test_a_refused_key_created_elsewhere_is_accepted_once_the_cache_time_has_passed(
    database: Database, other: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal is remembered for CACHE_S too: a key created by another process with the
    secret this process just refused is accepted once this process's clock passes CACHE_S."""
    secret = "rbk_" + "B" * 43
    monkeypatch.setattr(identity_module, "new_key_secret", lambda: secret)
    monotonic = Clock()
    here = IdentityService(database, monotonic=monotonic)
    with pytest.raises(UnauthenticatedError):
        await here.authenticate_key(secret)
    _, created = await IdentityService(other).create_key("new", Role.READ)
    assert created == secret
    monotonic.now += CACHE_S * 0.9
    with pytest.raises(UnauthenticatedError):
        await here.authenticate_key(secret)
    monotonic.now += CACHE_S * 0.1
    assert await here.authenticate_key(secret) == Principal("new", Role.READ, "key")


# --- sessions ----------------------------------------------------------------------------


async def test_signing_in_opens_a_session_of_the_key_s_principal(database: Database) -> None:
    """sign_in answers a new secret (stored only as a hash), its principal by session, the
    expiry after session_ttl, and the session's CSRF token; session() names the principal."""
    clock = Clock()
    identity = IdentityService(database, clock=clock, session_ttl=3600)
    _, key = await identity.create_key("alice", Role.LOCK)
    signed = await identity.sign_in(key)
    assert signed.principal == Principal("alice", Role.LOCK, "session")
    assert signed.expires_at == clock.now + 3600
    assert signed.csrf_token == csrf_token(signed.secret)
    assert signed.secret not in (key, "")
    assert await identity.session(signed.secret) == Principal("alice", Role.LOCK, "session")
    stored = rows(database, "SELECT id FROM sessions")
    assert stored == [(hashlib.sha256(signed.secret.encode()).hexdigest(),)]
    another = await identity.sign_in(key)
    assert another.secret != signed.secret
    assert another.csrf_token != signed.csrf_token


async def test_only_a_valid_key_signs_in(database: Database) -> None:
    """An unknown or revoked key is UnauthenticatedError, and no session is stored."""
    identity = IdentityService(database)
    _, key = await identity.create_key("alice", Role.LOCK)
    await identity.revoke_key("alice")
    for secret in (key, "rbk_nope", ""):
        with pytest.raises(UnauthenticatedError):
            await identity.sign_in(secret)
    assert rows(database, "SELECT COUNT(*) FROM sessions") == [(0,)]


async def test_an_unknown_session_is_nobody(database: Database) -> None:
    """An unknown, empty or overlong cookie is None (the browser is anonymous), not an error."""
    identity = IdentityService(database)
    for secret in ("nope", "", "x" * (MAX_SECRET_LENGTH + 1), "\ud800"):
        assert await identity.session(secret) is None


async def test_signing_out_ends_the_session_here_at_once(database: Database) -> None:
    """After sign_out, this process answers None for the session on the next request."""
    monotonic = Clock()
    identity = IdentityService(database, monotonic=monotonic)
    _, key = await identity.create_key("alice", Role.LOCK)
    signed = await identity.sign_in(key)
    assert await identity.session(signed.secret) is not None
    await identity.sign_out(signed.secret)
    assert await identity.session(signed.secret) is None
    assert rows(database, "SELECT COUNT(*) FROM sessions WHERE ended_at IS NOT NULL") == [(1,)]


async def test_signing_out_elsewhere_ends_the_session_after_the_cache_time(
    database: Database, other: Database
) -> None:
    """Signed out by another process, a session this process just read lasts until this
    process's clock passes CACHE_S, then is None."""
    monotonic = Clock()
    here = IdentityService(database, monotonic=monotonic)
    there = IdentityService(other)
    _, key = await there.create_key("alice", Role.LOCK)
    signed = await there.sign_in(key)
    assert await here.session(signed.secret) is not None
    await there.sign_out(signed.secret)
    monotonic.now += CACHE_S * 0.9
    assert await here.session(signed.secret) is not None
    monotonic.now += CACHE_S * 0.1
    assert await here.session(signed.secret) is None


async def test_revoking_the_key_ends_its_sessions(database: Database, other: Database) -> None:
    """Revoking a key ends every session opened with it: at once where revoked, after the
    cache time elsewhere; a session of another key lives on."""
    monotonic = Clock()
    here = IdentityService(database, monotonic=monotonic)
    there = IdentityService(other)
    _, alice = await here.create_key("alice", Role.LOCK)
    _, bob = await here.create_key("bob", Role.LOCK)
    mine, elsewhere, bobs = (
        await here.sign_in(alice),
        await here.sign_in(alice),
        await here.sign_in(bob),
    )
    assert await there.session(elsewhere.secret) is not None
    await here.revoke_key("alice")
    assert await here.session(mine.secret) is None
    assert await there.session(elsewhere.secret) is not None  # still within its cache time
    assert await here.session(bobs.secret) == Principal("bob", Role.LOCK, "session")
    fresh = IdentityService(other)
    assert await fresh.session(elsewhere.secret) is None


async def test_a_replacement_key_does_not_revive_the_old_key_s_sessions(database: Database) -> None:
    """A new key of the revoked name does not revive the old key's sessions."""
    identity = IdentityService(database)
    _, old = await identity.create_key("alice", Role.LOCK)
    signed = await identity.sign_in(old)
    await identity.revoke_key("alice")
    await identity.create_key("alice", Role.LOCK)
    assert await identity.session(signed.secret) is None


async def test_an_expired_session_is_nobody(database: Database) -> None:
    """Past session_ttl on the wall clock a session is None, in this process (once its cache
    time has passed) and in a fresh one."""
    clock, monotonic = Clock(), Clock()
    identity = IdentityService(database, clock=clock, monotonic=monotonic, session_ttl=100)
    _, key = await identity.create_key("alice", Role.LOCK)
    signed = await identity.sign_in(key)
    clock.now += 99.9
    monotonic.now += 99.9
    assert await identity.session(signed.secret) is not None
    clock.now += 0.1
    monotonic.now += 0.1
    assert await identity.session(signed.secret) is None
    assert await IdentityService(database, clock=clock).session(signed.secret) is None


async def test_a_session_is_never_trusted_past_its_expiry_from_the_cache(
    database: Database,
) -> None:
    """Read 0.5 s before it expires, a session is not kept for the full CACHE_S: once the
    expiry has passed (both clocks moved 0.5 s) it is None."""
    assert CACHE_S > 0.5
    clock, monotonic = Clock(), Clock()
    identity = IdentityService(database, clock=clock, monotonic=monotonic, session_ttl=10)
    _, key = await identity.create_key("alice", Role.LOCK)
    signed = await identity.sign_in(key)
    clock.now += 9.5
    monotonic.now += 9.5
    assert await identity.session(signed.secret) is not None
    clock.now += 0.5
    monotonic.now += 0.5
    assert await identity.session(signed.secret) is None


async def test_signing_in_forgets_sessions_long_ended(database: Database) -> None:
    """A sign-in deletes the rows of sessions that expired or ended before it."""
    clock = Clock()
    identity = IdentityService(database, clock=clock, session_ttl=100)
    _, key = await identity.create_key("alice", Role.LOCK)
    expired = await identity.sign_in(key)
    ended = await identity.sign_in(key)
    await identity.sign_out(ended.secret)
    clock.now += 101
    live = await identity.sign_in(key)
    assert rows(database, "SELECT COUNT(*) FROM sessions") == [(1,)]
    assert await identity.session(live.secret) is not None
    assert await identity.session(expired.secret) is None


# --- usage and admins --------------------------------------------------------------------


async def test_record_usage_writes_when_keys_were_last_used(database: Database) -> None:
    """Each authentication (cached or not) and each session read marks the key used at the
    wall clock; record_usage writes the latest, and nothing before it is called."""
    clock = Clock()
    identity = IdentityService(database, clock=clock)
    _, ci = await identity.create_key("ci", Role.LOCK)
    _, alice = await identity.create_key("alice", Role.LOCK)
    signed = await identity.sign_in(alice)
    await identity.record_usage()
    assert rows(database, "SELECT name, last_used_at FROM api_keys ORDER BY name") == [
        ("alice", None),
        ("ci", None),
    ]
    clock.now += 5
    await identity.authenticate_key(ci)
    clock.now += 5
    await identity.authenticate_key(ci)
    await identity.session(signed.secret)
    assert rows(database, "SELECT last_used_at FROM api_keys WHERE name = 'ci'") == [(None,)]
    await identity.record_usage()
    assert rows(database, "SELECT name, last_used_at FROM api_keys ORDER BY name") == [
        ("alice", clock.now),
        ("ci", clock.now),
    ]
    listed = {key.name: key.last_used_at for key in await identity.keys()}
    assert listed == {"alice": clock.now, "ci": clock.now}


async def test_record_usage_never_moves_last_used_back(database: Database, other: Database) -> None:
    """A process whose use is older than the stored one (another process wrote a later one)
    leaves the later time."""
    late, early = Clock(2_000_000.0), Clock(1_500_000.0)
    here = IdentityService(database, clock=late)
    there = IdentityService(other, clock=early)
    _, secret = await here.create_key("ci", Role.LOCK)
    await here.authenticate_key(secret)
    await here.record_usage()
    await there.authenticate_key(secret)
    await there.record_usage()
    assert rows(database, "SELECT last_used_at FROM api_keys") == [(late.now,)]
    early.now = late.now + 1
    await there.authenticate_key(secret)
    await there.record_usage()
    assert rows(database, "SELECT last_used_at FROM api_keys") == [(late.now + 1,)]


async def test_has_admin_key_counts_live_admin_keys_only(database: Database) -> None:
    """False on a fresh database and with keys of lower roles; True with an admin key; False
    again once it is revoked."""
    identity = IdentityService(database)
    assert not await identity.has_admin_key()
    await identity.create_key("ci", Role.LOCK)
    await identity.create_key("viewer", Role.READ)
    assert not await identity.has_admin_key()
    await identity.create_key("root", Role.ADMIN)
    assert await identity.has_admin_key()
    await identity.revoke_key("root")
    assert not await identity.has_admin_key()
