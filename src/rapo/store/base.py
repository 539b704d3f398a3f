"""The store protocol: keyed JSON documents per run, written atomically."""

from __future__ import annotations

import time
from typing import Any, Iterable, Protocol

from rapo.types import RapoError

SCHEMA_VERSION = 1
APP = "rapo-checkpoints"


class Store(Protocol):
    """Checkpoints of runs. `put` replaces a document atomically; documents are JSON-able dicts."""

    def put(self, run_id: str, key: str, doc: dict[str, Any]) -> None: ...

    def put_many(self, run_id: str, docs: dict[str, dict[str, Any]], delete: Iterable[str] = ()) -> None:
        """Write `docs` and remove the `delete` keys, all in one transaction."""
        ...

    def get(self, run_id: str, key: str) -> dict[str, Any] | None: ...

    def get_raw(self, run_id: str, key: str) -> str | None:
        """A document's stored text, unparsed (to quarantine one that does not parse)."""
        ...

    def swap(self, run_id: str, key: str, expected: str | None, new: str | None) -> bool:
        """Atomically replace a document's text if it is still `expected` (None: absent / delete)."""
        ...

    def quarantine(self, run_id: str, key: str, reason: str) -> str:
        """Move a damaged document aside to `quarantine/<key>`, text intact; returns the new key."""
        ...

    def keys(self, run_id: str, prefix: str = "") -> list[str]: ...

    def runs(self) -> list[str]: ...

    def delete_run(self, run_id: str) -> None: ...

    def close(self) -> None: ...


def check_meta(meta: dict[str, str], where: str) -> None:
    """Refuse a store that is not rapo's or was written by a newer rapo: never reuse one silently."""
    if meta.get("app") != APP:
        raise RapoError(f"{where} is not a rapo checkpoint store (app {meta.get('app')!r})")
    try:
        version = int(meta.get("schema_version", "0"))
    except ValueError:
        version = 0
    if version > SCHEMA_VERSION:
        raise RapoError(f"{where} was written by a newer rapo (schema {version}, this one reads "
                        f"{SCHEMA_VERSION}); upgrade rapo to resume it")
    if version < 1:
        raise RapoError(f"{where} has no usable schema version ({version})")


def quarantine_doc(key: str, raw: str | None, reason: str) -> dict[str, Any]:
    """What a quarantined document becomes: its original text, kept byte for byte, and why."""
    return {"quarantined": key, "reason": reason, "at": time.time(), "raw": raw}
