"""From syntax nodes to typed build instructions (the reference's second pass).

:mod:`engine.build.dockerfile` only shapes text; this module gives each
instruction its meaning: which ``--flags`` it accepts (an unknown or repeated
flag is an error, as in the reference's ``BFlags``), how many arguments it
needs, whether its command is the exec (JSON) or the shell form, and which
arguments take ``$VAR`` substitution. Variables are *not* expanded here --
their values are only known while building, stage by stage -- so each
instruction keeps its raw words and the executor calls :func:`expand`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.build.dockerfile import Heredoc, Node, ParseResult
from engine.build.shell import Lex, ShellError
from engine.errors import BuildError

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")


@dataclass
class Instruction:
    """What every instruction has: its keyword, source text and location."""

    keyword: str          # upper case: "RUN"
    original: str         # the joined source line
    line: int             # first line in the Dockerfile
    flags: dict[str, list[str]] = field(default_factory=dict)

    def flag(self, name: str, default: str = "") -> str:
        values = self.flags.get(name)
        return values[-1] if values else default

    def bool_flag(self, name: str) -> bool:
        v = self.flags.get(name)
        return bool(v) and v[-1].lower() not in ("false", "0")


@dataclass
class From(Instruction):
    image: str = ""
    stage_name: str = ""


@dataclass
class Command(Instruction):
    """RUN, CMD, ENTRYPOINT: exec form (``prepend_shell`` False) or shell form."""

    cmd: list[str] = field(default_factory=list)
    prepend_shell: bool = False
    heredocs: list[Heredoc] = field(default_factory=list)


@dataclass
class KeyValues(Instruction):
    """ENV and LABEL: ``[(key, value), ...]`` with quotes still in place."""

    pairs: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Arg(Instruction):
    """ARG: ``[(name, default or None), ...]``."""

    args: list[tuple[str, str | None]] = field(default_factory=list)


@dataclass
class Words(Instruction):
    """EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL, MAINTAINER: plain arguments."""

    words: list[str] = field(default_factory=list)


@dataclass
class Copy(Instruction):
    """COPY and ADD: sources (or heredocs) and a destination."""

    sources: list[str] = field(default_factory=list)
    dest: str = ""
    heredocs: list[Heredoc] = field(default_factory=list)


@dataclass
class Healthcheck(Instruction):
    test: list[str] = field(default_factory=list)   # ["NONE"] or ["CMD", ...] / ["CMD-SHELL", s]


@dataclass
class Shell(Instruction):
    shell: list[str] = field(default_factory=list)


@dataclass
class OnBuild(Instruction):
    expression: str = ""   # the trigger's source text, re-parsed by the child build


@dataclass
class Stage:
    """One ``FROM`` and the instructions below it."""

    index: int
    base: From
    commands: list[Instruction] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.base.stage_name


@dataclass
class Dockerfile:
    meta_args: list[Arg]     # ARGs before the first FROM
    stages: list[Stage]
    escape_token: str
    warnings: list[str]


_ALLOWED_FLAGS: dict[str, dict[str, str]] = {
    # name -> kind: "string" (one value), "strings" (repeatable), "bool"
    "FROM": {"platform": "string"},
    "RUN": {"mount": "strings", "network": "string", "security": "string",
            "device": "strings"},
    "COPY": {"from": "string", "chown": "string", "chmod": "string", "link": "bool",
             "parents": "bool", "exclude": "strings"},
    "ADD": {"chown": "string", "chmod": "string", "checksum": "string",
            "keep-git-dir": "bool", "link": "bool", "exclude": "strings", "unpack": "bool"},
    "HEALTHCHECK": {"interval": "string", "timeout": "string", "start-period": "string",
                    "start-interval": "string", "retries": "string"},
}


class InstructionError(ValueError):
    """An instruction that parses but means nothing (wrong arguments, bad flag)."""


def _parse_flags(keyword: str, raw: list[str]) -> dict[str, list[str]]:
    allowed = _ALLOWED_FLAGS.get(keyword, {})
    out: dict[str, list[str]] = {}
    for item in raw:
        if not item.startswith("--"):
            raise InstructionError(f"invalid flag: {item}")
        name, eq, value = item[2:].partition("=")
        kind = allowed.get(name)
        if kind is None:
            raise InstructionError(f"unknown flag: --{name}")
        if name in out and kind != "strings":
            raise InstructionError(f"duplicate flag specified: --{name}")
        if kind == "bool":
            if eq and value.lower() not in ("true", "false"):
                raise InstructionError(f"expecting boolean value for flag {name}, not: {value}")
            value = value if eq else "true"
        elif not eq:
            raise InstructionError(f"missing a value on flag: --{name}")
        out.setdefault(name, []).append(value)
    return out


def _command(node: Node, keyword: str, base: dict) -> Command:
    args = node.args
    if node.is_json:
        return Command(**base, cmd=args, prepend_shell=False, heredocs=node.heredocs)
    text = args[0] if args else ""
    if keyword == "RUN" and not text:
        raise InstructionError("RUN requires at least one argument")
    return Command(**base, cmd=[text] if text else [], prepend_shell=bool(text),
                   heredocs=node.heredocs)


def _kv_pairs(node: Node, keyword: str) -> list[tuple[str, str]]:
    args = node.args
    if not args:
        raise InstructionError(f"{keyword} requires at least one argument")
    if len(args) % 3 != 0:
        raise InstructionError(f"Bad input to {keyword}, too many arguments")
    pairs = []
    for i in range(0, len(args), 3):
        key = args[i]
        if keyword == "ENV" and key == "":
            raise InstructionError("ENV names can not be blank")
        pairs.append((key, args[i + 1]))
    return pairs


def parse_instruction(node: Node) -> Instruction:
    """One node -> one typed instruction; raises :class:`InstructionError`."""
    keyword = node.value.upper()
    base = dict(keyword=keyword, original=node.original, line=node.start_line,
                flags=_parse_flags(keyword, node.flags))
    args = node.args
    if keyword == "FROM":
        if len(args) not in (1, 3) or (len(args) == 3 and args[1].lower() != "as"):
            raise InstructionError("FROM requires either one or three arguments")
        name = args[2].lower() if len(args) == 3 else ""
        if name and not _STAGE_NAME.match(name):
            raise InstructionError(f"invalid name for build stage: {args[2]!r}, name can't "
                                   "start with a number or contain symbols")
        return From(**base, image=args[0], stage_name=name)
    if keyword in ("RUN", "CMD", "ENTRYPOINT"):
        return _command(node, keyword, base)
    if keyword in ("ENV", "LABEL"):
        return KeyValues(**base, pairs=_kv_pairs(node, keyword))
    if keyword == "ARG":
        if not args:
            raise InstructionError("ARG requires at least one argument")
        out = []
        for a in args:
            name, eq, default = a.partition("=")
            if not name:
                raise InstructionError(f"ARG names can not be blank: {a!r}")
            out.append((name, default if eq else None))
        return Arg(**base, args=out)
    if keyword in ("COPY", "ADD"):
        if len(args) < 2 and not (node.heredocs and args):
            raise InstructionError(f"{keyword} requires at least two arguments, but only "
                                   "one was provided. Destination could not be determined.")
        if keyword == "COPY" and "chmod" in base["flags"]:
            mode = base["flags"]["chmod"][-1]
            if not re.fullmatch(r"[0-7]{1,4}", mode) and "$" not in mode:
                raise InstructionError(f"invalid chmod parameter: {mode!r} (octal needed)")
        return Copy(**base, sources=args[:-1], dest=args[-1], heredocs=node.heredocs)
    if keyword == "EXPOSE":
        if not args:
            raise InstructionError("EXPOSE requires at least one argument")
        return Words(**base, words=args)
    if keyword == "VOLUME":
        if not args:
            raise InstructionError("VOLUME requires at least one argument")
        for a in args:
            if not a.strip():
                raise InstructionError("VOLUME specified can not be an empty string")
        return Words(**base, words=args)
    if keyword in ("USER", "WORKDIR", "STOPSIGNAL", "MAINTAINER"):
        if len(args) != 1:
            raise InstructionError(f"{keyword} requires exactly one argument")
        return Words(**base, words=args)
    if keyword == "SHELL":
        if not node.is_json:
            raise InstructionError("SHELL requires the arguments to be in JSON form")
        if not args:
            raise InstructionError("SHELL requires at least one argument")
        return Shell(**base, shell=args)
    if keyword == "HEALTHCHECK":
        if not args:
            raise InstructionError("HEALTHCHECK requires an argument")
        typ = args[0].upper()
        if typ == "NONE":
            if len(args) > 1 or base["flags"]:
                raise InstructionError("HEALTHCHECK NONE takes no arguments")
            return Healthcheck(**base, test=["NONE"])
        if typ != "CMD":
            raise InstructionError(f'Unknown type "{typ}" in HEALTHCHECK (try CMD)')
        rest = args[1:]
        if not rest:
            raise InstructionError("Missing command after HEALTHCHECK CMD")
        test = ["CMD", *rest] if node.is_json else ["CMD-SHELL", rest[0]]
        return Healthcheck(**base, test=test)
    if keyword == "ONBUILD":
        if node.next is None or not node.next.children:
            raise InstructionError("ONBUILD requires at least one argument")
        child = node.next.children[0]
        trigger = child.value.upper()
        if trigger == "ONBUILD":
            raise InstructionError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger in ("FROM", "MAINTAINER"):
            raise InstructionError(f"{trigger} isn't allowed as an ONBUILD trigger")
        parse_instruction(child)  # validate now, as the reference does
        text = node.original.strip()
        expression = re.split(r"[\t\v\f\r ]+", text, maxsplit=1)[1] if " " in text or \
            "\t" in text else ""
        return OnBuild(**base, expression=expression)
    raise InstructionError(f"unknown instruction: {node.value}")


def build_dockerfile(result: ParseResult, filename: str = "Dockerfile") -> Dockerfile:
    """Split the tree into meta ARGs and stages, every instruction typed."""
    meta: list[Arg] = []
    stages: list[Stage] = []
    for node in result.ast.children:
        try:
            ins = parse_instruction(node)
        except InstructionError as exc:
            raise BuildError(f"{filename}:{node.start_line}: {node.value.upper()}: "
                             f"{exc}") from None
        if isinstance(ins, From):
            stages.append(Stage(index=len(stages), base=ins))
        elif not stages:
            if not isinstance(ins, Arg):
                raise BuildError(f"{filename}:{node.start_line}: {node.value.upper()}: "
                                 "no build stage in current context (the first instruction "
                                 "must be FROM, or ARG before it)")
            meta.append(ins)
        else:
            stages[-1].commands.append(ins)
    if not stages:
        raise BuildError(f"{filename}: no build stage: the Dockerfile has no FROM")
    seen: set[str] = set()
    for stage in stages:
        if stage.name:
            if stage.name in seen:
                raise BuildError(f"{filename}:{stage.base.line}: FROM: duplicate stage name "
                                 f"{stage.name!r}")
            seen.add(stage.name)
    return Dockerfile(meta_args=meta, stages=stages, escape_token=result.escape_token,
                      warnings=result.warnings)


def expand(word: str, env: dict[str, str], escape: str, where: str) -> str:
    """``$VAR`` substitution and quote removal for one word (ProcessWord)."""
    try:
        return Lex(escape).process_word(word, env)
    except ShellError as exc:
        raise BuildError(f"{where}: {exc}") from None


def expand_words(word: str, env: dict[str, str], escape: str, where: str) -> list[str]:
    """Substitution, then word splitting (ProcessWords)."""
    try:
        return Lex(escape).process_words(word, env)
    except ShellError as exc:
        raise BuildError(f"{where}: {exc}") from None
