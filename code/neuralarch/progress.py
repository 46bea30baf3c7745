"""The switch for progress bars: shown while you work, hidden inside the built book's pages.

A foundation module without plotting dependencies, so that the training loop and the course
helpers can ask whether to draw a bar without importing matplotlib. ``setup_page`` hides the bars.
"""

from __future__ import annotations

import os

QUIET_ENV = "NEURALARCH_QUIET"


def hide_progress_bars() -> None:
    """Hide the package's progress bars in this process and in the processes it starts."""
    os.environ[QUIET_ENV] = "1"  # an environment variable, so DataLoader workers inherit it


def progress_disabled() -> bool:
    """True when progress bars should be hidden (inside built book pages)."""
    return os.environ.get(QUIET_ENV, "") == "1"
