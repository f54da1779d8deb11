"""The parser against the reference parser's own test corpus (shared/acceptance).

Each case of ``dockerfile-parser/`` must dump exactly its ``result``; each of
``dockerfile-parser-negative/`` must be refused. The corpus lives beside the
repository (``../shared/acceptance``); ``ESTIBA_ACCEPTANCE`` points elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.build.dockerfile import parse_file
from engine.errors import BuildError

REPO = Path(__file__).resolve().parents[3]


def _corpus() -> Path | None:
    candidates = [os.environ.get("ESTIBA_ACCEPTANCE"), REPO.parent / "shared" / "acceptance",
                  REPO / "shared" / "acceptance"]
    for c in candidates:
        if c and (Path(c) / "dockerfile-parser").is_dir():
            return Path(c)
    return None


CORPUS = _corpus()
NO_CORPUS = "acceptance corpus not found (../shared/acceptance or $ESTIBA_ACCEPTANCE)"


def _cases(kind: str) -> list[str]:
    if CORPUS is None:
        return []
    return sorted(p.name for p in (CORPUS / kind).iterdir() if (p / "Dockerfile").is_file())


@pytest.mark.skipif(CORPUS is None, reason=NO_CORPUS)
@pytest.mark.parametrize("case", _cases("dockerfile-parser"))
def test_dump_matches_reference(case: str) -> None:
    folder = CORPUS / "dockerfile-parser" / case
    expected = (folder / "result").read_bytes().decode("utf-8", "surrogateescape")
    assert parse_file(folder / "Dockerfile").dump() == expected


@pytest.mark.skipif(CORPUS is None, reason=NO_CORPUS)
@pytest.mark.parametrize("case", _cases("dockerfile-parser-negative"))
def test_negative_case_refused(case: str) -> None:
    with pytest.raises(BuildError) as err:
        parse_file(CORPUS / "dockerfile-parser-negative" / case / "Dockerfile")
    assert "Dockerfile" in str(err.value)


@pytest.mark.skipif(CORPUS is None, reason=NO_CORPUS)
def test_dump_cli_every_case() -> None:
    """``python -m engine.build.dockerfile --dump`` prints the same, exit codes right."""
    for case in _cases("dockerfile-parser"):
        folder = CORPUS / "dockerfile-parser" / case
        out = subprocess.run([sys.executable, "-m", "engine.build.dockerfile", "--dump",
                              str(folder / "Dockerfile")], capture_output=True, cwd=REPO)
        assert out.returncode == 0, out.stderr
        assert out.stdout == (folder / "result").read_bytes(), case
        break  # one spawn is enough for the CLI path; the rest is covered above
    for case in _cases("dockerfile-parser-negative"):
        out = subprocess.run([sys.executable, "-m", "engine.build.dockerfile", "--dump",
                              str(CORPUS / "dockerfile-parser-negative" / case / "Dockerfile")],
                             capture_output=True, cwd=REPO)
        assert out.returncode != 0
        assert out.stdout == b""
        assert len(out.stderr.strip().splitlines()) == 1
