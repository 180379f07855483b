"""Input items: every file under the month folder, named by its path relative to that folder.

An item's name (its image id in the CSVs) is that path, `/`-separated, with two
reversible escapes so that any name a filesystem allows survives JSON, CSV and
UTF-8: a backslash is written `\\\\`, a byte that is not UTF-8 `\\xNN`. Ordinary
names are unchanged; `decode_name` gives back the exact path.

An item also carries its content identity (size and modification time here, the
blob's ETag for a downloaded month): a finished row is reused only for the same
content. Whatever cannot be read as a file (a symbolic link, a FIFO, a folder
that cannot be listed) is still an item, with the reason it was not scored.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path, PurePath

from scoring.rows import ErrorType

_ESCAPED = re.compile(r"\\(\\|x[0-9a-f]{2})")
# The blob an uploader writes last, at the month's root, to say the month is complete (the convention Spark,
# Hadoop and Data Factory follow). It is never an input item: no row, no error, not counted.
MONTH_MARKER = "_SUCCESS"


def is_input(name: str) -> bool:
    """Whether an item name (relative to the month folder) is an input to score."""
    return name != MONTH_MARKER


class StorageUnavailable(RuntimeError):
    """The blob store holding the items did not answer in time; the message is the one line to show."""


@dataclasses.dataclass(frozen=True)
class InputItem:
    name: str
    identity: str = ""
    failure: tuple[str, str] | None = None  # (error_type, message): the item cannot be scored at all

    @classmethod
    def failed(cls, name: str, error_type: str, message: str) -> InputItem:
        return cls(name, failure=(error_type, message))


def encode_name(relative: str) -> str:
    """The item name of a relative path: backslashes doubled, bytes that are not UTF-8 as `\\xNN`."""
    if "\\" not in relative and not _has_surrogates(relative):
        return relative
    doubled = relative.replace("\\", "\\\\")
    return doubled.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def decode_name(name: str) -> str:
    """The relative path of an item name (with the undecodable bytes as Python's surrogate escapes)."""
    if "\\" not in name:
        return name

    def unescape(match: re.Match) -> str:
        code = match.group(1)
        return "\\" if code == "\\" else chr(0xDC00 + int(code[1:], 16))

    return _ESCAPED.sub(unescape, name)


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def item_path(input_root: str | os.PathLike, name: str) -> Path:
    return Path(input_root, *decode_name(name).split("/"))


class PathOutsideInput(ValueError):
    """A mini-batch path that leads to no item of the input root, by text, by real path or by the month's folder."""


def image_id(path: str | os.PathLike, input_root: str | os.PathLike | None) -> str:
    """The item name of a file the job was handed; a path that cannot be placed under the input root raises
    PathOutsideInput (that file gets no row, which the merge lists as its error)."""
    path = PurePath(path)
    if input_root is None:
        return encode_name(path.name)
    root = PurePath(input_root)
    try:
        return encode_name(path.relative_to(root).as_posix())
    except ValueError:
        pass
    # The service may spell the same folder another way (its own mount point, a symbolic link on the way):
    # what counts is where the path leads, not its text.
    real_path, real_root = PurePath(os.path.realpath(path)), PurePath(os.path.realpath(root))
    try:
        return encode_name(real_path.relative_to(real_root).as_posix())
    except ValueError:
        pass
    # Else a mount the job cannot resolve: the item is what follows the input root's own folder (the month).
    parts = path.parts[:-1]
    if root.name and root.name in parts:
        tail = path.parts[parts.index(root.name) + 1:]
        return encode_name(PurePath(*tail).as_posix())
    raise PathOutsideInput(f"mini-batch item {str(path)!r} is not under the input root {str(input_root)!r}, "
                           f"and no folder of its path is named {root.name!r}; the job's --input_root must be the "
                           "folder its items come from")


def walk_folder(input_root: Path) -> Iterator[InputItem]:
    """Every entry under the folder as an item, depth first; nothing outside it is ever touched.

    Entries come in the filesystem's order, streamed: a folder of a million files is never held in memory
    (the CSVs are sorted by the merge). Symbolic links are not followed (they could lead out of the folder,
    or loop); FIFOs, sockets and devices are not read (a FIFO would block); a sub-folder that cannot be
    listed is one failed item.
    """
    root = Path(input_root)
    pending = [""]
    while pending:
        relative_dir = pending.pop()
        folders = []
        try:
            listing = os.scandir(root / relative_dir if relative_dir else root)
        except OSError as error:
            if not relative_dir:
                raise
            yield InputItem.failed(encode_name(relative_dir), ErrorType.UNREADABLE,
                                   f"folder cannot be listed ({error.strerror}); fix its permissions to score "
                                   "the files in it")
            continue
        with listing:
            for entry in listing:
                relative = f"{relative_dir}/{entry.name}" if relative_dir else entry.name
                if not is_input(relative):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    folders.append(relative)
                else:
                    yield _file_item(entry, encode_name(relative))
        pending.extend(sorted(folders, reverse=True))


def _file_item(entry: os.DirEntry, name: str) -> InputItem:
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError as error:
        return InputItem.failed(name, ErrorType.UNREADABLE, f"cannot stat ({error.strerror})")
    if stat.S_ISLNK(info.st_mode):
        return InputItem.failed(name, ErrorType.UNREADABLE, "symbolic link, not followed (it may point "
                                "outside the month folder); put the file itself in the folder")
    if stat.S_ISREG(info.st_mode):
        # ctime and inode too: `cp -p`, `rsync -a` and `tar` restore size and mtime, never ctime
        return InputItem(name, identity=f"{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}:{info.st_ino}")
    if stat.S_ISDIR(info.st_mode):  # became a folder after it was listed
        return InputItem.failed(name, ErrorType.UNREADABLE, "changed from a file to a folder while the month "
                                "was listed; run the month again")
    return InputItem.failed(name, ErrorType.UNREADABLE, f"not a regular file ({_kind(info.st_mode)}); only files "
                            "are scored")


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "a special file"
