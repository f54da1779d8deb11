"""The Dockerfile syntax, as the reference frontend (moby/buildkit) parses it.

A Dockerfile is read in two passes, like the reference does:

1. *This module*: lines become a syntax tree of :class:`Node` -- parser
   directives (``# escape=``, ``# syntax=``, ``# check=``, only at the top),
   comments dropped, continuation lines joined with the escape character
   (comment and empty lines inside a continuation skipped), builder flags
   (``--from=x``) split off, each instruction's arguments shaped by its own
   rule (JSON exec form or shell form, key/value pairs, whitespace lists),
   heredoc bodies (``RUN <<EOF``) attached to their instruction.
2. :mod:`engine.build.instructions` turns nodes into typed instructions.

The tree prints in the reference's dump format (``python -m
engine.build.dockerfile --dump FILE``), which is how it is held against the
reference parser's own test corpus. Its quirks are kept on purpose -- JSON
that fails to parse falls back to the shell form, ``ENV a b c`` sets ``a`` to
``"b c"``, an unknown instruction keeps its name and drops its arguments --
because Dockerfiles in the wild depend on them.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from engine.build import gocompat as go
from engine.build.shell import Lex, ShellError
from engine.errors import BuildError

DEFAULT_ESCAPE = "\\"
MAX_LINE = 64 * 1024  # bufio.MaxScanTokenSize
_RE_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_RE_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_RE_HEREDOC = re.compile(r"^([0-9]*)<<(-?)([^<]*)\Z")
_VALID_DIRECTIVES = ("syntax", "escape", "check")
HEREDOC_INSTRUCTIONS = ("add", "copy", "run")


class DockerfileSyntaxError(ValueError):
    """A rule of the grammar broken; :func:`parse` adds file and line."""


@dataclass
class Heredoc:
    """A here-document body: ``<<EOF`` (expand), ``<<"EOF"`` (literal), ``<<-EOF`` (chomp)."""

    name: str
    file_descriptor: int = 0
    expand: bool = True
    chomp: bool = False
    content: str = ""


@dataclass
class Node:
    """One element of the reference's s-expression tree.

    An instruction is a node whose ``value`` is its keyword and whose ``next``
    chain holds its arguments; ``ONBUILD`` carries its instruction as a child.
    """

    value: str = ""
    next: Node | None = None
    children: list[Node] = field(default_factory=list)
    heredocs: list[Heredoc] = field(default_factory=list)
    attributes: dict[str, bool] = field(default_factory=dict)
    original: str = ""
    flags: list[str] = field(default_factory=list)
    start_line: int = 0
    end_line: int = 0
    prev_comment: list[str] = field(default_factory=list)

    def dump(self) -> str:
        """The reference's ``Node.Dump()``."""
        out = self.value.lower()
        if self.flags:
            out += " " + go.quote_list(self.flags)
        for child in self.children:
            out += "(" + child.dump() + ")\n"
        n = self.next
        while n is not None:
            out += " " + (n.dump() if n.children else go.quote(n.value))
            n = n.next
        return go.trim_space(out)

    @property
    def args(self) -> list[str]:
        """The argument values in order (the ``next`` chain)."""
        out, n = [], self.next
        while n is not None:
            out.append(n.value)
            n = n.next
        return out

    @property
    def is_json(self) -> bool:
        return bool(self.attributes.get("json"))


@dataclass
class ParseResult:
    ast: Node
    escape_token: str
    warnings: list[str]
    directives: dict[str, str]

    def dump(self) -> str:
        return self.ast.dump() + "\n"


# --- directives ------------------------------------------------------------

class _Directives:
    """State while reading: the escape token and the directive parser."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.done = False
        self.set_escape(DEFAULT_ESCAPE)

    def set_escape(self, token: str) -> None:
        if token not in ("`", "\\"):
            raise DockerfileSyntaxError(
                f"invalid escape token '{token}' does not match ` or \\")
        self.escape = token
        e = re.escape(token)
        self.continuation = re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")

    def possible_directive(self, line: str) -> bool:
        """Read ``# key=value`` at the top of the file; anything else ends the header."""
        if self.done:
            return False
        if not line.startswith("#"):
            self.done = True
            return False
        m = _RE_DIRECTIVE.match(go.trim_left_space(line[1:]))
        if not m:
            self.done = True
            return False
        key = m.group(1).lower()
        if key not in _VALID_DIRECTIVES:
            self.done = True
            return False
        if key in self.seen:
            raise DockerfileSyntaxError(f"only one {key} parser directive can be used")
        self.seen[key] = m.group(2)
        if key == "escape":
            self.set_escape(m.group(2))
        return True


# --- line parsers (one per instruction kind) --------------------------------

def _parse_words(rest: str, d: _Directives) -> list[str]:
    """Split on spaces, keeping quotes and escapes (stripped later)."""
    rest = re.sub("[\udc80-\udcff]", "\ufffd", rest)  # Go decodes bad bytes as U+FFFD
    words: list[str] = []
    in_spaces, in_word, in_quote = 0, 1, 2
    phase, quote, blank_ok = in_spaces, "", False
    buf: list[str] = []
    pos, n = 0, len(rest)
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == in_spaces:
            if pos == n:
                break
            if go.is_space(ch):
                pos += 1
                continue
            phase = in_word
        if phase in (in_word, in_quote) and pos == n:
            if blank_ok or buf:
                words.append("".join(buf))
            break
        if phase == in_word:
            if go.is_space(ch):
                phase = in_spaces
                if blank_ok or buf:
                    words.append("".join(buf))
                buf, blank_ok = [], False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote, blank_ok, phase = ch, True, in_quote
            if ch == d.escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                buf.append(ch)
                pos += 1
                ch = rest[pos]
            buf.append(ch)
            pos += 1
            continue
        if phase == in_quote:
            if ch == quote:
                phase = in_word
            if ch == d.escape and quote != "'":
                if pos + 1 == n:
                    phase = in_word
                    pos += 1
                    continue
                pos += 1
                buf.append(ch)
                ch = rest[pos]
            buf.append(ch)
        pos += 1
    return words


def _chain(values: list[str]) -> Node | None:
    head: Node | None = None
    prev: Node | None = None
    for v in values:
        node = Node(value=v)
        if prev is None:
            head = node
        else:
            prev.next = node
        prev = node
    return head


def _parse_ignore(rest: str, d: _Directives):
    return Node(), {}


def _parse_sub_command(rest: str, d: _Directives):
    if rest == "":
        return None, {}
    child = _node_from_line(rest, d, [])
    return Node(children=[child]), {}


def _parse_name_val(rest: str, key: str, d: _Directives) -> Node | None:
    words = _parse_words(rest, d)
    if not words:
        return None
    if "=" not in words[0]:  # the old form: KEY name value...
        parts = go.regexp_split(_RE_WHITESPACE, rest, 2)
        if len(parts) < 2:
            raise DockerfileSyntaxError(f"{key} must have two arguments")
        return _chain([parts[0], parts[1], ""])
    values: list[str] = []
    for word in words:
        if "=" not in word:
            raise DockerfileSyntaxError(
                f"Syntax error - can't find = in {go.quote(word)}. "
                "Must be of the form: name=value")
        k, v = word.split("=", 1)
        values += [k, v, "="]
    return _chain(values)


def _parse_env(rest: str, d: _Directives):
    return _parse_name_val(rest, "ENV", d), {}


def _parse_label(rest: str, d: _Directives):
    return _parse_name_val(rest, "LABEL", d), {}


def _parse_name_or_name_val(rest: str, d: _Directives):
    return _chain(_parse_words(rest, d)), {}


def _parse_strings_whitespace_delimited(rest: str, d: _Directives):
    if rest == "":
        return None, {}
    return _chain(go.regexp_split(_RE_WHITESPACE, rest, -1)), {}


def _parse_string(rest: str, d: _Directives):
    if rest == "":
        return None, {}
    return Node(value=rest), {}


class _NotStringArray(DockerfileSyntaxError):
    pass


def _parse_json(rest: str):
    rest = go.trim_left_space(rest)
    if not rest.startswith("["):
        raise go.JSONInvalid("not a JSON array")
    value = go.json_loads(rest)
    if not isinstance(value, list):  # pragma: no cover - '[' guarantees a list
        raise go.JSONInvalid("not a JSON array")
    for item in value:
        if not isinstance(item, str):
            raise _NotStringArray(
                "when using JSON array syntax, arrays must be comprised of strings only")
    return _chain(value), {"json": True}


def _parse_maybe_json(rest: str, d: _Directives):
    if rest == "":
        return None, {}
    try:
        return _parse_json(rest)
    except go.JSONInvalid:
        return Node(value=rest), {}


def _parse_maybe_json_to_list(rest: str, d: _Directives):
    try:
        return _parse_json(rest)
    except go.JSONInvalid:
        return _parse_strings_whitespace_delimited(rest, d)


def _parse_health_config(rest: str, d: _Directives):
    # byte-wise like the reference (a UTF-8 byte 0x85 or 0xA0 counts as space)
    raw = rest.encode("utf-8", "surrogateescape")
    sep = 0
    while sep < len(raw) and not go.is_space(chr(raw[sep])):
        sep += 1
    nxt = sep
    while nxt < len(raw) and go.is_space(chr(raw[nxt])):
        nxt += 1
    if sep == 0:
        return None, {}
    typ = raw[:sep].decode("utf-8", "surrogateescape")
    cmd, attrs = _parse_maybe_json(raw[nxt:].decode("utf-8", "surrogateescape"), d)
    return Node(value=typ, next=cmd), attrs


_DISPATCH = {
    "add": _parse_maybe_json_to_list,
    "arg": _parse_name_or_name_val,
    "cmd": _parse_maybe_json,
    "copy": _parse_maybe_json_to_list,
    "entrypoint": _parse_maybe_json,
    "env": _parse_env,
    "expose": _parse_strings_whitespace_delimited,
    "from": _parse_strings_whitespace_delimited,
    "healthcheck": _parse_health_config,
    "label": _parse_label,
    "maintainer": _parse_string,
    "onbuild": _parse_sub_command,
    "run": _parse_maybe_json,
    "shell": _parse_maybe_json,
    "stopsignal": _parse_string,
    "user": _parse_string,
    "volume": _parse_maybe_json_to_list,
    "workdir": _parse_string,
}


# --- splitting a line into command, flags and rest ---------------------------

def _extract_builder_flags(line: str, d: _Directives) -> tuple[str, list[str]]:
    """Take leading ``--flag[=value]`` words off ``line`` (byte-wise, like Go)."""
    raw = line.encode("utf-8", "surrogateescape")
    esc = ord(d.escape)
    words: list[str] = []
    in_spaces, in_word, in_quote = 0, 1, 2
    phase, quote, blank_ok = in_spaces, 0, False
    word: list[str] = []
    pos, n = 0, len(raw)

    def rest(at: int) -> str:
        return raw[at:].decode("utf-8", "surrogateescape")

    while pos <= n:
        ch = raw[pos] if pos < n else -1
        if phase == in_spaces:
            if pos == n:
                break
            if go.is_space(chr(ch)):
                pos += 1
                continue
            if ch != 0x2D or pos + 1 == n or raw[pos + 1] != 0x2D:
                return rest(pos), words
            phase = in_word
        if phase in (in_word, in_quote) and pos == n:
            text = "".join(word)
            if text != "--" and (blank_ok or word):
                words.append(text)
            break
        if phase == in_word:
            if go.is_space(chr(ch)):
                phase = in_spaces
                text = "".join(word)
                if text == "--":
                    return rest(pos), words
                if blank_ok or word:
                    words.append(text)
                word, blank_ok = [], False
                pos += 1
                continue
            if ch in (0x27, 0x22):
                quote, blank_ok, phase = ch, True, in_quote
                pos += 1
                continue
            if ch == esc:
                if pos + 1 == n:
                    pos += 1
                    continue
                pos += 1
                ch = raw[pos]
            word.append(chr(ch))
            pos += 1
            continue
        if phase == in_quote:
            if ch == quote:
                phase = in_word
                pos += 1
                continue
            if ch == esc:
                if pos + 1 == n:
                    phase = in_word
                    pos += 1
                    continue
                pos += 1
                ch = raw[pos]
            word.append(chr(ch))
        pos += 1
    return "", words


def split_command(line: str, d: _Directives) -> tuple[str, list[str], str]:
    cmdline = go.regexp_split(_RE_WHITESPACE, go.trim_space(line), 2)
    flags: list[str] = []
    args = ""
    if len(cmdline) == 2:
        args, flags = _extract_builder_flags(cmdline[1], d)
    return cmdline[0], flags, go.trim_space(args)


def _node_from_line(line: str, d: _Directives, comments: list[str]) -> Node:
    cmd, flags, args = split_command(line, d)
    fn = _DISPATCH.get(cmd.lower(), _parse_ignore)
    nxt, attrs = fn(args, d)
    return Node(value=cmd, original=line, flags=flags, next=nxt, attributes=attrs,
                prev_comment=list(comments))


# --- heredocs --------------------------------------------------------------

def parse_heredoc(word: str) -> Heredoc | None:
    """``<<EOF``, ``<<-EOF``, ``<<"EOF"``, ``3<<EOF`` -> a Heredoc (or None)."""
    m = _RE_HEREDOC.match(word)
    if not m:
        return None
    fd = int(m.group(1)) if m.group(1) else 0
    chomp = m.group(2) == "-"
    rest = m.group(3)
    if rest == "":
        return None
    try:
        words = Lex("\\", skip_unset_env=True).process_words(rest, {})
        if len(words) != 1:
            return None
        raw = Lex("\\", skip_unset_env=True, raw_quotes=True).process_words(rest, {})
    except ShellError as exc:
        raise DockerfileSyntaxError(str(exc)) from None
    if len(raw) != len(words):
        raise DockerfileSyntaxError(
            f"internal lexing of heredoc produced inconsistent results: {rest}")
    quotes = words[0].count("'") + words[0].count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"')
    return Heredoc(name=words[0], file_descriptor=fd, expand=quotes == raw_quotes, chomp=chomp)


def _heredocs_from_line(line: str) -> list[Heredoc]:
    lex = Lex("\\", raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    try:
        words = lex.process_words(line, {})
    except ShellError:
        words = []
    return [h for h in (parse_heredoc(w) for w in words) if h is not None]


def _can_contain_heredoc(node: Node) -> bool:
    if node.value.lower() == "onbuild" and node.next is not None and node.next.children:
        node = node.next.children[0]
    return node.value.lower() in HEREDOC_INSTRUCTIONS and not node.is_json


def chomp_heredoc_content(src: str) -> str:
    """``<<-EOF`` removes leading tabs from every line of the body."""
    return re.sub(r"(?m)^\t+", "", src)


# --- the reader ------------------------------------------------------------

def _scan_lines(data: bytes) -> list[bytes]:
    """Lines with their ``\\n`` kept (the reference's ``scanLines``)."""
    lines = data.split(b"\n")
    out = [ln + b"\n" for ln in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _trim_newline(s: str) -> str:
    return s.rstrip("\r\n")


def _is_comment(s: str) -> bool:
    return go.trim_left_space(s).startswith("#")


def _instruction_name(line: str) -> str:
    word = go.regexp_split(_RE_WHITESPACE, go.trim_space(line), 2)[0]
    return word.upper()


def _error(filename: str, start: int, msg: str, line: str | None = None) -> BuildError:
    where = f"{filename}:{start}" if start > 0 else filename
    instr = f" ({_instruction_name(line)})" if line and _instruction_name(line) else ""
    return BuildError(f"dockerfile parse error in {where}{instr}: {msg}")


def parse(data: bytes | str, filename: str = "Dockerfile") -> ParseResult:
    """Parse a Dockerfile; raise :class:`BuildError` naming file, line and instruction."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    d = _Directives()
    lines = _scan_lines(data)
    root = Node(start_line=-1)
    warnings: list[str] = []
    comments: list[str] = []
    current = 0
    i = 0

    def decode(b: bytes) -> str:
        return b.decode("utf-8", "surrogateescape")

    def process_line(token: str, strip_left: bool) -> tuple[str, bool]:
        token = _trim_newline(token)
        if strip_left:
            token = go.trim_left_space(token)
        ok = d.possible_directive(token)
        return ("" if _is_comment(token) else token), ok

    def trim_continuation(s: str) -> tuple[str, bool]:
        if d.continuation.search(s):
            return d.continuation.sub(lambda m: m.group(1) or "", s), False
        return s, True

    while i < len(lines):
        raw = lines[i]
        i += 1
        if len(raw) > MAX_LINE:
            raise _error(filename, current + 1,
                         f"dockerfile line greater than max allowed size of {MAX_LINE - 1}")
        if current == 0 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        text = decode(raw)
        if _is_comment(text):
            comment = go.trim_space(go.trim_left_space(text)[1:])
            comments = [] if comment == "" else [*comments, comment]
        try:
            token, directive = process_line(text, True)
        except DockerfileSyntaxError as exc:
            raise _error(filename, current + 1, str(exc)) from None
        if directive and comments:
            comments.pop()
        current += 1
        start = current
        line, end_of_line = trim_continuation(token)
        if end_of_line and line == "":
            continue
        parts = [line]
        empty_continuation = False
        while not end_of_line and i < len(lines):
            raw = lines[i]
            i += 1
            if len(raw) > MAX_LINE:
                raise _error(filename, current + 1, "dockerfile line greater than max "
                             f"allowed size of {MAX_LINE - 1}")
            text = decode(raw)
            try:
                token, _ = process_line(text, False)
            except DockerfileSyntaxError as exc:  # pragma: no cover - header is done
                raise _error(filename, current + 1, str(exc)) from None
            current += 1
            if _is_comment(text):
                continue
            if go.trim_left_space(_trim_newline(token)) == "":
                empty_continuation = True
                continue
            token, end_of_line = trim_continuation(token)
            parts.append(token)
        line = "".join(parts)
        if empty_continuation:
            warnings.append(f"Empty continuation line found in: {line}")
        try:
            child = _node_from_line(line, d, comments)
        except DockerfileSyntaxError as exc:
            raise _error(filename, start, str(exc), line) from None
        if _can_contain_heredoc(child) and "<<" in line:
            try:
                docs = _heredocs_from_line(line)
            except DockerfileSyntaxError as exc:
                raise _error(filename, start, str(exc), line) from None
            for doc in docs:
                terminated = False
                body: list[str] = []
                while i < len(lines):
                    text = decode(lines[i])
                    i += 1
                    current += 1
                    candidate = _trim_newline(text)
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == doc.name:
                        terminated = True
                        break
                    body.append(text)
                if not terminated:
                    raise _error(filename, start, "unterminated heredoc", line)
                doc.content = "".join(body)
                child.heredocs.append(doc)
        child.start_line, child.end_line = start, current
        if root.start_line < 0:
            root.start_line = start
        root.end_line = current
        root.children.append(child)
        comments = []
    if root.start_line < 0:
        raise _error(filename, current, "file with no instructions")
    return ParseResult(ast=root, escape_token=d.escape, warnings=warnings,
                       directives=dict(d.seen))


def parse_file(path: str | Path) -> ParseResult:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BuildError(f"cannot read Dockerfile {path}: {exc.strerror}") from None
    return parse(data, filename=str(path))


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.build.dockerfile --dump FILE``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or argv[0] != "--dump":
        print("usage: python -m engine.build.dockerfile --dump FILE", file=sys.stderr)
        return 2
    try:
        result = parse_file(argv[1])
    except BuildError as exc:
        print(f"error: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    out = result.dump().encode("utf-8", "surrogateescape")
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
