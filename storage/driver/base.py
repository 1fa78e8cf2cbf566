"""What every storage driver does the same way, written once (Distribution's ``storagedriver/base``).

``BaseDriver`` validates every path against Distribution's ``PathRegexp`` before a backend sees it, so a
path that one backend would refuse is refused by all of them, and gives the generic forms of the optional
methods, built on ``list``/``stat``/``delete``, that a backend overrides where it has a cheaper way.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

from storage.driver.interface import FileInfo, KeyPage, PathNotFound, StorageDriver

# Distribution's storagedriver.PathRegexp: "/" followed by components of [A-Za-z0-9._-], no empty ones
PATH_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")


def check_path(path: str) -> str:
    """``path`` if it is a valid driver path (the root ``/`` included), else ValueError.

    Beyond Distribution's pattern, ``.`` and ``..`` components are refused: they would leave the root
    on a filesystem.
    """
    if path != "/" and (not PATH_RE.match(path) or any(p in (".", "..") for p in path.split("/"))):
        raise ValueError(f"invalid storage path {path!r}")
    return path


class BaseDriver(StorageDriver):
    """The parts of a driver that do not depend on the backend."""

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        for name in await self.list(path):
            child = f"{path.rstrip('/')}/{name}"
            try:
                info = await self.stat(child)
            except PathNotFound:
                continue
            yield info
            if info.is_dir:
                try:
                    async for sub in self.walk(child):
                        yield sub
                except PathNotFound:
                    continue

    async def list_nested(self, path: str, depth: int) -> list[str]:
        names = await self.list(path)
        if depth <= 1:
            return names
        found: list[str] = []
        for name in names:
            try:
                below = await self.list_nested(f"{path.rstrip('/')}/{name}", depth - 1)
            except PathNotFound:
                continue  # a file, or removed meanwhile
            found += [f"{name}/{sub}" for sub in below]
        return found

    async def list_keys(self, path: str, start_after: str = "", delimiter: str = "",
                        limit: int = 1000) -> KeyPage | None:
        return None

    async def put_contents(self, items: Sequence[tuple[str, bytes]]) -> None:
        for path, content in items:  # in order: each object is complete before the next one appears
            await self.put_content(path, content)

    async def delete_file(self, path: str) -> None:
        try:
            await self.delete(path)
        except PathNotFound:
            pass

    async def stat_file(self, path: str) -> FileInfo:
        info = await self.stat(path)
        if info.is_dir:
            raise PathNotFound(path)
        return info

    async def delete_objects(self, groups: Sequence[tuple[str, Sequence[str] | None]]) -> None:
        for directory, files in groups:
            if files is None:
                await self.delete_tree(directory)
            else:
                for path in files:
                    await self.delete_file(path)

    async def delete_tree(self, path: str) -> None:
        """``path`` and everything below it; nothing there is no error."""
        try:
            await self.delete(path)
        except PathNotFound:
            pass

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return None

    def local_path(self, path: str) -> str | None:
        return None
