"""``workspace_list`` / ``workspace_read`` / ``workspace_write``, confined to one folder.

A path is relative to the agent's workspace. Refused: absolute paths (``/x``, ``~``, ``C:``),
any ``..`` component, and anything whose real path (symlinks resolved) lies outside the
workspace. The checked real path is then opened component by component with ``O_NOFOLLOW``
relative to the workspace's directory descriptor, so a symlink swapped in after the check cannot
redirect the open. Reads are capped at ``READ_MAX`` bytes (the rest is cut, and the model is told),
writes over ``WRITE_MAX`` bytes are refused, listings stop at ``LIST_MAX`` entries.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import PurePosixPath
from typing import Any

from .base import ToolError, string_arg

READ_MAX = 256 * 1024
WRITE_MAX = 1024 * 1024
LIST_MAX = 500
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DRIVE = re.compile(r"^[A-Za-z]:")

_PATH = {"type": "string", "description": "path relative to the workspace folder"}
LIST_DESCRIPTION = "List the files and folders of a folder in the agent's workspace."
LIST_PARAMETERS = {
    "type": "object",
    "properties": {"path": _PATH | {"description": "folder relative to the workspace; default ."}},
    "additionalProperties": False,
}
READ_DESCRIPTION = (
    f"Read a UTF-8 text file of the agent's workspace (first {READ_MAX // 1024} KiB)."
)
READ_PARAMETERS = {
    "type": "object",
    "properties": {"path": _PATH},
    "required": ["path"],
    "additionalProperties": False,
}
WRITE_DESCRIPTION = (
    f"Write (or append to) a UTF-8 text file in the agent's workspace, creating folders as "
    f"needed; at most {WRITE_MAX // 1024} KiB."
)
WRITE_PARAMETERS = {
    "type": "object",
    "properties": {
        "path": _PATH,
        "content": {"type": "string"},
        "append": {"type": "boolean", "description": "append instead of replacing"},
    },
    "required": ["path", "content"],
    "additionalProperties": False,
}


def relative_parts(path: str) -> tuple[str, ...]:
    """Split a model-supplied path; refuse absolute paths and ``..`` before touching the disk."""
    if "\x00" in path:
        raise ToolError("invalid path")
    if path.startswith(("/", "\\", "~")) or _DRIVE.match(path):
        raise ToolError("absolute paths are refused; use a path relative to the workspace")
    parts = PurePosixPath(path).parts
    if ".." in parts:
        raise ToolError("'..' is refused; paths must stay inside the workspace")
    return parts


def resolve(root: str, path: str) -> tuple[str, tuple[str, ...]]:
    """Return ``(workspace real path, components of the target's real path below it)``."""
    parts = relative_parts(path)
    root_real = os.path.realpath(root)
    target = os.path.realpath(os.path.join(root_real, *parts))
    if target == root_real:
        return root_real, ()
    if not target.startswith(root_real + os.sep):
        raise ToolError("the path leads outside the workspace (through a symlink); refused")
    return root_real, PurePosixPath(os.path.relpath(target, root_real)).parts


def _open_dir(root_real: str, parts: tuple[str, ...], *, create: bool = False) -> int:
    fd = os.open(root_real, _DIR_FLAGS)
    try:
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise ToolError("no such folder in the workspace") from None
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                raise ToolError("not a folder inside the workspace") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def list_files(root: str, args: dict[str, Any]) -> str:
    """Return the folder's entries as JSON: ``[{"name", "type", "size"?}]``."""
    path = string_arg(args, "path", default=".") or "."
    if not os.path.isdir(root):
        return "[]"
    root_real, parts = resolve(root, path)
    fd = _open_dir(root_real, parts)
    try:
        entries = []
        with os.scandir(fd) as it:
            for entry in it:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    item: dict[str, Any] = {"name": entry.name, "type": "symlink"}
                elif stat.S_ISDIR(info.st_mode):
                    item = {"name": entry.name, "type": "dir"}
                elif stat.S_ISREG(info.st_mode):
                    item = {"name": entry.name, "type": "file", "size": info.st_size}
                else:
                    item = {"name": entry.name, "type": "other"}
                entries.append(item)
    finally:
        os.close(fd)
    entries.sort(key=lambda e: e["name"])
    if len(entries) > LIST_MAX:
        entries = entries[:LIST_MAX] + [{"name": "...", "type": "truncated"}]
    return json.dumps(entries, ensure_ascii=False)


def read_file(root: str, args: dict[str, Any]) -> str:
    """Return the file's text (the first ``READ_MAX`` bytes)."""
    root_real, parts = resolve(root, string_arg(args, "path"))
    if not parts:
        raise ToolError("the path is a folder; use workspace_list")
    dir_fd = _open_dir(root_real, parts[:-1])
    try:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            raise ToolError("no such file in the workspace") from None
    finally:
        os.close(dir_fd)
    # Checked on the descriptor, before fdopen: fdopen raises a bare OSError for a folder.
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ToolError(
            "the path is a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        )
    with os.fdopen(fd, "rb") as f:
        data = f.read(READ_MAX)
    if b"\x00" in data:
        raise ToolError("binary file; only text files can be read")
    text = data.decode("utf-8", errors="replace")
    if info.st_size > READ_MAX:
        text += f"\n[truncated: the file has {info.st_size} bytes; the first {READ_MAX} are shown]"
    return text


def write_file(root: str, args: dict[str, Any]) -> str:
    """Write the content; refuse anything over ``WRITE_MAX`` bytes."""
    path = string_arg(args, "path")
    content = string_arg(args, "content")
    append = args.get("append", False)
    if not isinstance(append, bool):
        raise ToolError("argument 'append' must be a boolean")
    data = content.encode("utf-8")
    if len(data) > WRITE_MAX:
        raise ToolError(f"content too large: {len(data)} bytes, at most {WRITE_MAX} allowed")
    relative_parts(path)  # refuse before creating the workspace folder
    os.makedirs(root, exist_ok=True)
    root_real, parts = resolve(root, path)
    if not parts:
        raise ToolError("the path is a folder")
    dir_fd = _open_dir(root_real, parts[:-1], create=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    flags |= os.O_APPEND if append else os.O_TRUNC
    try:
        try:
            fd = os.open(parts[-1], flags, 0o644, dir_fd=dir_fd)
        except IsADirectoryError:
            raise ToolError("the path is a folder") from None
        except OSError:
            raise ToolError("cannot write that path") from None
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "wb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ToolError("not a regular file")
        f.write(data)
    return f"wrote {len(data)} bytes to {'/'.join(parts)}"
