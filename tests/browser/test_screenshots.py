"""docs/screenshots.py retakes the docs' pictures from a real server and Chromium, and every
picture the README and docs/web.md show exists."""

from __future__ import annotations

import importlib.util
import re
import struct
from pathlib import Path
from types import ModuleType

import pytest

from tests.browser.conftest import CHROMIUM
from tests.conftest import skip_or_fail

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "docs" / "screenshots.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_the_script_photographs_every_view_at_its_size(tmp_path: Path) -> None:
    """Each view as a desktop (1280 px wide) and the resource view on a phone (390 CSS px at
    2x), each a real PNG taller than a header."""
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    assert _script().main(["--out", str(tmp_path)]) == 0
    taken = {path.name: _png_size(path) for path in tmp_path.glob("*.png")}
    assert set(taken) == set(_script().NAMES)
    for name, (width, height) in taken.items():
        assert width == (780 if "phone" in name else 1280), name
        assert height > 300, name


def test_every_picture_the_docs_show_is_committed() -> None:
    """The README's and docs/web.md's images point at files that exist (and are PNGs)."""
    shown = []
    for doc in (ROOT / "README.md", ROOT / "docs" / "web.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", doc.read_text()):
            shown.append((doc.parent / target).resolve())
    assert shown, "no picture is shown"
    for picture in shown:
        assert picture.exists(), f"{picture} is missing: run docs/screenshots.py"
        _png_size(picture)
