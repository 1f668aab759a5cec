"""Rendering a report page in Debian's headless Chromium, as an auditor's browser would."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


@dataclass(frozen=True)
class Rendered:
    size: tuple[int, int]
    colours: int | None
    """Distinct colours in the screenshot; None when there are too many to count (certainly not blank)."""
    dom: str

    @property
    def blank(self) -> bool:
        return self.colours is not None and self.colours <= 10


def render(page: Path, scratch: Path, window: tuple[int, int] = (1200, 1600)) -> Rendered:
    """A screenshot's size and colour count, and the DOM after Chromium has laid the page out."""
    require(shutil.which("chromium") is not None, "chromium (Debian package chromium)")
    from PIL import Image

    shot = scratch / "report.png"
    base = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={scratch / 'profile'}"]
    subprocess.run([*base, f"--screenshot={shot}", f"--window-size={window[0]},{window[1]}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        size = image.size
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    return Rendered(size=size, colours=None if colours is None else len(colours), dom=dom.stdout)
