"""Variable substitution and word splitting as the reference builder does it.

Dockerfile arguments are not run through a shell: the builder expands
``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:+alt}``, ``${VAR-x}``,
``${VAR+x}``, ``${VAR:?msg}``, ``${VAR#pat}``, ``${VAR%pat}`` and
``${VAR/pat/rep}`` itself, removes quotes, and honours the escape character
(``\\`` or the one a ``# escape=`` directive chose). This module mirrors
moby/buildkit's ``shell/lex.go`` step by step (a character scanner with
peek/next and small recursive routines), because users rely on its exact
behaviour -- an escaped ``\\$`` stays literal, single quotes stop expansion,
an unset variable expands to nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.build.gocompat import is_space

EOF_CH = ""


class ShellError(ValueError):
    """A substitution the reference builder refuses (bad ``${...}``, unmatched quote)."""


def _is_letter(ch: str) -> bool:
    return ch.isalpha()


def _is_digit(ch: str) -> bool:
    return ch.isdigit() and ch.isdecimal()


class _Scanner:
    """Go's ``text/scanner`` reduced to Peek/Next over characters."""

    def __init__(self, text: str) -> None:
        if text.startswith("\ufeff"):
            text = text[1:]
        # invalid UTF-8 bytes read as U+FFFD, as Go's scanner returns them
        self.text = re.sub("[\udc80-\udcff]", "\ufffd", text)
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else EOF_CH

    def next(self) -> str:
        if self.pos >= len(self.text):
            return EOF_CH
        ch = self.text[self.pos]
        self.pos += 1
        return ch


@dataclass
class _Words:
    word: str = ""
    words: list[str] = field(default_factory=list)
    in_word: bool = False

    def add_char(self, ch: str) -> None:
        if is_space(ch) and self.in_word:
            if self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        elif not is_space(ch):
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.word += ch
        self.in_word = True

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def add_raw_string(self, s: str) -> None:
        self.word += s
        self.in_word = True

    def get_words(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


@dataclass
class Result:
    result: str
    words: list[str]
    matched: set[str]
    unmatched: set[str]


class Lex:
    """Shell-like word processing (``shell.NewLex(escapeToken)``)."""

    def __init__(self, escape_token: str = "\\", *, raw_quotes: bool = False,
                 raw_escapes: bool = False, skip_process_quotes: bool = False,
                 skip_unset_env: bool = False) -> None:
        self.escape_token = escape_token
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_process_quotes = skip_process_quotes
        self.skip_unset_env = skip_unset_env

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand and unquote ``word`` into one string (spaces kept)."""
        return self.process(word, env).result

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """Expand, then split into words (quotes keep spaces together)."""
        return self.process(word, env).words

    def process(self, word: str, env: Mapping[str, str]) -> Result:
        sw = _ShellWord(self, _Scanner(word), env)
        try:
            res, words = sw.process_stop_on(EOF_CH, self.raw_escapes)
        except ShellError as exc:
            raise ShellError(f'failed to process "{word}": {exc}') from None
        return Result(res, words, sw.matches, sw.nonmatches)


class _ShellWord:
    def __init__(self, lex: Lex, scanner: _Scanner, env: Mapping[str, str]) -> None:
        self.lex = lex
        self.s = scanner
        self.env = env
        self.raw_escapes = lex.raw_escapes
        self.matches: set[str] = set()
        self.nonmatches: set[str] = set()

    def process_stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        special = {"$": self.process_dollar, "<": self.process_possible_heredoc}
        if not self.lex.skip_process_quotes:
            special["'"] = self.process_single_quote
            special['"'] = self.process_double_quote
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            while self.s.peek() != EOF_CH:
                ch = self.s.peek()
                if stop != EOF_CH and ch == stop:
                    self.s.next()
                    return "".join(result), words.get_words()
                fn = special.get(ch)
                if fn is not None:
                    tmp = fn()
                    result.append(tmp)
                    if ch == "$":
                        words.add_string(tmp)
                    else:
                        words.add_raw_string(tmp)
                    continue
                ch = self.s.next()
                if ch == self.lex.escape_token:
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        result.append(ch)
                    ch = self.s.next()
                    if ch == EOF_CH:
                        break
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
            if stop != EOF_CH:
                raise ShellError(
                    f"unexpected end of statement while looking for matching {stop}")
            return "".join(result), words.get_words()
        finally:
            self.raw_escapes = saved

    def process_single_quote(self) -> str:
        out = []
        ch = self.s.next()
        if self.lex.raw_quotes:
            out.append(ch)
        while True:
            ch = self.s.next()
            if ch == EOF_CH:
                raise ShellError(
                    "unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def process_double_quote(self) -> str:
        out = []
        ch = self.s.next()
        if self.lex.raw_quotes:
            out.append(ch)
        while True:
            nxt = self.s.peek()
            if nxt == EOF_CH:
                raise ShellError(
                    "unexpected end of statement while looking for matching double-quote")
            if nxt == '"':
                ch = self.s.next()
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if nxt == "$":
                out.append(self.process_dollar())
                continue
            ch = self.s.next()
            if ch == self.lex.escape_token:
                if self.raw_escapes:
                    out.append(ch)
                after = self.s.peek()
                if after == EOF_CH:
                    continue
                if after in ('"', "$", self.lex.escape_token):
                    ch = self.s.next()
            out.append(ch)

    def process_possible_heredoc(self) -> str:
        self.s.next()
        if self.s.peek() != "<":
            return "<"
        self.s.next()
        space = []
        while self.s.peek() in ("\t", "\r", " ") and self.s.peek() != EOF_CH:
            space.append(self.s.next())
        return "<<" + "".join(space)

    def get_env(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matches.add(name)
            return self.env[name], True
        self.nonmatches.add(name)
        return "", False

    def process_name(self) -> str:
        name = []
        while self.s.peek() != EOF_CH:
            ch = self.s.peek()
            if not name and _is_digit(ch):
                while self.s.peek() != EOF_CH and _is_digit(self.s.peek()):
                    name.append(self.s.next())
                return "".join(name)
            if not name and ch in "@*#?-$!0":
                return self.s.next()
            if not _is_letter(ch) and not _is_digit(ch) and ch != "_":
                break
            name.append(self.s.next())
        return "".join(name)

    def process_dollar(self) -> str:
        self.s.next()
        if self.s.peek() != "{":
            name = self.process_name()
            if name == "":
                return "$"
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "$" + name
            return value
        self.s.next()
        if self.s.peek() == EOF_CH:
            raise ShellError("syntax error: missing '}'")
        if self.s.peek() in "{}:":
            raise ShellError("syntax error: bad substitution")
        name = self.process_name()
        ch = self.s.next()
        chs = ch or "\ufffd"  # Go's string(scanner.EOF)
        null_is_unset = False
        if ch == "}":
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "${" + name + "}"
            return value
        if ch in (":", "+", "-", "?", "#", "%"):
            if ch == ":":
                null_is_unset = True
                ch = self.s.next()
                chs += ch or "\ufffd"
            raw = ch in ("#", "%")
            if null_is_unset and raw:
                raise ShellError(f"unsupported modifier ({chs}) in substitution")
            try:
                word, _ = self.process_stop_on("}", raw)
            except ShellError:
                if self.s.peek() == EOF_CH:
                    raise ShellError("syntax error: missing '}'") from None
                raise
            value, found = self.get_env(name)
            if self.lex.skip_unset_env and not found:
                return "${" + name + chs + word + "}"
            if ch == "-":
                return word if (not found or (null_is_unset and value == "")) else value
            if ch == "+":
                return "" if (not found or (null_is_unset and value == "")) else word
            if ch == "?":
                if not found:
                    raise ShellError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise ShellError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            if ch in ("%", "#"):
                greedy = False
                if word and word[0] == ch:
                    greedy = True
                    word = word[1:]
                if ch == "%":
                    return _trim_suffix(word, value, greedy)
                return _trim_prefix(word, value, greedy)
            raise ShellError(f"unsupported modifier ({chs}) in substitution")
        if ch == "/":
            replace_all = self.s.peek() == "/"
            if replace_all:
                self.s.next()
            try:
                pattern, _ = self.process_stop_on("/", True)
            except ShellError:
                if self.s.peek() == EOF_CH:
                    raise ShellError("syntax error: missing '/' in ${}") from None
                raise
            try:
                replacement, _ = self.process_stop_on("}", True)
            except ShellError:
                if self.s.peek() == EOF_CH:
                    raise ShellError("syntax error: missing '}'") from None
                raise
            value, found = self.get_env(name)
            if self.lex.skip_unset_env and not found:
                return "${" + name + "/" + pattern + "/" + replacement + "}"
            rx = _shell_pattern(pattern, greedy=True, anchored=False)
            if replace_all:
                return rx.sub(lambda _m: replacement, value)
            m = rx.search(value)
            if m:
                value = value[: m.start()] + replacement + value[m.end():]
            return value
        raise ShellError(f"unsupported modifier ({chs}) in substitution")


def _shell_pattern(pattern: str, greedy: bool, anchored: bool) -> re.Pattern:
    """A ``${v#pat}`` glob (``*``, ``?``, escapes; no brackets) as a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
            continue
        if tok == "?":
            out.append(".")
            continue
        if tok == "\\":
            nxt = pattern[i] if i < len(pattern) else ""
            if nxt in ("}", "/"):
                continue
            tok = nxt
            i += 1
            if tok not in ("*", "?", "\\"):
                raise ShellError(f"invalid pattern ({pattern}) in substitution: "
                                 f"invalid escape '\\{tok}'")
            out.append("\\" + tok)
            continue
        out.append(re.escape(tok))
    return re.compile("".join(out))


def _trim_prefix(word: str, value: str, greedy: bool) -> str:
    m = _shell_pattern(word, greedy, anchored=True).search(value)
    return value[m.end():] if m else value


def _reverse_pattern(pattern: str) -> str:
    out = [""] * len(pattern)
    last = len(pattern) - 1
    i = 0
    while i <= last:
        tok = pattern[i]
        j = last - i
        if tok == "\\" and i != last:
            out[j - 1] = tok
            out[j] = pattern[i + 1]
            i += 2
        else:
            out[j] = tok
            i += 1
    return "".join(out)


def _trim_suffix(pattern: str, word: str, greedy: bool) -> str:
    return _trim_prefix(_reverse_pattern(pattern), word[::-1], greedy)[::-1]
