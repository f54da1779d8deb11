"""``docker top``: a container's processes, each with its host and container PID.

A container's processes are ordinary host processes. Two facts find them and
name them twice:

* they all sit in the container's cgroup (``cgroup.procs``), which is how
  Docker finds them too — exec'd processes join it, and so do processes in a
  nested PID namespace;
* the kernel numbers each process in every PID namespace it belongs to, listed
  outermost first on the ``NSpid:`` line of ``/proc/<pid>/status``: the
  container's init reads ``NSpid: 48211 1`` (host PID 48211, PID 1 inside).

Docker runs the host's ``ps`` with the caller's arguments and keeps the rows of
those PIDs. estiba reads ``/proc`` itself (no ``ps`` needed on the host) and
renders the same columns for the formats clients use: the default ``-ef``,
BSD ``aux``, ``-e`` and ``-o field,...`` — plus ``cpid``, the PID inside the
container, which ``ps`` cannot show. Names come from the host's user database,
as with ``docker top``. The answer has Docker's shape:
``{"Titles": [...], "Processes": [[...], ...]}`` with every cell a string.
"""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import Conflict, EngineError, InvalidArgument, RuntimeFailure
from engine.runtime.cgroups import Cgroup

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcessInfo:
    """One process as ``/proc`` describes it, with both PID numbers."""

    host_pid: int
    container_pid: int  # the innermost NSpid (the container's own number)
    ppid: int  # host numbering, like ps on the host
    uid: int  # effective uid
    state: str  # R S D Z T ...
    comm: str
    args: list[str]  # empty for kernel threads and zombies
    tty_nr: int
    session: int
    pgrp: int
    tpgid: int
    nice: int
    threads: int
    cpu_ticks: int  # utime + stime
    start_ticks: int  # since boot
    vsize: int  # bytes
    rss: int  # bytes

    @property
    def command(self) -> str:
        """What ps shows as CMD: the argv, or ``[comm]`` when there is none."""
        return " ".join(self.args) if self.args else f"[{self.comm}]"


def read_process(pid: int) -> ProcessInfo | None:
    """``/proc/<pid>/{stat,status,cmdline}`` as one record; None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        with open(f"/proc/{pid}/status") as fh:
            status = dict(line.partition(":")[::2] for line in fh.read().splitlines())
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    f = stat[stat.rindex(")") + 2 :].split()  # f[0] is field 3 (state)
    nspid = (status.get("NSpid") or str(pid)).split()
    uids = (status.get("Uid") or "0 0").split()
    args = [a.decode(errors="replace") for a in cmdline.split(b"\0")[:-1]] if cmdline else []
    return ProcessInfo(
        host_pid=pid,
        container_pid=int(nspid[-1]),
        ppid=int(f[1]),
        uid=int(uids[1]),
        state=f[0],
        comm=comm,
        args=args,
        tty_nr=int(f[4]),
        session=int(f[3]),
        pgrp=int(f[2]),
        tpgid=int(f[5]),
        nice=int(f[16]),
        threads=int(f[17]),
        cpu_ticks=int(f[11]) + int(f[12]),
        start_ticks=int(f[19]),
        vsize=int(f[20]),
        rss=int(f[21]) * PAGE_SIZE,
    )


def container_pids(init_pid: int) -> list[int]:
    """Host PIDs of every process of the container whose init is ``init_pid``.

    The container's cgroup lists them; if it cannot be read (or is a
    hierarchy's root, shared with the host), every process in the init's PID
    namespace is taken instead.
    """
    pids: list[int] = []
    try:
        cg = Cgroup.of_pid(init_pid)
        directory = cg.path("pids") or cg.path("memory")
        # A process left in a hierarchy's root cgroup shares it with the whole host.
        if directory is not None and not os.path.ismount(directory):
            pids = cg.pids()
    except (EngineError, OSError):  # no readable cgroup: use the namespace below
        pass
    if init_pid in pids:
        return pids
    try:
        ns = os.readlink(f"/proc/{init_pid}/ns/pid")
    except FileNotFoundError as exc:
        raise Conflict(f"process {init_pid} is gone: the container is not running") from exc
    except OSError as exc:
        raise RuntimeFailure(f"cannot read the PID namespace of process {init_pid}: {exc}") from exc
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/pid") == ns:
                    found.append(int(name))
            except OSError:
                continue
    return sorted(found)


def processes(init_pid: int) -> list[ProcessInfo]:
    """The container's processes in host-PID order (for ``top`` and the PID lesson)."""
    rows = [p for p in (read_process(pid) for pid in container_pids(init_pid)) if p is not None]
    if not any(p.host_pid == init_pid for p in rows):
        raise Conflict(f"process {init_pid} is gone: the container is not running")
    return sorted(rows, key=lambda p: p.host_pid)


# --- rendering like ps ----------------------------------------------------------


def _boot_time() -> float:
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _uptime() -> float:
    with open("/proc/uptime") as fh:
        return float(fh.read().split()[0])


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def tty_name(tty_nr: int) -> str:
    """The controlling terminal's name from ``tty_nr`` (``pts/0``, ``tty1``, or ``?``)."""
    major = (tty_nr >> 8) & 0xFFF
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if tty_nr == 0:
        return "?"
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    if major == 5 and minor == 1:
        return "console"
    return f"{major}:{minor}"


def _cputime(ticks: int) -> str:
    """``-ef``'s TIME: ``[DD-]HH:MM:SS``."""
    secs = ticks // CLK_TCK
    days, secs = divmod(secs, 86400)
    text = f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
    return f"{days}-{text}" if days else text


def _bsd_time(ticks: int) -> str:
    """``aux``'s TIME: minutes and seconds, ``0:00``."""
    secs = ticks // CLK_TCK
    return f"{secs // 60}:{secs % 60:02d}"


def _etime(seconds: float) -> str:
    secs = int(seconds)
    days, secs = divmod(secs, 86400)
    hours, secs = divmod(secs, 3600)
    text = f"{secs // 60:02d}:{secs % 60:02d}"
    if hours or days:
        text = f"{hours:02d}:{text}"
    return f"{days}-{text}" if days else text


def _stime(started: float, now: float) -> str:
    """ps's start time: ``HH:MM`` today, ``MonDD`` this year, else the year."""
    then, today = time.localtime(started), time.localtime(now)
    if now - started < 86400:
        return time.strftime("%H:%M", then)
    if then.tm_year == today.tm_year:
        return time.strftime("%b%d", then)
    return str(then.tm_year)


def _stat(p: ProcessInfo) -> str:
    flags = p.state
    if p.nice < 0:
        flags += "<"
    elif p.nice > 0:
        flags += "N"
    if p.session == p.host_pid:
        flags += "s"
    if p.threads > 1:
        flags += "l"
    if p.tpgid == p.pgrp and p.tty_nr:
        flags += "+"
    return flags


class _Clock:
    """The times every row is measured against, read once per call."""

    def __init__(self) -> None:
        self.now = time.time()
        self.boot = _boot_time()
        self.uptime = _uptime()
        with open("/proc/meminfo") as fh:
            self.mem_total = int(fh.readline().split()[1]) * 1024

    def started(self, p: ProcessInfo) -> float:
        return self.boot + p.start_ticks / CLK_TCK

    def elapsed(self, p: ProcessInfo) -> float:
        return max(self.uptime - p.start_ticks / CLK_TCK, 0.001)

    def pcpu(self, p: ProcessInfo) -> float:
        return p.cpu_ticks / CLK_TCK / self.elapsed(p) * 100.0


Column = tuple[str, Callable[[ProcessInfo, _Clock], str]]

#: ``-o`` keywords: (title, cell). ``cpid`` is estiba's: the PID inside the container.
FIELDS: dict[str, Column] = {
    "pid": ("PID", lambda p, c: str(p.host_pid)),
    "cpid": ("CPID", lambda p, c: str(p.container_pid)),
    "ppid": ("PPID", lambda p, c: str(p.ppid)),
    "user": ("USER", lambda p, c: _user(p.uid)),
    "uid": ("UID", lambda p, c: str(p.uid)),
    "comm": ("COMMAND", lambda p, c: p.comm),
    "args": ("COMMAND", lambda p, c: p.command),
    "cmd": ("CMD", lambda p, c: p.command),
    "command": ("COMMAND", lambda p, c: p.command),
    "stat": ("STAT", lambda p, c: _stat(p)),
    "s": ("S", lambda p, c: p.state),
    "tty": ("TT", lambda p, c: tty_name(p.tty_nr)),
    "time": ("TIME", lambda p, c: _cputime(p.cpu_ticks)),
    "etime": ("ELAPSED", lambda p, c: _etime(c.elapsed(p))),
    "stime": ("STIME", lambda p, c: _stime(c.started(p), c.now)),
    "vsz": ("VSZ", lambda p, c: str(p.vsize // 1024)),
    "rss": ("RSS", lambda p, c: str(p.rss // 1024)),
    "pcpu": ("%CPU", lambda p, c: f"{c.pcpu(p):.1f}"),
    "pmem": ("%MEM", lambda p, c: f"{p.rss / c.mem_total * 100:.1f}"),
    "nlwp": ("NLWP", lambda p, c: str(p.threads)),
    "ni": ("NI", lambda p, c: str(p.nice)),
    "pgid": ("PGID", lambda p, c: str(p.pgrp)),
    "sid": ("SID", lambda p, c: str(p.session)),
}
FIELDS["%cpu"], FIELDS["%mem"] = FIELDS["pcpu"], FIELDS["pmem"]

FULL: list[Column] = [  # ps -ef
    ("UID", lambda p, c: _user(p.uid)),
    FIELDS["pid"], FIELDS["ppid"],
    ("C", lambda p, c: str(int(c.pcpu(p)))),
    FIELDS["stime"],
    ("TTY", lambda p, c: tty_name(p.tty_nr)),
    FIELDS["time"], FIELDS["cmd"],
]
BSD_USER: list[Column] = [  # ps aux
    FIELDS["user"], FIELDS["pid"], FIELDS["pcpu"], FIELDS["pmem"], FIELDS["vsz"], FIELDS["rss"],
    ("TTY", lambda p, c: tty_name(p.tty_nr)), FIELDS["stat"],
    ("START", lambda p, c: _stime(c.started(p), c.now)),
    ("TIME", lambda p, c: _bsd_time(p.cpu_ticks)), FIELDS["command"],
]
SIMPLE: list[Column] = [  # ps -e
    FIELDS["pid"], ("TTY", lambda p, c: tty_name(p.tty_nr)), FIELDS["time"],
    ("CMD", lambda p, c: p.comm),
]


def columns(ps_args: str) -> list[Column]:
    """The columns ``ps <ps_args>`` would print; InvalidArgument for what we cannot mimic."""
    spec: list[str] = []
    rest: list[str] = []
    take = has_o = False
    for word in ps_args.split():
        if take:
            spec.append(word)
            take = False
        elif word.startswith("-o") and len(word) > 2:
            spec.append(word[2:])
            has_o = True
        elif word.endswith("o") and set(word.lstrip("-")) <= set("eAaxo"):
            take = has_o = True  # -o, o, -eo, axo: the field list follows
        else:
            rest.append(word)
    if has_o:
        names = [n.strip().lower().split("=")[0] for s in spec for n in s.split(",") if n.strip()]
        unknown = [n for n in names if n not in FIELDS]
        if not names or unknown:
            raise InvalidArgument(
                f"ps field(s) {', '.join(unknown) or '(none)'} in {ps_args!r} are not supported;"
                f" known: {', '.join(sorted(FIELDS))}"
            )
        return [FIELDS[n] for n in names]
    bare = "".join(rest).replace("-", "")
    if not bare:
        return FULL  # Docker's default is "-ef"
    if "u" in bare and set(bare) <= set("auxwe"):
        return BSD_USER  # aux, u, -aux, auxww
    if set(bare) <= set("efAa") and "f" in bare:
        return FULL  # -ef, -f, -Af
    if set(bare) <= set("eAax"):
        return SIMPLE  # -e, -A, ax
    raise InvalidArgument(
        f"ps arguments {ps_args!r} are not supported: use -ef (default), aux, -e or -o <fields>"
    )


def top(init_pid: int, ps_args: str = "") -> dict:
    """Docker's top answer for the container whose init has host PID ``init_pid``."""
    cols = columns(ps_args or "")
    rows = processes(init_pid)
    clock = _Clock()
    return {
        "Titles": [title for title, _ in cols],
        "Processes": [[cell(p, clock) for _, cell in cols] for p in rows],
    }
