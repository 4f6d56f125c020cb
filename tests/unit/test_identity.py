"""Pure rules of identity: roles, principals, holders, trusted proxies, names and secrets."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rentabot.domain.errors import ForbiddenError, InvalidRequestError, UnauthenticatedError
from rentabot.domain.identity import (
    MAX_NAME_LENGTH,
    ApiKey,
    Network,
    Principal,
    ProxyPolicy,
    Role,
    address_in,
    anonymous,
    check_key_name,
    csrf_token,
    holds,
    parse_networks,
    secret_hash,
)

ROLES = list(Role)


def key(name: str, role: Role = Role.LOCK) -> Principal:
    """A caller authenticated by an API key of that name."""
    return Principal(name, role, "key")


# --- roles -------------------------------------------------------------------------------


def test_roles_are_ordered_none_read_lock_admin() -> None:
    """Each role includes the ones below it: none < read < lock < admin."""
    assert sorted(ROLES) == [Role.NONE, Role.READ, Role.LOCK, Role.ADMIN]
    assert Role.NONE < Role.READ < Role.LOCK < Role.ADMIN
    assert [role.label for role in ROLES] == ["none", "read", "lock", "admin"]


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("none", Role.NONE),
        ("read", Role.READ),
        ("lock", Role.LOCK),
        ("admin", Role.ADMIN),
        ("ADMIN", Role.ADMIN),
        ("  Lock\n", Role.LOCK),
    ],
)
def test_role_parse_reads_labels_whatever_their_case_and_spaces(text: str, role: Role) -> None:
    """A role's label parses back to it, in any case, with surrounding blanks."""
    assert Role.parse(text) is role


def test_role_parse_round_trips_every_label() -> None:
    """`Role.parse(role.label)` is the role, for every role (keys store the label)."""
    assert [Role.parse(role.label) for role in ROLES] == ROLES


@pytest.mark.parametrize(
    "text", ["", " ", "root", "admins", "lock,admin", "3", "label", "_value_", "adm\u0131n"]
)
def test_role_parse_refuses_unknown_names(text: str) -> None:
    """Anything but a role's label is InvalidRequestError, naming the choices."""
    with pytest.raises(InvalidRequestError, match=r"unknown role.*read, lock or admin"):
        Role.parse(text)


# --- principals --------------------------------------------------------------------------


@pytest.mark.parametrize("have", ROLES)
@pytest.mark.parametrize("needed", ROLES)
def test_a_key_may_call_what_its_role_reaches(have: Role, needed: Role) -> None:
    """An authenticated principal may call a route exactly when its role is at least the
    route's."""
    assert key("bob", have).may(needed) is (have >= needed)


@pytest.mark.parametrize("have", ROLES)
def test_admin_routes_never_accept_an_anonymous_caller_whatever_its_role(have: Role) -> None:
    """An anonymous principal is refused admin routes even when given Role.ADMIN, with
    UnauthenticatedError (prove who you are), never ForbiddenError."""
    caller = anonymous(have)
    assert not caller.may(Role.ADMIN)
    with pytest.raises(UnauthenticatedError, match=r"X-API-Key.*anonymous callers may not"):
        caller.require(Role.ADMIN)


def test_an_anonymous_admin_role_still_reaches_lower_routes() -> None:
    """Anonymous with Role.ADMIN (a misconfiguration) may lock and read, but not administer."""
    caller = anonymous(Role.ADMIN)
    assert caller.may(Role.LOCK)
    assert caller.may(Role.READ)
    caller.require(Role.LOCK)


def test_require_without_identity_is_unauthenticated_naming_the_anonymous_role() -> None:
    """Anonymous callers short of a role get UnauthenticatedError that names their role."""
    with pytest.raises(UnauthenticatedError) as refused:
        anonymous(Role.READ).require(Role.LOCK)
    assert type(refused.value) is UnauthenticatedError
    assert refused.value.code == "unauthenticated"
    assert "needs the lock role" in refused.value.message
    assert "anonymous callers have the read role" in refused.value.message
    with pytest.raises(UnauthenticatedError, match="anonymous callers have the none role"):
        anonymous(Role.NONE).require(Role.READ)


def test_require_of_a_known_caller_short_of_a_role_is_forbidden() -> None:
    """A key whose role is too low gets ForbiddenError naming who, its role, and the need."""
    with pytest.raises(ForbiddenError) as refused:
        key("ci-7", Role.READ).require(Role.LOCK)
    assert type(refused.value) is ForbiddenError
    assert refused.value.code == "forbidden"
    assert refused.value.message == "ci-7 has the read role; this needs lock"
    with pytest.raises(ForbiddenError, match="has the lock role; this needs admin"):
        Principal("alice", Role.LOCK, "session").require(Role.ADMIN)


@pytest.mark.parametrize("via", ["key", "session", "proxy"])
def test_an_authenticated_admin_may_do_everything(via: str) -> None:
    """An admin by key, session or proxy passes `require` for every role."""
    admin = Principal("root", Role.ADMIN, via)  # type: ignore[arg-type]
    for needed in ROLES:
        admin.require(needed)


def test_principal_properties() -> None:
    """Anonymous callers are unauthenticated with subject ''; sessions and proxies are
    ambient credentials, keys and anonymous callers are not."""
    nobody = anonymous(Role.LOCK)
    assert (nobody.name, nobody.role, nobody.via) == (None, Role.LOCK, "anonymous")
    assert not nobody.authenticated
    assert nobody.subject == ""
    assert key("bob").authenticated
    assert key("bob").subject == "bob"
    assert [Principal("p", Role.LOCK, via).ambient for via in ("session", "proxy")] == [True] * 2
    assert not key("bob").ambient
    assert not nobody.ambient


def test_owns_is_never_true_for_anonymous_callers() -> None:
    """A record of the anonymous subject '' is nobody's own, not every anonymous caller's."""
    assert key("bob").owns("bob")
    assert not key("bob").owns("alice")
    assert not key("bob").owns("")
    assert not anonymous(Role.ADMIN).owns("")


def test_an_api_key_authenticates_as_its_name_and_role() -> None:
    """ApiKey.principal is the key's name and role, proved by a key."""
    record = ApiKey(7, "jenkins", Role.READ, 1.0, None, None)
    assert record.principal == Principal("jenkins", Role.READ, "key")


# --- holders -----------------------------------------------------------------------------


def test_holds_by_token_whoever_presents_it() -> None:
    """The right token holds the lease for anyone (a capability), even anonymous callers
    and other keys; a wrong token holds nothing, even for the owning principal."""
    assert holds("t-1", anonymous(Role.LOCK), "t-1", None)
    assert holds("t-1", key("alice"), "t-1", "bob")
    assert not holds("t-2", key("bob"), "t-1", "bob")
    assert not holds("", key("bob"), "t-1", "bob")


def test_holds_by_identity_only_without_a_token() -> None:
    """Sending no token, a key holds what its principal recorded, and nothing else."""
    assert holds(None, key("bob"), "t-1", "bob")
    assert not holds(None, key("alice"), "t-1", "bob")
    assert not holds(None, key("bob"), "t-1", None)
    assert not holds(None, key("bob"), "t-1", "")


@pytest.mark.parametrize("recorded", [None, ""])
def test_holds_never_by_identity_for_anonymous_callers(recorded: str | None) -> None:
    """An anonymous caller without a token never holds an anonymous lease."""
    assert not holds(None, anonymous(Role.ADMIN), "t-1", recorded)


def test_holds_copes_with_text_no_token_is() -> None:
    """Lone surrogates and NUL in a presented token are just a wrong token, not a crash."""
    assert not holds("\ud800", key("bob"), "t-1", "bob")
    assert not holds("\x00", key("bob"), "t-1", "bob")


# --- trusted proxies ---------------------------------------------------------------------


def proxy(**overrides: object) -> ProxyPolicy:
    """A policy trusting 10.0.0.5, 192.168.0.0/16, ::1 and 2001:db8::/32 to set X-Forwarded-User."""
    values: dict[str, object] = {
        "header": "X-Forwarded-User",
        "proxies": parse_networks(["10.0.0.5", "192.168.0.0/16", "::1", "2001:db8::/32"]),
        "groups_header": "X-Forwarded-Groups",
        "admin_users": frozenset({"root"}),
        "admin_groups": frozenset({"lab-admins"}),
    }
    values.update(overrides)
    return ProxyPolicy(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "peer", ["10.0.0.5", "192.168.3.4", "192.168.255.255", "::1", "2001:db8::7"]
)
def test_a_trusted_proxy_vouches_for_its_user(peer: str) -> None:
    """From a trusted address or inside a trusted CIDR (IPv4 or IPv6), the header's user is
    the principal, with the user role, by proxy."""
    assert proxy().principal(peer, "alice", None) == Principal("alice", Role.LOCK, "proxy")


@pytest.mark.parametrize(
    "peer", ["10.0.0.6", "10.0.0.4", "192.169.0.1", "::2", "2001:db9::1", "127.0.0.1", "", None]
)
def test_anyone_else_s_header_is_ignored(peer: str | None) -> None:
    """From outside every trusted network, or an unknown peer, the header means nothing."""
    assert proxy().principal(peer, "root", "lab-admins") is None


@pytest.mark.parametrize("peer", ["not-an-address", "10.0.0.5:8080", "10.0.0.5 ", "::ffff:zz"])
def test_a_peer_that_is_no_address_is_not_trusted(peer: str) -> None:
    """A peer address that does not parse is never a trusted proxy."""
    assert proxy().principal(peer, "alice", None) is None


def test_an_ipv4_proxy_does_not_trust_ipv6_peers_and_back() -> None:
    """Networks match only addresses of their own version."""
    v4_only = proxy(proxies=parse_networks(["0.0.0.0/0"]))
    assert v4_only.principal("203.0.113.9", "alice", None) is not None
    assert v4_only.principal("2001:db8::1", "alice", None) is None
    v6_only = proxy(proxies=parse_networks(["::/0"]))
    assert v6_only.principal("2001:db8::1", "alice", None) is not None
    assert v6_only.principal("203.0.113.9", "alice", None) is None


@pytest.mark.parametrize(
    "user",
    [None, "", "   ", "a" * (MAX_NAME_LENGTH + 1), "bo\x00b", "bo\nb", "bob\x1b[31m", "\u200b"],
)
def test_an_empty_overlong_or_non_printable_user_is_ignored(user: str | None) -> None:
    """No header, a blank one, one over MAX_NAME_LENGTH or with control characters: no
    principal, even from a trusted proxy."""
    assert proxy().principal("10.0.0.5", user, "lab-admins") is None


def test_the_user_is_stripped_and_may_be_as_long_as_a_name() -> None:
    """Surrounding blanks are not part of the name; MAX_NAME_LENGTH characters are fine."""
    assert proxy().principal("10.0.0.5", "  alice \t", None) == Principal(
        "alice", Role.LOCK, "proxy"
    )
    longest = "a" * MAX_NAME_LENGTH
    found = proxy().principal("10.0.0.5", longest, None)
    assert found is not None
    assert found.name == longest


def test_admins_by_user_name_and_by_group() -> None:
    """A user named in admin_users, or in one of admin_groups, is an admin; others are not."""
    policy = proxy()
    assert policy.principal("10.0.0.5", "root", None) == Principal("root", Role.ADMIN, "proxy")
    by_group = policy.principal("10.0.0.5", "alice", "dev, lab-admins ,ops")
    assert by_group == Principal("alice", Role.ADMIN, "proxy")
    for groups in (None, "", "dev,ops", "lab-admins-not", "lab admins", ",,"):
        assert policy.principal("10.0.0.5", "alice", groups) == Principal(
            "alice", Role.LOCK, "proxy"
        ), groups


def test_the_user_role_is_the_operator_s() -> None:
    """A vouched-for user who is not an admin gets `user_role`."""
    found = proxy(user_role=Role.READ).principal("10.0.0.5", "alice", None)
    assert found == Principal("alice", Role.READ, "proxy")


def test_a_proxy_is_disabled_without_header_or_proxies() -> None:
    """No header name, or no trusted proxy: disabled, and nobody is vouched for."""
    for policy in (proxy(header=None), proxy(header=""), proxy(proxies=()), ProxyPolicy()):
        assert not policy.enabled
        assert policy.principal("10.0.0.5", "root", "lab-admins") is None
    assert proxy().enabled


# --- networks ----------------------------------------------------------------------------


def test_parse_networks_reads_addresses_and_cidrs() -> None:
    """Addresses become /32 or /128 networks; host bits of a CIDR are dropped; blanks too."""
    assert parse_networks([" 10.0.0.5 ", "10.1.2.3/8", "::1", "2001:db8::1/32"]) == (
        ipaddress.ip_network("10.0.0.5/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert parse_networks([]) == ()


@pytest.mark.parametrize(
    "entry", ["", "localhost", "10.0.0.0/33", "10.0.0.256", "::1/129", "10.0.0.0/8,10.1.0.0/16"]
)
def test_parse_networks_refuses_what_is_no_network(entry: str) -> None:
    """A name, an empty entry, a prefix too long or a list in one entry is a ValueError."""
    with pytest.raises(ValueError, match=r"does not appear to be|not a valid|netmask"):
        parse_networks(["10.0.0.1", entry])


def test_address_in_nothing_or_no_address() -> None:
    """An unknown peer, or no networks at all, is never inside."""
    anywhere = parse_networks(["0.0.0.0/0", "::/0"])
    assert not address_in(None, anywhere)
    assert not address_in("", anywhere)
    assert not address_in("10.0.0.1", ())
    assert address_in("10.0.0.1", anywhere)


def _addresses(version: int) -> st.SearchStrategy[int]:
    return st.integers(0, 2 ** (32 if version == 4 else 128) - 1)


@st.composite
def networks(draw: st.DrawFn) -> tuple[int, int, int]:
    """(version, address as an integer, prefix length), for a network written as text."""
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    return version, draw(_addresses(version)), draw(st.integers(0, bits))


def _text(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


@given(
    st.lists(networks(), max_size=4),
    st.sampled_from([4, 6]).flatmap(lambda v: st.tuples(st.just(v), _addresses(v))),
)
def test_address_in_agrees_with_prefix_arithmetic(
    entries: list[tuple[int, int, int]], peer: tuple[int, int]
) -> None:
    """For random CIDRs written as text and a random peer, `address_in` is true exactly when
    some network of the peer's version shares its first `prefix` bits."""
    parsed: tuple[Network, ...] = parse_networks(
        f"{_text(version, value)}/{prefix}" for version, value, prefix in entries
    )
    version, value = peer
    bits = 32 if version == 4 else 128
    expected = any(
        v == version and value >> (bits - prefix) == net >> (bits - prefix)
        for v, net, prefix in entries
    )
    assert address_in(_text(version, value), parsed) is expected
    assert address_in(_text(version, value), parsed) is any(
        ipaddress.ip_address(_text(version, value)) in network for network in parsed
    )


@given(networks())
def test_every_network_contains_its_own_address(entry: tuple[int, int, int]) -> None:
    """The address a CIDR was written with is inside it, whatever its host bits."""
    version, value, prefix = entry
    text = _text(version, value)
    assert address_in(text, parse_networks([f"{text}/{prefix}"]))


# --- names and secrets -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "7", "jenkins-lab-1", "alice@example.com", "ci.job_3+x", "A" * MAX_NAME_LENGTH]
)
def test_check_key_name_accepts_names(name: str) -> None:
    """Letters, digits and . _ @ + -, starting with a letter or digit, up to 100: itself."""
    assert check_key_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "-x", ".x", "_x", "@x", "a b", "a/b", "a\n", "é", "a:b", "a" * (MAX_NAME_LENGTH + 1)],
)
def test_check_key_name_refuses_others(name: str) -> None:
    """Empty, leading punctuation, blanks, other characters, or too long: InvalidRequestError."""
    with pytest.raises(InvalidRequestError, match="a key name is 1 to 100"):
        check_key_name(name)


def test_secret_hash_is_stable_sha256_hex() -> None:
    """The stored form is the SHA-256 of the secret, 64 lowercase hex digits, every time."""
    secret = "rbk_" + "x" * 43
    digest = secret_hash(secret)
    assert digest == hashlib.sha256(secret.encode()).hexdigest()
    assert digest == secret_hash(secret)
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")
    assert secret_hash(secret + "y") != digest


@given(st.text(max_size=50))
def test_secret_hash_takes_any_text(secret: str) -> None:
    """Any text, lone surrogates included, hashes to 64 hex digits (no encoding error)."""
    digest = secret_hash(secret)
    assert len(digest) == 64
    assert int(digest, 16) >= 0


def test_csrf_token_is_per_session_and_not_the_session_s_hash() -> None:
    """Each session has its own stable CSRF token, which reveals neither the secret nor the
    stored hash."""
    first, second = csrf_token("session-one"), csrf_token("session-two")
    assert first != second
    assert csrf_token("session-one") == first
    assert len(first) == 64
    assert first not in (secret_hash("session-one"), "session-one")


def test_an_ipv4_peer_seen_through_a_dual_stack_socket_is_still_that_peer() -> None:
    """`::ffff:10.0.0.5` is 10.0.0.5: a trusted IPv4 proxy stays trusted on a dual-stack
    socket, and an untrusted one stays untrusted."""
    networks = parse_networks(["10.0.0.0/8"])
    assert address_in("::ffff:10.0.0.5", networks)
    assert not address_in("::ffff:192.168.0.5", networks)
