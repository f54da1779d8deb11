"""COPY and ADD sources beyond the context: another image, whole directories, modes."""

from __future__ import annotations

from pathlib import Path

from engine import Engine
from tests.engine.build.conftest import run_in, write_tree


def test_copy_from_an_image_that_is_no_stage(builder: Engine, tmp_path: Path) -> None:
    write_tree(tmp_path, {"Dockerfile": """\
FROM busybox AS unrelated
FROM busybox
COPY --from=busybox:latest /etc/passwd /from-image/passwd
"""})
    img = builder.builder.build(tmp_path, tags=["bt-from-image:1"])
    code, out = run_in(builder, img.id, ["cat", "/from-image/passwd"])
    assert code == 0 and out.startswith("root:x:0:0:")


def test_add_a_directory_with_chmod_and_chown(builder: Engine, tmp_path: Path) -> None:
    write_tree(tmp_path, {"conf/a.txt": "a\n", "conf/sub/b.txt": "b\n", "Dockerfile": """\
FROM busybox
ADD --chmod=640 --chown=1:1 conf /etc/app/
RUN stat -c '%n %a %u:%g' /etc/app/a.txt /etc/app/sub/b.txt > /modes
"""})
    img = builder.builder.build(tmp_path, tags=["bt-add-dir:1"])
    code, out = run_in(builder, img.id, ["cat", "/modes"])
    assert code == 0
    # the directory's contents, not the directory itself, land in the destination
    assert out.splitlines() == ["/etc/app/a.txt 640 1:1", "/etc/app/sub/b.txt 640 1:1"]
