"""Who is calling, and what they may do: principals, roles, and the rules that relate them.

Pure rules, no I/O: the service looks keys and sessions up, the HTTP layer reads headers;
both ask this module what the answer means.

Roles are ordered: `none` < `read` < `lock` < `admin`. A route declares the least role it
needs; a principal may call it when its role is at least that, except that admin routes
never accept an anonymous caller, whatever role anonymous callers are given.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from rentabot.domain.errors import (
    ForbiddenError,
    InvalidRequestError,
    UnauthenticatedError,
)

#: Every API key starts with this, so secret scanners (and people) recognise one.
KEY_PREFIX = "rbk_"
#: Longest key name, user name or group name accepted.
MAX_NAME_LENGTH = 100
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")


class Role(enum.IntEnum):
    """What a principal may do; each role includes the ones below it."""

    NONE = 0
    READ = 1
    LOCK = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """The role's name as settings, keys and answers spell it."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named `text` (`none`, `read`, `lock`, `admin`); InvalidRequestError else."""
        by_label = {role.label: role for role in cls}
        # Lower-casing never turns a non-ASCII letter into an ASCII one; upper-casing does
        # (a dotless i, U+0131, becomes I: "adm\u0131n" would read as admin).
        found = by_label.get(text.strip().lower())
        if found is None:
            raise InvalidRequestError(f"unknown role {text!r}: choose read, lock or admin")
        return found


#: How a caller proved who it is. `session` and `proxy` are credentials a browser sends by
#: itself (a cookie, the single-sign-on proxy's cookie): they are "ambient".
Via = Literal["key", "session", "proxy", "anonymous"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key's name or a user's name, with a role; or anonymous."""

    #: The key's or user's name; None for an anonymous caller.
    name: str | None
    role: Role
    via: Via

    @property
    def authenticated(self) -> bool:
        """Whether the caller proved an identity (anonymous callers did not)."""
        return self.name is not None

    @property
    def ambient(self) -> bool:
        """Whether the credential is one a browser attaches on its own, so a page on another
        origin could make the browser use it: such callers need an origin check to write."""
        return self.via in ("session", "proxy")

    @property
    def subject(self) -> str:
        """The principal as stored with leases and tickets ('' for anonymous callers, which
        no key or user name can be)."""
        return self.name or ""

    def may(self, needed: Role) -> bool:
        """Whether this principal may call a route that needs `needed`."""
        if needed is Role.ADMIN and not self.authenticated:
            return False
        return self.role >= needed

    def require(self, needed: Role) -> None:
        """Raise UnauthenticatedError (no identity) or ForbiddenError (not enough role) unless
        this principal may call a route that needs `needed`."""
        if self.may(needed):
            return
        if not self.authenticated:
            raise UnauthenticatedError(
                f"this needs the {needed.label} role: send an API key in the X-API-Key header"
                " (anonymous callers"
                + (" may not" if needed is Role.ADMIN else f" have the {self.role.label} role")
                + ")"
            )
        raise ForbiddenError(
            f"{self.name} has the {self.role.label} role; this needs {needed.label}"
        )

    def owns(self, subject: str) -> bool:
        """Whether a lease or ticket recorded for `subject` is this principal's own (never
        for anonymous callers: they are all the same nobody)."""
        return self.authenticated and subject == self.name


def anonymous(role: Role) -> Principal:
    """A caller that sent no credential, with the role anonymous callers get."""
    return Principal(None, role, "anonymous")


def check_key_name(name: str) -> str:
    """`name` if it can name a key (letters, digits, `._@+-`, up to 100; not starting with a
    punctuation mark); InvalidRequestError otherwise."""
    if not _KEY_NAME.fullmatch(name):
        raise InvalidRequestError(
            "a key name is 1 to 100 letters, digits or . _ @ + -, starting with a letter or digit"
        )
    return name


def secret_hash(secret: str) -> str:
    """The stored form of an API key or a session id: SHA-256, hex.

    A fast hash is right here (unlike for passwords): every secret is 256 random bits, so
    there is nothing to guess, and a slow hash would tax every request."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_token(session_secret: str) -> str:
    """The CSRF token of a session: derived from its secret (which only the browser that
    signed in holds, in an HttpOnly cookie), so it needs no storage of its own."""
    return hmac.new(session_secret.encode(), b"rentabot-csrf", hashlib.sha256).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDRs (`10.0.0.5`, `10.0.0.0/8`, `::1`) as networks; ValueError else."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def address_in(address: str | None, networks: Iterable[Network]) -> bool:
    """Whether the peer `address` belongs to one of `networks` (never when unknown)."""
    if not address:
        return False
    try:
        peer = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        # A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
        peer = peer.ipv4_mapped
    return any(peer in network for network in networks)


@dataclass(frozen=True, slots=True)
class ProxyPolicy:
    """Who a single-sign-on proxy may vouch for, and which of its users are admins."""

    header: str | None = None
    proxies: tuple[Network, ...] = ()
    groups_header: str | None = None
    admin_users: frozenset[str] = frozenset()
    admin_groups: frozenset[str] = frozenset()
    #: The role of a user the proxy vouches for who is not an admin.
    user_role: Role = Role.LOCK

    @property
    def enabled(self) -> bool:
        """Whether a trusted header is configured at all."""
        return bool(self.header and self.proxies)

    def trusts(self, peer: str | None) -> bool:
        """Whether the TCP peer `peer` is a trusted proxy (whose headers are believed)."""
        return self.enabled and address_in(peer, self.proxies)

    def principal(self, peer: str | None, user: str | None, groups: str | None) -> Principal | None:
        """The user a trusted proxy at `peer` vouches for, or None when the header is absent,
        empty, or comes from anyone but a trusted proxy (then it is ignored)."""
        if user is None or not self.trusts(peer):
            return None
        name = user.strip()
        if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
            return None
        member_of = {g.strip() for g in (groups or "").split(",") if g.strip()}
        admin = name in self.admin_users or bool(member_of & self.admin_groups)
        return Principal(name, Role.ADMIN if admin else self.user_role, "proxy")


def holds(token: str | None, principal: Principal, holder_token: str, holder: str | None) -> bool:
    """Whether a caller acts as the holder of a lease or ticket: by presenting its token
    (a capability, as the original's unlock), or, sending none, by being its principal
    (never an anonymous caller: they are all the same nobody)."""
    if token is not None:
        return same_secret(token, holder_token)
    return principal.owns(holder or "")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as anyone may see it: never the key itself (only its hash is stored)."""

    id: int
    name: str
    role: Role
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    @property
    def principal(self) -> Principal:
        """Who a request carrying this key is."""
        return Principal(self.name, self.role, "key")
