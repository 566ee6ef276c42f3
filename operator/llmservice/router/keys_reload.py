"""Rotating API keys without a restart: notice a changed keys file and swap the keys in.

A kubelet updates a mounted Secret atomically: it writes the new files into a fresh
timestamped directory and swaps the volume's ``..data`` symlink to it; the file the router
was given (``keys.yaml``) is itself a symlink through ``..data``. So the path stays the same
while the file it resolves to is a new one. `ApiKeysFile.check` stats the path (following
the symlinks) and compares the file's identity (device, inode, size, modification and
change times) with the one last seen (an inode number can be reused once the old file is
gone; the times tell the two apart); only when it differs is the file read and parsed. A stat every
`POLL_INTERVAL` seconds costs microseconds and notices a change within that interval, on
any file system and however the file was replaced (symlink swap, rename, edit in place),
where an inotify watch would have to follow the ``..data`` swap in the directory and needs
a platform-specific dependency.

A new file that parses replaces the keys in one assignment (`on_change`), between two
requests on the event loop: a request already authenticated keeps its client, the next one
sees the new keys, none is dropped. A new file that does not parse is rejected: the last
good keys stay in use, the reason is logged (the parser's message, which never carries a
key), `reload_failures` counts it and `valid` is False until the file on disk is one the
router uses again (a later good file, or the old content restored).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from llmservice.router.auth import ApiKeys, parse_api_keys

__all__ = ["POLL_INTERVAL", "ApiKeysFile"]

POLL_INTERVAL = 2.0
log = logging.getLogger("llmservice.router.keys")

_Identity = tuple[int, int, int, int, int]


def _identity(path: str) -> _Identity | None:
    """What changes when the file behind `path` is replaced or rewritten; None if absent."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


class ApiKeysFile:
    """The keys file at `path`, the keys in use, and whether the file on disk is valid."""

    def __init__(
        self,
        path: str,
        keys: ApiKeys,
        content: bytes,
        seen: _Identity | None,
        interval: float = POLL_INTERVAL,
    ) -> None:
        self.path = path
        self.interval = interval
        self.keys = keys
        self.valid = True
        self.reload_failures = 0
        self._in_use = hashlib.sha256(content).digest()
        self._seen = seen

    @classmethod
    def load(cls, path: str, interval: float = POLL_INTERVAL) -> ApiKeysFile:
        """The file's keys now; ValueError when it cannot be read or parsed (fail closed)."""
        seen = _identity(path)  # before reading: a change in between is noticed next check
        try:
            content = Path(path).read_bytes()
        except OSError as error:
            raise ValueError(f"cannot read API keys file {path}: {error.strerror}") from None
        keys = parse_api_keys(content, f"API keys file {path}")
        return cls(path, keys, content, seen, interval)

    def check(self) -> bool:
        """Reload if the file changed; True when the keys in use were replaced."""
        seen = _identity(self.path)
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            content = Path(self.path).read_bytes()
        except OSError as error:
            self._reject(f"cannot read API keys file {self.path}: {error.strerror}")
            return False
        digest = hashlib.sha256(content).digest()
        if digest == self._in_use:
            # Same content in a new file (a Secret rewritten unchanged, or a bad change undone).
            if not self.valid:
                log.info("API keys file %s is back to the keys in use", self.path)
            self.valid = True
            return False
        try:
            keys = parse_api_keys(content, f"API keys file {self.path}")
        except ValueError as error:
            self._reject(str(error))
            return False
        self.keys, self._in_use, self.valid = keys, digest, True
        log.info("API keys reloaded from %s: %d keys in use", self.path, len(keys))
        return True

    def _reject(self, reason: str) -> None:
        self.valid = False
        self.reload_failures += 1
        log.error(
            "Rejected the new API keys file, keeping the last good keys (%d keys): %s",
            len(self.keys), reason,
        )  # fmt: skip

    async def watch(self, on_change: Callable[[ApiKeys], None]) -> None:
        """Check every `interval` seconds and hand new keys to `on_change`, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                # Synchronous on purpose: a stat, and rarely a read of a small file.
                changed = self.check()
            except Exception:  # the watch must outlive any surprise; the next check retries
                log.exception("Checking the API keys file %s failed", self.path)
                continue
            if changed:
                on_change(self.keys)
