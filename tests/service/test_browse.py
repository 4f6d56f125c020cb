"""LockService.browse on SQLite and PostgreSQL: the page's filters, sort and paging in SQL."""

from __future__ import annotations

import pytest

from rentabot.domain.model import Selection
from rentabot.service.acquiring import LeaseTerms, Queued
from rentabot.service.leases import LeaseService
from rentabot.service.locks import LockService
from rentabot.storage.database import Database
from tests.support import key_principal

pytestmark = pytest.mark.anyio


async def test_browse_filters_by_holder_text_tags_and_sorts_and_pages(
    database: Database,
) -> None:
    """Holder matches owner or principal; text is a case-blind substring with `%` and `_`
    literal; tags all match; a sort by name pages without overlap."""
    leases = LeaseService(database)
    service = LockService(database, leases)
    everything, total, _ = await service.browse(limit=1000)
    assert total == len(everything) > 3
    ada = key_principal("ada")
    await leases.acquire(Selection(resource_ids=(2,)), LeaseTerms(ttl=60, owner="ci/job/9"), ada)
    assert [r.id for r in (await service.browse(holder="ada"))[0]] == [2]
    assert [r.id for r in (await service.browse(holder="ci/job/9"))[0]] == [2]
    assert (await service.browse(holder="bob"))[1] == 0
    assert [r.id for r in (await service.browse(state="locked"))[0]] == [2]

    coffee = (await service.browse(text="COFFEE"))[0]
    assert coffee
    assert all("coffee" in (r.name + (r.description or "")).lower() for r in coffee)
    assert (await service.browse(text="%"))[1] == 0
    assert (await service.browse(text="_"))[1] == sum("_" in r.name for r in everything)

    tagged = everything[0].tags
    if tagged:
        found, count, _ = await service.browse(tags=tagged)
        assert all(set(tagged) <= set(r.tags) for r in found)
        assert count >= 1

    first = (await service.browse(sort="name", limit=2)).resources
    second = (await service.browse(sort="name", offset=2, limit=2)).resources
    names = sorted(r.name for r in everything)
    assert [r.name for r in first + second] == names[:4]


async def test_browse_counts_the_waiting_requests_that_could_take_each_resource(
    database: Database,
) -> None:
    """A held resource counts the ticket that names it and the one whose tags it carries; a
    resource neither could take counts none."""
    leases = LeaseService(database)
    service = LockService(database, leases)
    everything = (await service.browse(limit=1000)).resources
    target = next(r for r in everything if r.tags)
    other = next(r for r in everything if r.id != target.id and target.tags[0] not in r.tags)
    ada, bob, eve = key_principal("ada"), key_principal("bob"), key_principal("eve")
    await leases.acquire(Selection(resource_ids=(target.id,)), LeaseTerms(ttl=60), ada)
    by_id = await leases.request(Selection(resource_ids=(target.id,)), LeaseTerms(wait=60), bob)
    by_tag = await leases.request(
        Selection(tags=(target.tags[0],), count=sum(target.tags[0] in r.tags for r in everything)),
        LeaseTerms(wait=60),
        eve,
    )
    assert isinstance(by_id, Queued)
    assert isinstance(by_tag, Queued)
    waiting = (await service.browse(limit=1000)).waiting
    assert waiting[target.id] == 2
    assert waiting[other.id] == 0
