"""When a pipeline stage counts as done: one rule, a content hash of its inputs and configuration.

Each stage writes into its own folder and records there, in ``.lexray-stage.json``, the key it was run
with and whether it finished. A later run reuses the folder only when the key is the same and the stage
finished; a folder made with another key (a changed recipe, other input data, an upstream stage redone) is
cleared and the stage runs again, so a changed recipe is never silently reused. A stage interrupted with
the same key keeps its folder, so a stage that can resume (CLIP training, the index build) resumes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lexray.config import to_dict

STAMP = ".lexray-stage.json"


def digest_file(path: str | Path) -> str:
    """sha256 (16 hex digits) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def digest_tree(path: str | Path) -> str:
    """sha256 (16 hex digits) of every file under a folder: relative names and contents."""
    root = Path(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.name != STAMP):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + digest_file(f).encode())
    return digest.hexdigest()[:16]


def content_key(*parts: Any) -> str:
    """A stable key (12 hex digits) of configs (dataclasses), upstream keys and digests."""
    blob = json.dumps([to_dict(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class StageRun:
    """One stage's folder and the key of what it is asked to compute."""

    name: str  # the stage, e.g. "clip"
    folder: Path  # where the stage writes everything it makes
    key: str  # content_key of its inputs and configuration

    def _stamp(self) -> dict[str, Any]:
        try:
            stamp = json.loads((self.folder / STAMP).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return stamp if isinstance(stamp, dict) else {}

    def done(self) -> bool:
        """True when the folder holds a finished run of this stage with this key."""
        stamp = self._stamp()
        return stamp.get("key") == self.key and stamp.get("done") is True

    def begin(self) -> bool:
        """Prepare the folder for a run; returns True when it kept an interrupted run of the same key.

        A folder made with another key, or by a lexray that wrote no stamp, is cleared first.
        """
        stamp = self._stamp()
        resumed = stamp.get("key") == self.key and self.folder.is_dir()
        if not resumed and self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write(done=False)
        return resumed

    def finish(self) -> None:
        """Record that the stage finished: later runs with the same key reuse the folder."""
        self._write(done=True)

    def _write(self, done: bool) -> None:
        tmp = self.folder / f"{STAMP}.tmp"
        tmp.write_text(json.dumps({"stage": self.name, "key": self.key, "done": done}), encoding="utf-8")
        tmp.replace(self.folder / STAMP)
