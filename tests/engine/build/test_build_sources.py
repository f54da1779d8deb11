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


def test_add_from_a_url_on_loopback_with_its_checksum(builder: Engine, tmp_path: Path) -> None:
    """``ADD <url>`` downloads the file (a server on loopback here) and checks ``--checksum``."""
    import hashlib

    import pytest

    from engine.errors import BuildError
    from tests.fixtures.services import serve_directory

    served = tmp_path / "served"
    served.mkdir()
    (served / "notes.txt").write_bytes(b"apuntes del curso\n" * 1000)
    digest = hashlib.sha256((served / "notes.txt").read_bytes()).hexdigest()
    context = tmp_path / "ctx"
    with serve_directory(served) as base:
        write_tree(context, {"Dockerfile": f"""\
FROM busybox
ADD --checksum=sha256:{digest} {base}/notes.txt /srv/
ADD --chmod=644 {base}/notes.txt /srv/renamed.txt
"""})
        img = builder.builder.build(context, tags=["bt-add-url:1"])
        code, out = run_in(builder, img.id, ["sh", "-c", "wc -c < /srv/notes.txt; "
                                             "stat -c %a /srv/notes.txt /srv/renamed.txt"])
        assert code == 0 and out.split() == ["18000", "600", "644"]
        for line, message in ((f"ADD --checksum=sha256:{'0' * 64} {base}/notes.txt /x",
                               "checksum mismatch"),
                              (f"ADD {base}/missing.txt /x", "cannot download"),
                              (f"ADD --checksum=md5:abc {base}/notes.txt /x", "sha256:<64 hex")):
            write_tree(context, {"Dockerfile": f"FROM busybox\n{line}\n"})
            with pytest.raises(BuildError, match=message):
                builder.builder.build(context, tags=["bt-add-url:bad"])
        # a build for someone who is no administrator never reaches this host's services
        write_tree(context, {"Dockerfile": f"FROM busybox\nADD {base}/notes.txt /x\n"})
        with pytest.raises(BuildError, match=r"127\.0\.0\.1 is this host or a private network"):
            builder.builder.build(context, tags=["bt-add-url:host"], host_urls=False)
