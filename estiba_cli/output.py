"""What the CLI prints: tables that fit the terminal, progress bars, colour on a tty only."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import Any, TextIO


def is_tty(stream: TextIO = sys.stdout) -> bool:
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def colour(text: str, code: str, stream: TextIO = sys.stdout) -> str:
    """ANSI colour only when writing to a terminal (and NO_COLOR is not set)."""
    if not is_tty(stream) or os.environ.get("NO_COLOR"):
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def width() -> int:
    return shutil.get_terminal_size((120, 24)).columns


def table(headers: list[str], rows: list[list[Any]], shrink: tuple[str, ...] = ()) -> str:
    """Columns padded to their widest cell; the ``shrink`` columns are cut (with …) to fit."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    total = sum(widths) + 3 * (len(widths) - 1)
    for name in shrink:
        if total <= width() or name not in headers:
            continue
        i = headers.index(name)
        cut = min(total - width(), widths[i] - max(len(name), 8))
        if cut > 0:
            widths[i] -= cut
            total -= cut

    def fit(text: str, w: int) -> str:
        return text if len(text) <= w else text[: max(w - 1, 0)] + "…"

    lines = ["   ".join(colour(h.ljust(w), "1") for h, w in zip(headers, widths, strict=True))]
    for row in cells:
        lines.append("   ".join(fit(c, w).ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}B"


def ago(ts: float) -> str:
    secs = max(0, time.time() - ts)
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if secs >= size:
            return f"{int(secs // size)} {unit} ago"
    return f"{int(secs)} seconds ago"


class Progress:
    """Docker's JSON progress lines drawn as one bar per layer (plain lines off a tty)."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream
        self.tty = is_tty(stream)
        self.order: list[str] = []
        self.state: dict[str, str] = {}
        self.drawn = 0

    def _bar(self, current: int, total: int) -> str:
        w = max(10, min(40, width() - 60))
        done = int(w * current / total) if total else 0
        return "[" + "=" * max(done - 1, 0) + (">" if done else "") + " " * (w - done) + "]" + \
            f" {human_size(current)}/{human_size(total)}"

    def feed(self, msg: dict) -> None:
        if "error" in msg:
            return
        if "stream" in msg:
            self._flush_bars()
            self.stream.write(msg["stream"])
            self.stream.flush()
            return
        status = msg.get("status", "")
        layer = msg.get("id")
        if not layer:
            self._flush_bars()
            if status:
                self.stream.write(status + "\n")
            return
        detail = msg.get("progressDetail") or {}
        line = f"{layer[:12]}: {status}"
        if detail.get("total"):
            line += " " + self._bar(int(detail.get("current", 0)), int(detail["total"]))
        if not self.tty:
            if status and self.state.get(layer, "").split(" ")[0:2] != line.split(" ")[0:2]:
                self.stream.write(f"{layer[:12]}: {status}\n")
            self.state[layer] = line
            return
        if layer not in self.state:
            self.order.append(layer)
        self.state[layer] = line
        self._redraw()

    def _redraw(self) -> None:
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}A")
        for layer in self.order:
            self.stream.write("\x1b[2K" + self.state[layer][: width() - 1] + "\n")
        self.drawn = len(self.order)
        self.stream.flush()

    def _flush_bars(self) -> None:
        self.order, self.drawn = [], 0
