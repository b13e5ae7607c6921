"""Who may read the data directory: its owner only, or also one configured group.

Samples are personal (photos, texts, vectors of a person), so by default the data directory
is 0700 and every file in it 0600, whatever umask the daemon was started under (systemd's
default is 0022, a shell's may be 0000). With ``group`` set (a name or gid), members of that
group may read it (the directory 2750, files 0640): another program of theirs can then load
the current version without the daemon.

How: a process umask set once, at the very start of ``serve`` (before any thread or worker
exists), rather than a mode on each ``open``. The daemon does not make all its own files:
SQLite makes the database and its ``-wal``/``-shm``, safetensors and ``shutil`` write
versions, checkpoints and staging, logging may write a file; a umask covers every one of
them, and the spawned update workers inherit it. What was made by an older release (0755,
0644) is tightened once at start-up by :func:`tighten`. The lock file, made first, also gets
its mode explicitly (``daemon/lock.py``).

The inbox is not data: whoever drops files must be able to write into it, so an existing
inbox keeps its mode; one the daemon makes is 0700, or 2770 for the group.
"""

from __future__ import annotations

import grp
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from tailord.daemon.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Modes:
    """The modes of the data directory's folders and files, and the umask that makes them."""

    directory: int
    file: int
    umask: int
    inbox: int  # a new inbox folder (and its .rejected/)
    gid: int | None = None

    def describe(self) -> str:
        return f"folders {self.directory & 0o777:o}, files {self.file:o}"


PRIVATE = Modes(directory=0o700, file=0o600, umask=0o077, inbox=0o700)


def modes_for(group: str) -> Modes:
    """The owner-only modes, or those of ``group`` (a name or a gid) when one is given."""
    if not group:
        return PRIVATE
    try:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(
            f"group = {group!r}: there is no such group; create it (groupadd) or name another"
        ) from None
    # setgid folders: files made in them belong to the group, whoever's group the daemon runs as.
    return Modes(directory=0o2750, file=0o640, umask=0o027, inbox=0o2770, gid=gid)


def apply_umask(modes: Modes) -> int:
    """Set the process umask; returns the one it replaces (restored at shutdown)."""
    return os.umask(modes.umask)


def make_private_dir(path: Path, modes: Modes) -> None:
    """Create ``path`` (and its missing parents, with the default umask's modes) as a data
    folder, or bring an existing one to the mode."""
    path.mkdir(parents=True, exist_ok=True)
    _set(path, modes.directory, modes.gid)


def make_inbox(path: Path, modes: Modes) -> None:
    """Create the inbox if missing; an existing inbox keeps the mode its owner gave it."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True)
    _set(path, modes.inbox, modes.gid)


def tighten(data_dir: Path, modes: Modes, skip: tuple[Path, ...] = ()) -> int:
    """Give every folder and file under ``data_dir`` the mode ``modes`` says (symlinks are
    not followed; ``skip`` subtrees, the inbox and the socket, are left alone); returns how
    many changed."""
    changed = 0
    skipped = {str(p) for p in skip}
    for root, dirs, files in os.walk(data_dir):
        # os.walk lists a symlink to a folder (``current``) among the folders: not followed.
        dirs[:] = [
            d
            for d in dirs
            if os.path.join(root, d) not in skipped and not os.path.islink(os.path.join(root, d))
        ]
        for name in dirs:
            changed += _set(Path(root, name), modes.directory, modes.gid)
        for name in files:
            path = Path(root, name)
            if str(path) in skipped:
                continue
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                changed += _set(path, modes.file, modes.gid)
    if changed:
        logger.info("made %d entries under %s private (%s)", changed, data_dir, modes.describe())
    return changed


def _set(path: Path, mode: int, gid: int | None) -> int:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return 0  # a link's own mode means nothing; what it points at is handled as itself
    changed = 0
    try:
        if gid is not None and info.st_gid != gid:
            os.chown(path, -1, gid)
            changed = 1
        if stat.S_IMODE(info.st_mode) != mode:
            os.chmod(path, mode)  # after chown, which clears the setgid bit on some systems
            changed = 1
    except PermissionError as exc:
        # Not ours (made by root, say): serving goes on, but the owner hears how to fix it.
        logger.warning(
            "cannot give %s the mode %o (%s); make it owned by the user tailord runs as",
            path,
            mode,
            exc.strerror,
        )
    return changed
