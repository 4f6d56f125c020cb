"""broken_server: the reference server with a planted double-grant bug, to prove the checker.

Every BROKEN_EVERY-th lock request that should answer 403 busy (default 25) grants the busy
resource anyway, with a second valid token.  Both holders can unlock, so the run shows no
errors: only loadgen's overlap checker can notice.  Never use it for anything else.

    python bench/loadgen.py compare --inject-double-grant --workloads contended-id --duration 3

It imports reference_server.py from BENCH_REFERENCE_DIR (loadgen sets it), else ../shared/bench
relative to the repository.
"""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from pathlib import Path
from typing import Any

_default = Path(__file__).resolve().parents[2] / "shared" / "bench"
sys.path.insert(0, os.environ.get("BENCH_REFERENCE_DIR") or str(_default))
ref: Any = importlib.import_module("reference_server")

EVERY = int(os.environ.get("BROKEN_EVERY", "25"))
_extra_tokens: dict[int, set[str]] = {}  # resource id -> tokens granted while it was busy
_refusals = 0

_lock_by_id = ref.lock_by_id
_lock_by_criteria = ref.lock_by_criteria
_unlock = ref.unlock


def _double_grant(rid: int) -> tuple[int, dict[str, Any]]:
    token = str(uuid.uuid4())
    _extra_tokens.setdefault(rid, set()).add(token)
    return 200, {"message": "Resource locked", "lock-token": token, "resource": ref._resource(rid)}


def _should_break() -> bool:
    global _refusals
    _refusals += 1
    return _refusals % EVERY == 0


def lock_by_id(i: int) -> tuple[int, dict[str, Any]]:
    """The reference answer, except that some busy answers become a second grant."""
    status, body = _lock_by_id(i)
    if status == 403 and _should_break():
        return _double_grant(i)
    return status, body


def lock_by_criteria(query: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
    """The reference answer, except that some busy answers grant the first match anyway."""
    status, body = _lock_by_criteria(query)
    if status == 403 and _should_break():
        tags = [v for k, v in query if k == "tag"]
        ids = ref._matching(tags) if tags else ()
        if ids:
            return _double_grant(int(ids[0]))
    return status, body


def unlock(i: int, query: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
    """Accept the extra tokens too, so that the bug shows as overlaps and not as errors."""
    given = next((v for k, v in query if k == "lock-token"), None)
    extra = _extra_tokens.get(i)
    if extra and given in extra:
        extra.discard(given)
        return 200, {"message": "Resource unlocked"}
    answer: tuple[int, dict[str, Any]] = _unlock(i, query)
    return answer


# route() looks these names up in the module at call time, so replacing them is enough.
ref.lock_by_id = lock_by_id
ref.lock_by_criteria = lock_by_criteria
ref.unlock = unlock
app = ref.app
