"""Named points in a run where a test may inject a fault. In opsctl itself every one does nothing.

Tests pass their own Checkpoints (a subclass) to the command line through Click's `obj`; no
environment variable or file can switch a fault on in the shipped program.
"""

from __future__ import annotations

from opsctl.sources import Source


class Checkpoints:
    """The points; each method is called as the run passes it."""

    def reached(self, step: str) -> None:
        """A journaled step of a key rotation: "stage", "add:<target>", "switch", ... ("<step>+" once it is done);
        "backed-up": every dump of a backup is in its primary, the replicas' copies not yet finished;
        "fleet-document-read": fleet status has read one more host's document (on a reading thread)."""

    def restored(self, source: Source, staging: str) -> None:
        """A snapshot was restored into `staging` and is about to be compared with its manifest."""
