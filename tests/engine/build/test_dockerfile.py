"""The Dockerfile grammar case by case, held to the reference parser's behaviour."""

from __future__ import annotations

import pytest

from engine.build.dockerfile import parse
from engine.build.instructions import (
    Command,
    Copy,
    From,
    Healthcheck,
    KeyValues,
    OnBuild,
    build_dockerfile,
)
from engine.build.shell import Lex, ShellError
from engine.errors import BuildError


def dump(text: str) -> str:
    return parse(text.encode()).dump()


@pytest.mark.parametrize("src, expected", [
    # FROM with flags, AS
    ("FROM --platform=linux/amd64 busybox AS build", '(from ["--platform=linux/amd64"] '
     '"busybox" "AS" "build")'),
    # RUN flags kept raw, shell form one argument
    ("RUN --mount=type=cache,target=/root/.cache --network=none make all",
     '(run ["--mount=type=cache,target=/root/.cache" "--network=none"] "make all")'),
    ("RUN [\"echo\", \"a b\"]", '(run "echo" "a b")'),
    # JSON that fails to parse falls back to the shell form
    ("CMD [\"unterminated", '(cmd "[\\"unterminated")'),
    ("CMD ['single']", "(cmd \"['single']\")"),
    ("ENTRYPOINT [\"a\"] trailing", '(entrypoint "[\\"a\\"] trailing")'),
    # ENV and LABEL both forms
    ("ENV a b c", '(env "a" "b c" "")'),
    ("ENV a=1 b=\"x y\"", '(env "a" "1" "=" "b" "\\"x y\\"" "=")'),
    ("LABEL version=1.0 \"com.x\"=\"y\"", '(label "version" "1.0" "=" "\\"com.x\\"" '
     '"\\"y\\"" "=")'),
    # ADD/COPY flags
    ("ADD --chown=1:2 --chmod=644 --checksum=sha256:abc --keep-git-dir=true a /b",
     '(add ["--chown=1:2" "--chmod=644" "--checksum=sha256:abc" "--keep-git-dir=true"] '
     '"a" "/b")'),
    ("COPY --from=build --link --parents --exclude=*.md a b /c/",
     '(copy ["--from=build" "--link" "--parents" "--exclude=*.md"] "a" "b" "/c/")'),
    ("COPY [\"a b\", \"/c\"]", '(copy "a b" "/c")'),
    ("EXPOSE 80/tcp  443", '(expose "80/tcp" "443")'),
    ("VOLUME [\"/a\", \"/b\"]", '(volume "/a" "/b")'),
    ("VOLUME /a /b", '(volume "/a" "/b")'),
    ("USER app:app", '(user "app:app")'),
    ("WORKDIR /a b", '(workdir "/a b")'),
    ("ARG A B=2", '(arg "A" "B=2")'),
    ("ONBUILD RUN echo hi", '(onbuild (run "echo hi"))'),
    ("ONBUILD COPY --from=x a b", '(onbuild (copy ["--from=x"] "a" "b"))'),
    ("STOPSIGNAL SIGTERM", '(stopsignal "SIGTERM")'),
    ("HEALTHCHECK --interval=5s CMD [\"curl\", \"-f\"]",
     '(healthcheck ["--interval=5s"] "CMD" "curl" "-f")'),
    ("HEALTHCHECK NONE", '(healthcheck "NONE")'),
    ("SHELL [\"/bin/bash\", \"-c\"]", '(shell "/bin/bash" "-c")'),
    ("MAINTAINER Jane <j@x>", '(maintainer "Jane <j@x>")'),
    # unknown instructions keep the name, drop the arguments
    ("FOO bar baz", '(foo "")'),
    # the flag '--' ends flags; unicode is printed, control characters escaped
    ("COPY --a=1 -- --b /c", '(copy ["--a=1"] "--b" "/c")'),
    ("RUN echo \u00e9\u2603", '(run "echo \u00e9\u2603")'),
    ("CMD [\"\\u0001\\u00a0\"]", '(cmd "\\x01\\u00a0")'),
    # heredocs consume their body; the dump shows the instruction line only
    ("RUN <<EOF\necho hi\nFROM nope\nEOF", '(run "<<EOF")'),
    ("COPY <<-\"A\" /a\n\tx\n\tA", '(copy "<<-\\"A\\"" "/a")'),
])
def test_dump(src: str, expected: str) -> None:
    assert dump(src) == expected + "\n"


def test_directives_only_at_top() -> None:
    assert dump("# escape=`\nRUN a `\n b\n") == '(run "a  b")\n'
    # a comment before ends the header: the backslash stays the escape
    assert dump("# hello\n# escape=`\nRUN a \\\n b\n") == '(run "a  b")\n'
    # an empty line ends it too
    assert dump("\n# escape=`\nRUN a `\n") == '(run "a `")\n'
    r = parse(b"# syntax=docker/dockerfile:1\n# check=skip=all\nFROM a\n")
    assert r.directives == {"syntax": "docker/dockerfile:1", "check": "skip=all"}


def test_directive_errors() -> None:
    with pytest.raises(BuildError, match="only one escape parser directive"):
        parse(b"# escape=`\n# escape=\\\nFROM a\n")
    with pytest.raises(BuildError, match="invalid escape token"):
        parse(b"# escape=x\nFROM a\n")


def test_continuations_skip_comments_and_empty_lines() -> None:
    src = "RUN a \\\n# comment\n\n  b \\\n   # indented\n c\n"
    r = parse(src.encode())
    assert r.dump() == '(run "a   b  c")\n'
    assert r.warnings and "Empty continuation line" in r.warnings[0]
    node = r.ast.children[0]
    assert (node.start_line, node.end_line) == (1, 6)


def test_bom_crlf_and_eof_continuation() -> None:
    assert dump("\ufeffFROM a\r\nRUN b \\\r\n c\r\n") == '(from "a")\n(run "b  c")\n'
    assert dump("FROM a\nRUN b \\") == '(from "a")\n(run "b")\n'


def test_heredoc_details() -> None:
    r = parse(b"RUN <<A cat <<-'B'\nline $x\nA\n\tbody\n\tB\nRUN 3<<X\nX\n")
    docs = r.ast.children[0].heredocs
    assert [(d.name, d.expand, d.chomp, d.content) for d in docs] == [
        ("A", True, False, "line $x\n"), ("B", False, True, "\tbody\n")]
    assert r.ast.children[1].heredocs[0].file_descriptor == 3
    with pytest.raises(BuildError, match="unterminated heredoc"):
        parse(b"FROM a\nRUN <<EOF\nnever ends\n")
    # the exec form never takes heredocs
    assert parse(b'RUN ["cat", "<<EOF"]\nFROM x\n').ast.children[1].value == "FROM"


@pytest.mark.parametrize("src, message", [
    (b"", "file with no instructions"),
    (b"# only\n\n", "file with no instructions"),
    (b"FROM a\nENV PATH\n", "Dockerfile:2 (ENV): ENV must have two arguments"),
    (b"FROM a\nENV a=1 b\n", "can't find = in \"b\""),
    (b"FROM a\nCMD [\"a\", 1]\n", "arrays must be comprised of strings only"),
    (b"FROM a\nLABEL " + b"x" * 70000 + b"\n", "greater than max allowed size"),
])
def test_parse_errors_name_file_line_instruction(src: bytes, message: str) -> None:
    with pytest.raises(BuildError) as err:
        parse(src, filename="Dockerfile")
    assert message in str(err.value)
    assert "Dockerfile" in str(err.value)


def test_instructions_typed() -> None:
    r = parse(b"ARG V=1\nFROM busybox:${V} AS Base\nRUN echo a\nCMD [\"x\"]\n"
              b"ENV A=1 B=2\nCOPY --from=base a b /d/\nHEALTHCHECK --retries=2 CMD true\n"
              b"ONBUILD RUN make\n")
    df = build_dockerfile(r)
    assert df.meta_args[0].args == [("V", "1")]
    stage = df.stages[0]
    assert isinstance(stage.base, From) and stage.name == "base"
    run, cmd, env, cp, hc, ob = stage.commands
    assert isinstance(run, Command) and run.prepend_shell and run.cmd == ["echo a"]
    assert isinstance(cmd, Command) and not cmd.prepend_shell and cmd.cmd == ["x"]
    assert isinstance(env, KeyValues) and env.pairs == [("A", "1"), ("B", "2")]
    assert isinstance(cp, Copy) and cp.sources == ["a", "b"] and cp.dest == "/d/"
    assert cp.flag("from") == "base"
    assert isinstance(hc, Healthcheck) and hc.test == ["CMD-SHELL", "true"]
    assert isinstance(ob, OnBuild) and ob.expression == "RUN make"


@pytest.mark.parametrize("src, message", [
    (b"RUN x\n", "no build stage"),
    (b"FROM a b\n", "FROM requires either one or three arguments"),
    (b"FROM a\nCOPY x\n", "COPY requires at least two arguments"),
    (b"FROM a\nCOPY --bogus=1 a b\n", "unknown flag: --bogus"),
    (b"FROM a\nCOPY --from=a --from=b a b\n", "duplicate flag specified: --from"),
    (b"FROM a\nSHELL sh -c\n", "SHELL requires the arguments to be in JSON form"),
    (b"FROM a\nONBUILD ONBUILD RUN x\n", "Chaining ONBUILD"),
    (b"FROM a\nONBUILD FROM x\n", "FROM isn't allowed as an ONBUILD trigger"),
    (b"FROM a\nBOGUS x\n", "unknown instruction: BOGUS"),
    (b"FROM a AS x\nFROM b AS x\n", "duplicate stage name"),
    (b"FROM a\nHEALTHCHECK FOO x\n", "Unknown type"),
    (b"FROM a\nUSER\n", "USER requires exactly one argument"),
])
def test_instruction_errors(src: bytes, message: str) -> None:
    with pytest.raises(BuildError, match=message) as err:
        build_dockerfile(parse(src))
    assert "Dockerfile" in str(err.value)


ENV = {"A": "a", "EMPTY": "", "P": "/usr/local/bin:/usr/bin"}


@pytest.mark.parametrize("word, expected", [
    ("$A", "a"), ("${A}", "a"), ("x${A}y", "xay"), ("$UNSET", ""),
    ("${UNSET:-def}", "def"), ("${EMPTY:-def}", "def"), ("${EMPTY-def}", ""),
    ("${A:-def}", "a"), ("${A:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${EMPTY+alt}", "alt"),
    ("${UNSET+alt}", ""), ("\\$A", "$A"), ("'$A'", "$A"), ('"$A"', "a"), ('"\\$A"', "$A"),
    ("${P#*:}", "/usr/bin"), ("${P##*:}", "/usr/bin"), ("${P%:*}", "/usr/local/bin"),
    ("${P/usr/opt}", "/opt/local/bin:/usr/bin"), ("${P//usr/opt}", "/opt/local/bin:/opt/bin"),
    ("a\\ b", "a b"), ("$", "$"), ("${A}$", "a$"),
])
def test_substitution(word: str, expected: str) -> None:
    assert Lex("\\").process_word(word, ENV) == expected


def test_substitution_with_backtick_escape() -> None:
    assert Lex("`").process_word("`$A \\x", ENV) == "$A \\x"


def test_process_words_splits_after_expansion() -> None:
    assert Lex("\\").process_words('a "b c" $A', ENV) == ["a", "b c", "a"]


@pytest.mark.parametrize("word, message", [
    ("${A", "unsupported modifier"), ("${A:-x", "missing '}'"), ("${}", "bad substitution"),
    ("${UNSET?gone}", "UNSET: gone"),
    ("${EMPTY:?}", "is not allowed to be empty"), ("'open", "matching single-quote"),
    ("${A:#x}", "unsupported modifier"),
])
def test_substitution_errors(word: str, message: str) -> None:
    with pytest.raises(ShellError, match=message):
        Lex("\\").process_word(word, ENV)
