"""How much disk a directory tree holds: the figures of ``docker system df`` and ``ps -s``.

A container's own size is its overlay *upper* directory (what it wrote, copied up
or deleted — a whiteout is a 0-size character device), a volume's is its data
directory. Docker sums the apparent sizes of what is in the tree, counting a
file with several hard links once; so does ``tree_size``. It never follows a
symbolic link or leaves the tree's filesystem, so a hostile tree cannot make it
walk the host.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def tree_size(root: str | Path) -> int:
    """Apparent bytes under ``root`` (0 when it is missing), each inode counted once."""
    try:
        top = os.lstat(root)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(top.st_mode):
        return top.st_size
    seen: set[int] = set()
    total = 0
    pending = [os.fspath(root)]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue  # removed or changed while we walked: count what is there
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if st.st_dev == top.st_dev:
                        pending.append(entry.path)
                    continue
                if st.st_nlink > 1:
                    if st.st_ino in seen:
                        continue
                    seen.add(st.st_ino)
                total += st.st_size
    return total
