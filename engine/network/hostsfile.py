"""Name resolution between containers: ``/etc/hosts`` and ``/etc/resolv.conf`` files.

Docker answers container names with a DNS server embedded in the daemon. estiba
writes each container's ``/etc/hosts`` instead: it lists the container itself
and, for every *user-defined* network it is on, every other container there by
name and alias (the default ``bridge`` network has no name resolution, as in
Docker). The file is rewritten whenever a container joins or leaves one of its
networks. Libc reads ``/etc/hosts`` on each lookup, so no process is needed and
nothing caches stale answers.

The file is bind-mounted into the container, and a bind mount pins the inode,
so it is rewritten *in place* (truncate and write), never replaced by rename,
or the container would keep seeing the old one.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def render_hosts(
    own: Iterable[tuple[str, list[str]]], peers: Iterable[tuple[str, list[str]]]
) -> str:
    """``own``: (ip, names) of the container itself; ``peers``: (ip, names) of the others."""
    lines = [HEADER]
    for ip, names in list(own) + list(peers):
        unique = list(dict.fromkeys(n for n in names if n))
        if ip and unique:
            lines.append(f"{ip}\t{' '.join(unique)}\n")
    return "".join(lines)


def write_in_place(path: Path, content: str) -> None:
    """Rewrite a possibly bind-mounted file without changing its inode."""
    data = content.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        # Write, then cut what is left of the old text: a lookup in the container at
        # this moment never finds the file empty (truncating first would let one fail).
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], done)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def resolv_conf(host_file: Path = Path("/etc/resolv.conf"), keep_loopback: bool = False) -> str:
    """The host's resolver settings, minus loopback name servers a container cannot reach.

    (systemd-resolved's 127.0.0.53 exists only in the host's network namespace.)
    """
    try:
        text = host_file.read_text()
    except OSError:
        text = ""
    out = []
    for line in text.splitlines():
        words = line.split()
        if not keep_loopback and len(words) >= 2 and words[0] == "nameserver":
            try:
                if ipaddress.ip_address(words[1].split("%")[0]).is_loopback:
                    continue
            except ValueError:
                continue
        out.append(line)
    return "\n".join(out) + ("\n" if out else "")
