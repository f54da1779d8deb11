"""Running a Dockerfile: one image per step, reused from a cache when nothing changed.

This is the classic builder's model (``docker build`` without BuildKit):
every instruction turns the current image into a child image.

* ``RUN`` starts a real container on the current image (network ``none``
  unless asked, the stage's ``SHELL``, its ``USER``/``WORKDIR``/``ENV`` plus
  the build args in scope); when it exits 0 the container's overlay *upper
  dir* -- exactly what the command changed -- becomes the new layer.
* ``COPY``/``ADD`` mount an overlay of the current image over a fresh upper
  dir, write the sources through it, and that upper dir becomes the layer.
* The other instructions only change the image config; their history entry
  says ``empty_layer``.

Each step's result is recorded under a key made of everything that decides
it (:mod:`engine.build.cache`), so an unchanged step prints ``---> Using
cache``. Output is Docker's build stream, line by line, through the
``progress`` callback and as transient ``build`` events.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import posixpath
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from engine.build import copier
from engine.build.cache import BuildCache, cache_key
from engine.build.context import BuildContext, glob_in, has_wildcards, resolve_in
from engine.build.dockerfile import parse, parse_heredoc
from engine.build.dockerignore import PatternMatcher
from engine.build.instructions import (
    Arg,
    Command,
    Copy,
    Dockerfile,
    From,
    Healthcheck,
    Instruction,
    KeyValues,
    OnBuild,
    Shell,
    Stage,
    Words,
    build_dockerfile,
    expand,
)
from engine.build.runmount import parse_mount, prepare_cache_dir
from engine.build.shell import Lex, ShellError
from engine.errors import BuildError, EngineError, ImageNotFound

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.images.store import Image

DEFAULT_SHELL = ["/bin/sh", "-c"]
#: The largest file ``ADD <url>`` downloads (bytes).
MAX_ADD_URL = int(os.environ.get("ESTIBA_BUILD_MAX_ADD_URL", str(4 * 1024**3)))
BUILTIN_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                          "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy",
                          "ALL_PROXY", "all_proxy"})
#: Files the runtime bind-mounts; their empty mount points never belong in a layer.
_MOUNT_POINTS = ("etc/hostname", "etc/hosts", "etc/resolv.conf")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(text: str, what: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``100ms``) in nanoseconds."""
    if text in ("0", ""):
        return 0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise BuildError(f"HEALTHCHECK: invalid duration {text!r} for {what}")
    return int(total)


@dataclass
class _StageState:
    stage: Stage
    image: Image | None
    config: dict
    args: dict[str, str] = field(default_factory=dict)
    cmd_set: bool = False
    author: str = ""

    @property
    def image_id(self) -> str:
        return self.image.id if self.image else "scratch"

    def env_list(self) -> list[str]:
        return list(self.config.get("Env") or [])

    def env_map(self) -> dict[str, str]:
        """What ``$VAR`` sees: ARGs in scope, overridden by ENV."""
        out = dict(self.args)
        for item in self.env_list():
            k, _, v = item.partition("=")
            out[k] = v
        return out


class StepFailed(BuildError):
    """A RUN that exited non-zero: ``step``, ``command`` and ``exit_code`` say which."""

    def __init__(self, message: str, step: str, command: str, exit_code: int) -> None:
        super().__init__(message)
        self.step = step
        self.command = command
        self.exit_code = exit_code


class _Run:
    """One build's state: output, counters, build args, stage results."""

    def __init__(self, builder: Builder, ctx: BuildContext, df: Dockerfile, filename: str,
                 build_args: dict[str, str], no_cache: bool, network_mode: str,
                 progress: Callable[[dict], None] | None, host_urls: bool = True) -> None:
        self.b = builder
        self.host_urls = host_urls
        self.engine = builder.engine
        self.ctx = ctx
        self.df = df
        self.filename = filename
        self.build_args = build_args
        self.no_cache = no_cache
        self.network_mode = network_mode
        self.progress = progress
        self.build_id = uuid.uuid4().hex
        self.used_args: set[str] = set()
        self.step = 0
        self.total = 0
        self.stage_images: dict[str, Image | None] = {}
        self.meta: dict[str, str] = {}

    # -- output ------------------------------------------------------------------------
    def out(self, text: str) -> None:
        msg = {"stream": text}
        if self.progress is not None:
            self.progress(msg)
        with contextlib.suppress(Exception):
            self.engine.events.emit("build", "step", self.build_id, msg, transient=True)

    def where(self, ins: Instruction) -> str:
        return f"{self.filename}:{ins.line}: {ins.keyword}"

    # -- stages ------------------------------------------------------------------------
    def run(self, target: str | None) -> Image | None:
        stages = self.df.stages
        last = len(stages) - 1
        if target:
            names = [s.name for s in stages]
            if target.lower() not in names:
                raise BuildError(f"failed to reach build target {target} in Dockerfile")
            last = names.index(target.lower())
        self.total = sum(1 + len(s.commands) for s in stages[: last + 1])
        for arg in self.df.meta_args:
            for name, default in arg.args:
                self.used_args.add(name)
                value = self.build_args.get(name)
                if value is None and default is not None:
                    value = expand(default, self.meta, self.df.escape_token, self.where(arg))
                if value is not None:
                    self.meta[name] = value
        result = None
        for stage in stages[: last + 1]:
            result = self.run_stage(stage)
            self.stage_images[str(stage.index)] = result
            if stage.name:
                self.stage_images[stage.name] = result
        return result

    def _base(self, ins: From) -> Image | None:
        name = expand(ins.image, self.meta, self.df.escape_token, self.where(ins))
        if not name:
            raise BuildError(f"{self.where(ins)}: base name ({ins.image}) should not be blank")
        if name.lower() in self.stage_images:
            return self.stage_images[name.lower()]
        if name == "scratch":
            return None
        try:
            return self.engine.images.resolve(name)
        except ImageNotFound:
            pass
        try:
            self.out(f"Pulling {name}\n")
            return self.engine.registry.pull(name)
        except EngineError as exc:
            raise BuildError(f"{self.where(ins)}: pull access denied or image not found "
                             f"for {name}: {exc}") from None

    def next_step(self, ins: Instruction) -> str:
        self.step += 1
        label = f"Step {self.step}/{self.total} : {ins.original.strip()}"
        self.out(label + "\n")
        return label

    def run_stage(self, stage: Stage) -> Image | None:
        self.next_step(stage.base)
        image = self._base(stage.base)
        config = copy.deepcopy(image.runtime_config) if image else {}
        st = _StageState(stage=stage, image=image, config=config)
        self.out(f" ---> {image.short_id}\n" if image else " ---> scratch\n")
        triggers = list(config.get("OnBuild") or [])
        if triggers:
            st.config["OnBuild"] = None
            word = "trigger" if len(triggers) == 1 else "triggers"
            self.out(f"# Executing {len(triggers)} build {word}\n")
            for text in triggers:
                try:
                    node = parse(text.encode("utf-8", "surrogateescape"),
                                 f"ONBUILD trigger of {stage.base.image}").ast.children[0]
                    from engine.build.instructions import parse_instruction

                    ins = parse_instruction(node)
                except (BuildError, ValueError) as exc:
                    raise BuildError(f"invalid ONBUILD trigger {text!r} in the base image "
                                     f"{stage.base.image}: {exc}") from None
                ins.line = stage.base.line
                self.out(f" ---> Running in trigger: {text}\n")
                self.dispatch(st, ins)
        for ins in stage.commands:
            self.next_step(ins)
            self.dispatch(st, ins)
        return st.image

    # -- dispatch ----------------------------------------------------------------------
    def dispatch(self, st: _StageState, ins: Instruction) -> None:
        if isinstance(ins, Command) and ins.keyword == "RUN":
            self.run_command(st, ins)
        elif isinstance(ins, Copy):
            self.copy(st, ins)
        elif isinstance(ins, Words) and ins.keyword == "WORKDIR":
            self.workdir(st, ins)
        elif isinstance(ins, Arg):
            self.arg(st, ins)
        else:
            self.metadata(st, ins)

    def _cached(self, st: _StageState, key: str) -> bool:
        if self.no_cache:
            return False
        image_id = self.b.cache.get(key)
        if not image_id:
            return False
        try:
            image = self.engine.images.resolve(image_id)
        except ImageNotFound:
            self.b.cache.forget(key)
            return False
        st.image = image
        st.config = copy.deepcopy(image.runtime_config)
        self.out(f" ---> Using cache\n ---> {image.short_id}\n")
        return True

    def _commit(self, st: _StageState, key: str, upper: Path | None, created_by: str,
                announce: bool = True) -> None:
        image = self.engine.images.commit(st.image, upper, reference=None,
                                          config=copy.deepcopy(st.config),
                                          created_by=created_by, author=st.author)
        st.image = image
        self.b.cache.put(key, image.id)
        if announce:
            self.out(f" ---> {image.short_id}\n")

    # -- metadata instructions ----------------------------------------------------------
    def arg(self, st: _StageState, ins: Arg) -> None:
        shown = []
        for name, default in ins.args:
            self.used_args.add(name)
            if name in self.build_args:
                value: str | None = self.build_args[name]
            elif default is not None:
                value = expand(default, st.env_map(), self.df.escape_token, self.where(ins))
            else:
                value = self.meta.get(name)
            if value is not None:
                st.args[name] = value
            shown.append(name if default is None else f"{name}={default}")
        key = cache_key(st.image_id, "ARG", sorted(st.args.items()))
        if self._cached(st, key):
            return
        self._commit(st, key, None, "/bin/sh -c #(nop)  ARG " + " ".join(shown))

    def _shell_form(self, st: _StageState, ins: Command) -> list[str]:
        if ins.prepend_shell:
            return [*(st.config.get("Shell") or DEFAULT_SHELL), ins.cmd[0]]
        return list(ins.cmd)

    def metadata(self, st: _StageState, ins: Instruction) -> None:
        env = st.env_map()
        esc = self.df.escape_token
        where = self.where(ins)
        cfg = st.config
        shown = ""
        if isinstance(ins, KeyValues):
            pairs = [(expand(k, env, esc, where), expand(v, env, esc, where))
                     for k, v in ins.pairs]
            if ins.keyword == "ENV":
                current = st.env_list()
                for k, v in pairs:
                    current = [e for e in current if e.partition("=")[0] != k] + [f"{k}={v}"]
                cfg["Env"] = current
            else:
                labels = dict(cfg.get("Labels") or {})
                labels.update(dict(pairs))
                cfg["Labels"] = labels
            shown = f" {ins.keyword} " + " ".join(f"{k}={v}" for k, v in pairs)
        elif isinstance(ins, Command):  # CMD, ENTRYPOINT
            value = self._shell_form(st, ins) if ins.cmd else []
            if ins.keyword == "CMD":
                cfg["Cmd"] = value
                st.cmd_set = True
            else:
                cfg["Entrypoint"] = value
                if not st.cmd_set:
                    cfg["Cmd"] = None
            shown = f" {ins.keyword} {_json_list(value)}"
        elif isinstance(ins, Words):
            words = [expand(w, env, esc, where) for w in ins.words]
            if ins.keyword == "EXPOSE":
                ports = dict(cfg.get("ExposedPorts") or {})
                for w in words:
                    for p in w.split():
                        for port in _expand_ports(p, where):
                            ports[port] = {}
                cfg["ExposedPorts"] = ports
            elif ins.keyword == "VOLUME":
                vols = dict(cfg.get("Volumes") or {})
                for w in words:
                    if not w.strip():
                        raise BuildError(f"{where}: VOLUME specified can not be an empty string")
                    vols[w] = {}
                cfg["Volumes"] = vols
            elif ins.keyword == "USER":
                cfg["User"] = words[0]
            elif ins.keyword == "STOPSIGNAL":
                cfg["StopSignal"] = words[0]
            elif ins.keyword == "MAINTAINER":
                st.author = words[0]
            shown = f" {ins.keyword} " + " ".join(words)
        elif isinstance(ins, Healthcheck):
            if ins.test == ["NONE"]:
                cfg["Healthcheck"] = {"Test": ["NONE"]}
            else:
                hc: dict[str, Any] = {"Test": ins.test}
                for flag, field_ in (("interval", "Interval"), ("timeout", "Timeout"),
                                     ("start-period", "StartPeriod"),
                                     ("start-interval", "StartInterval")):
                    if ins.flag(flag):
                        hc[field_] = parse_duration(ins.flag(flag), flag)
                if ins.flag("retries"):
                    try:
                        hc["Retries"] = int(ins.flag("retries"))
                    except ValueError:
                        raise BuildError(f"{where}: --retries must be a number") from None
                cfg["Healthcheck"] = hc
            shown = f" HEALTHCHECK {_json_list(ins.test)}"
        elif isinstance(ins, Shell):
            cfg["Shell"] = list(ins.shell)
            shown = f" SHELL {_json_list(ins.shell)}"
        elif isinstance(ins, OnBuild):
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), ins.expression]
            shown = f" ONBUILD {ins.expression}"
        else:  # pragma: no cover - instructions.py knows every keyword
            raise BuildError(f"{where}: not supported")
        key = cache_key(st.image_id, ins.keyword, shown, cfg, st.author)
        if self._cached(st, key):
            return
        self._commit(st, key, None, "/bin/sh -c #(nop) " + shown)

    # -- filesystem instructions --------------------------------------------------------
    @contextlib.contextmanager
    def mounted(self, image: Image | None) -> Iterator[tuple[Path, Path]]:
        """(root to write through, upper dir that becomes the layer)."""
        from engine.runtime import rootfs

        work = Path(tempfile.mkdtemp(prefix="step-", dir=self.b.work_dir))
        upper, ovl_work, merged = work / "upper", work / "work", work / "merged"
        upper.mkdir(mode=0o755)
        try:
            if image is None or not image.layers:
                yield upper, upper
                return
            rootfs.mount_overlay(image.layer_dirs(), upper, ovl_work, merged)
            try:
                yield merged, upper
            finally:
                rootfs.unmount(merged)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def workdir(self, st: _StageState, ins: Words) -> None:
        value = expand(ins.words[0], st.env_map(), self.df.escape_token, self.where(ins))
        path = posixpath.normpath(posixpath.join(st.config.get("WorkingDir") or "/", value))
        st.config["WorkingDir"] = path
        key = cache_key(st.image_id, "WORKDIR", path)
        if self._cached(st, key):
            return
        with self.mounted(st.image) as (root, upper):
            target = copier.dest_path(root, path)
            resolved = resolve_in(root, path)
            if resolved is None:
                target.mkdir(mode=0o755)
            elif not resolved.is_dir():
                raise BuildError(f"{self.where(ins)}: {path} is not a directory in the image")
            changed = any(upper.iterdir())
            self._commit(st, key, upper if changed else None, f"/bin/sh -c #(nop) WORKDIR {path}")

    def _network(self, ins: Command) -> str:
        value = ins.flag("network") or "default"
        if value == "default":
            return self.network_mode
        if value not in ("none", "host"):
            raise BuildError(f"{self.where(ins)}: --network={value}: only default, none and "
                             "host are supported")
        return value

    def _run_mounts(self, st: _StageState, ins: Command, stack: contextlib.ExitStack
                    ) -> tuple[list, list]:
        """(MountSpecs for the container, what of them goes into the cache key)."""
        from engine.runtime.containers import MountSpec

        specs: list = []
        keys: list = []
        env = st.env_map()
        for text in ins.flags.get("mount", []):
            m = parse_mount(expand(text, env, self.df.escape_token, self.where(ins)),
                            st.config.get("WorkingDir") or "/")
            if m.type == "tmpfs":
                specs.append(MountSpec(type="tmpfs", target=m.target, tmpfs_size=m.size))
                keys.append(("tmpfs", m.target, m.size))
            elif m.type == "cache":
                root = Path(self.engine.root) / "build" / "cache-mounts"
                source = prepare_cache_dir(str(root), m)
                specs.append(MountSpec(type="bind", source=source, target=m.target,
                                       read_only=m.read_only))
                keys.append(("cache", m.target, m.id, m.read_only))
            else:  # bind
                if m.from_:
                    image = self._from_image(m.from_, self.where(ins))
                    src_root = stack.enter_context(self._source_root(image))
                    keys_src = image.id if image else "scratch"
                else:
                    src_root = self.ctx.root
                    keys_src = None
                if src_root is None:
                    raise BuildError(f"{self.where(ins)}: --mount from={m.from_}: empty image")
                host = resolve_in(src_root, m.source or "/")
                if host is None or (not m.from_ and m.source and
                                    self.ctx.excluded(posixpath.normpath(m.source).lstrip("/"))):
                    raise BuildError(f"{self.where(ins)}: --mount: source {m.source or '/'} not "
                                     f"found in {m.from_ or 'the build context'}")
                if keys_src is None:
                    rel = str(host.relative_to(self.ctx.root)) if host != self.ctx.root else ""
                    keys_src = self.ctx.checksum(rel if rel != "." else "", host)
                if not m.read_only:  # writes go to a private copy, never to the source
                    tmp = Path(tempfile.mkdtemp(prefix="bind-", dir=self.b.work_dir))
                    stack.callback(shutil.rmtree, tmp, True)
                    copy_to = tmp / "src"
                    if host.is_dir():
                        shutil.copytree(host, copy_to, symlinks=True)
                    else:
                        shutil.copy2(host, copy_to)
                    host = copy_to
                specs.append(MountSpec(type="bind", source=str(host), target=m.target,
                                       read_only=m.read_only))
                keys.append(("bind", m.target, keys_src, m.read_only))
        return specs, keys

    def run_command(self, st: _StageState, ins: Command) -> None:
        with contextlib.ExitStack() as stack:
            self._run_command(st, ins, stack)

    def _run_command(self, st: _StageState, ins: Command, stack: contextlib.ExitStack) -> None:
        from engine.runtime.containers import ContainerSpec

        if st.image is None or not st.image.layers:
            raise BuildError(f"{self.where(ins)}: cannot RUN in an empty image (FROM scratch)")
        if ins.flag("security") not in ("", "sandbox"):
            raise BuildError(f"{self.where(ins)}: --security={ins.flag('security')} is not "
                             "supported")
        if ins.prepend_shell:
            argv = [*(st.config.get("Shell") or DEFAULT_SHELL), _heredoc_script(ins)]
        else:
            argv = list(ins.cmd)
        network = self._network(ins)
        mounts, mount_keys = self._run_mounts(st, ins, stack)
        env_keys = {e.partition("=")[0] for e in st.env_list()}
        arg_env = sorted((k, v) for k, v in st.args.items() if k not in env_keys)
        arg_env += sorted((k, v) for k, v in self.build_args.items()
                          if k in BUILTIN_ARGS and k not in st.args and k not in env_keys)
        command = " ".join(argv)
        created_by = command
        if arg_env:
            created_by = f"|{len(arg_env)} " + " ".join(f"{k}={v}" for k, v in arg_env) + \
                " " + command
        key = cache_key(st.image_id, "RUN", argv, arg_env, network, mount_keys)
        if self._cached(st, key):
            return
        containers = self.engine.containers
        spec = ContainerSpec(image=st.image.id, cmd=argv, entrypoint=[],
                             env=[f"{k}={v}" for k, v in arg_env],
                             working_dir=st.config.get("WorkingDir") or "",
                             user=st.config.get("User") or "",
                             network_mode=network, mounts=mounts,
                             labels={"io.estiba.build": self.build_id})
        try:
            c = containers.create(spec)
        except EngineError as exc:
            raise BuildError(f"{self.where(ins)}: {exc}") from None
        self.out(f" ---> Running in {c.id[:12]}\n")
        try:
            try:
                containers.start(c.id)
                for entry in containers.logs(c.id, follow=True):
                    self.out(entry.data.decode("utf-8", "replace"))
                code = containers.wait(c.id)
            except EngineError as exc:
                code = -1
                reason = str(exc)
            else:
                reason = ""
            if code != 0:
                msg = f"The command '{command}' returned a non-zero code: {code}"
                if reason:
                    msg = f"The command '{command}' could not run: {reason}"
                raise StepFailed(msg, f"Step {self.step}/{self.total}", command, code)
            upper = containers.upper_dir(c.id)
            _drop_mount_points(upper, st.image, [m.target for m in mounts])
            self._commit(st, key, upper, created_by, announce=False)
        finally:
            with contextlib.suppress(EngineError):
                containers.remove(c.id, force=True, volumes=True)
            self.out(f"Removing intermediate container {c.id[:12]}\n")
        self.out(f" ---> {st.image.short_id}\n")

    def copy(self, st: _StageState, ins: Copy) -> None:
        env = st.env_map()
        esc = self.df.escape_token
        where = self.where(ins)
        dest = expand(ins.dest, env, esc, where)
        chown = expand(ins.flag("chown"), env, esc, where)
        chmod_text = expand(ins.flag("chmod"), env, esc, where)
        chmod = None
        if chmod_text:
            if not re.fullmatch(r"[0-7]{1,4}", chmod_text):
                raise BuildError(f"{where}: invalid --chmod={chmod_text}: octal mode expected")
            chmod = int(chmod_text, 8)
        src_from = expand(ins.flag("from"), env, esc, where) if ins.keyword == "COPY" else ""
        parents = ins.bool_flag("parents")
        excludes = PatternMatcher([expand(x, env, esc, where) for x in ins.flags.get("exclude",
                                                                                      [])])
        heredocs = {h.name: h for h in ins.heredocs}
        sources: list[tuple[str, Any]] = []   # (kind, payload)
        key_parts: list[Any] = []
        from_image = None
        for raw in ins.sources:
            doc = parse_heredoc(raw) if raw.startswith(("<<", "0<<", "1<<")) or \
                re.match(r"^\d*<<", raw) else None
            if doc is not None and doc.name in heredocs:
                h = heredocs[doc.name]
                content = h.content
                if h.chomp:
                    from engine.build.dockerfile import chomp_heredoc_content

                    content = chomp_heredoc_content(content)
                if h.expand:
                    try:
                        content = Lex(esc, skip_process_quotes=True).process_word(content, env)
                    except ShellError as exc:
                        raise BuildError(f"{where}: heredoc {h.name}: {exc}") from None
                sources.append(("heredoc", (h.name, content)))
                key_parts.append(("heredoc", h.name, content))
                continue
            src = expand(raw, env, esc, where)
            if ins.keyword == "ADD" and re.match(r"^https?://", src):
                sources.append(("url", src))
                key_parts.append(("url", src, ins.flag("checksum")))
                continue
            if src_from:
                from_image = from_image or self._from_image(src_from, where)
                sources.append(("image", src))
                key_parts.append(("image", from_image.id if from_image else "scratch", src))
                continue
            for rel, host in self.ctx.sources(src):
                sources.append(("context", (rel, host)))
                key_parts.append(("context", rel, self.ctx.checksum(rel, host)))
        dest_is_dir = dest.endswith("/") or len(sources) > 1 or dest in (".", "/")
        if len(sources) > 1 and not dest.endswith("/"):
            raise BuildError(f"{where}: When using {ins.keyword} with more than one source "
                             "file, the destination must be a directory and end with a /")
        if not dest.startswith("/"):
            dest = posixpath.join(st.config.get("WorkingDir") or "/", dest)
        flags = sorted((k, v) for k, v in ins.flags.items())
        key = cache_key(st.image_id, ins.keyword, flags, chown, dest, key_parts)
        shown = f"{ins.keyword} " + " ".join(f"{k}:{_short(str(p))}" for k, *p in key_parts) + \
            f" in {dest} "
        if self._cached(st, key):
            return
        with self.mounted(st.image) as (root, upper), self._source_root(from_image) as src_root:
            owner = self._owner(root, chown, where)
            for kind, payload in sources:
                if kind == "heredoc":
                    name, content = payload
                    target = self._file_target(root, dest, name, dest_is_dir)
                    copier.write_file(target, content.encode("utf-8", "surrogateescape"),
                                      owner, chmod if chmod is not None else 0o644)
                elif kind == "url":
                    self._download(root, payload, dest, dest_is_dir, owner, chmod,
                                   ins.flag("checksum"), where)
                elif kind == "image":
                    clean = posixpath.normpath("/" + payload).lstrip("/")
                    if has_wildcards(clean):
                        found = glob_in(src_root, clean) if src_root else []
                    else:
                        host = resolve_in(src_root, clean) if src_root else None
                        found = [(clean, host)] if host is not None else []
                    if not found:
                        raise BuildError(f"{where}: COPY failed: stat {payload}: file does not "
                                         f"exist in {src_from}")
                    many = dest_is_dir or len(found) > 1
                    for rel, host in found:
                        self._copy_host(root, rel, host, dest, many, owner, chmod,
                                        parents, excludes, entries=None)
                else:
                    rel, host = payload
                    if ins.keyword == "ADD" and host.is_file():
                        opener = copier.archive_opener(host)
                        if opener is not None:
                            target = resolve_in(root, dest)
                            if target is None:
                                target = copier.dest_path(root, dest)
                                target.mkdir(mode=0o755)
                            copier.add_archive(opener, root, target, owner, self.b.work_dir)
                            continue
                    self._copy_host(root, rel, host, dest, dest_is_dir, owner, chmod,
                                    parents, excludes,
                                    entries=self.ctx.walk_below(rel, host) if host.is_dir()
                                    else None)
            self._commit(st, key, upper, "/bin/sh -c #(nop) " + shown)

    def _from_image(self, name: str, where: str) -> Image | None:
        if name.lower() in self.stage_images:
            return self.stage_images[name.lower()]
        try:
            return self.engine.images.resolve(name)
        except ImageNotFound:
            try:
                return self.engine.registry.pull(name)
            except EngineError as exc:
                raise BuildError(f"{where}: COPY --from={name}: no such stage or image: "
                                 f"{exc}") from None

    @contextlib.contextmanager
    def _source_root(self, image: Image | None) -> Iterator[Path | None]:
        if image is None:
            yield None
            return
        from engine.runtime import rootfs

        work = Path(tempfile.mkdtemp(prefix="from-", dir=self.b.work_dir))
        try:
            lowers = image.layer_dirs()
            if not lowers:
                yield work
                return
            empty = work / "empty"
            empty.mkdir()
            target = work / "merged"
            target.mkdir()
            opts = "lowerdir=" + ":".join(str(p) for p in [*reversed(lowers), empty])
            rootfs_mount(opts, target)
            try:
                yield target
            finally:
                rootfs.unmount(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _owner(self, root: Path, chown: str, where: str) -> copier.Owner:
        if not chown:
            return copier.Owner()
        from engine.runtime.spec import resolve_user

        user, _, group = chown.partition(":")
        try:
            resolved = resolve_user(root, chown if group else user)["user"]
        except EngineError as exc:
            raise BuildError(f"{where}: --chown={chown}: {exc}") from None
        uid = int(resolved["uid"])
        gid = int(resolved["gid"]) if group else uid
        if not group and not user.isdigit():
            gid = int(resolved["gid"])
        return copier.Owner(uid, gid)

    @staticmethod
    def _file_target(root: Path, dest: str, name: str, dest_is_dir: bool) -> Path:
        existing = resolve_in(root, dest)
        if dest_is_dir or (existing is not None and existing.is_dir()):
            base = copier.dest_path(root, dest.rstrip("/") + "/" + name)
            base.parent.mkdir(parents=True, exist_ok=True)
            return base
        return copier.dest_path(root, dest)

    def _copy_host(self, root: Path, rel: str, host: Path, dest: str, dest_is_dir: bool,
                   owner: copier.Owner, chmod: int | None, parents: bool,
                   excludes: PatternMatcher, entries) -> None:
        if parents:
            dest = posixpath.join(dest, posixpath.dirname(rel))
            dest_is_dir = True
        st = os.stat(host)
        if host.is_dir():
            target = resolve_in(root, dest)
            if target is None:
                target = copier.dest_path(root, dest)
                target.mkdir(mode=0o755)
                os.lchown(target, owner.uid, owner.gid)
            elif not target.is_dir():
                raise BuildError(f"cannot copy directory {rel} to {dest}: not a directory")
            if parents and rel:
                target = target / posixpath.basename(rel)
                copier.ensure_dir(target, st, owner, chmod)
            if entries is None:
                entries = _walk_plain(host)
            if excludes.patterns:
                entries = ((r, h, s) for r, h, s in entries
                           if not excludes.matches_or_parent_matches(r))
            copier.copy_tree(entries, root, target, owner, chmod)
            return
        if excludes.patterns and excludes.matches_or_parent_matches(rel):
            return
        target = self._file_target(root, dest, posixpath.basename(rel) or host.name,
                                   dest_is_dir)
        copier.copy_entry(host, st, target, owner, chmod)

    def _download(self, root: Path, url: str, dest: str, dest_is_dir: bool,
                  owner: copier.Owner, chmod: int | None, checksum: str, where: str) -> None:
        """``ADD <url>``: streamed to the file (never whole in memory), at most
        ``MAX_ADD_URL`` bytes, its ``--checksum`` checked before the step succeeds."""
        name = posixpath.basename(urllib.parse.urlparse(url).path) or "index.html"
        target = self._file_target(root, dest, name, dest_is_dir)
        algo, _, want = checksum.partition(":")
        if checksum and (algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", want)):
            raise BuildError(f"{where}: ADD --checksum={checksum}: give sha256:<64 hex digits>")
        if not self.host_urls:
            _refuse_host_url(url, where)
        digest = hashlib.sha256()

        def chunks() -> Iterator[bytes]:
            size = 0
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    while chunk := resp.read(1 << 20):
                        size += len(chunk)
                        if size > MAX_ADD_URL:
                            raise BuildError(f"{where}: ADD {url}: larger than {MAX_ADD_URL} "
                                             "bytes")
                        digest.update(chunk)
                        yield chunk
            except OSError as exc:
                raise BuildError(f"{where}: ADD failed: cannot download {url}: {exc}") from None
            if checksum and digest.hexdigest() != want:
                raise BuildError(f"{where}: ADD {url}: checksum mismatch (want {checksum}, "
                                 f"got sha256:{digest.hexdigest()})")

        copier.write_stream(target, chunks(), owner, chmod if chmod is not None else 0o600)


def _refuse_host_url(url: str, where: str) -> None:
    """An ``ADD <url>`` must not lead to this host or its private networks.

    Every address the name resolves to is checked (loopback, private, link-local,
    reserved and unspecified ones are refused). The download resolves the name
    again, so a name that changes its answer in between is not stopped by this.
    """
    import ipaddress
    import socket

    parsed = urllib.parse.urlparse(url)
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        infos = socket.getaddrinfo(parsed.hostname or "", port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError) as exc:
        raise BuildError(f"{where}: ADD failed: cannot resolve {parsed.hostname!r}: {exc}") \
            from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if (address.is_loopback or address.is_private or address.is_link_local
                or address.is_reserved or address.is_unspecified or address.is_multicast):
            raise BuildError(f"{where}: ADD {url}: {address} is this host or a private "
                             "network; only an administrator's build may fetch from there")


def _heredoc_script(ins: Command) -> str:
    """The shell text of a RUN, with its heredocs put back for the shell to read.

    ``RUN <<EOF`` alone runs the body as the script (a ``#!`` body as its own
    program); otherwise the heredocs feed the command as the shell would.
    """
    from engine.build.dockerfile import chomp_heredoc_content

    text = ins.cmd[0]
    if not ins.heredocs:
        return text
    if len(ins.heredocs) == 1 and parse_heredoc(text.strip()) is not None:
        doc = ins.heredocs[0]
        body = chomp_heredoc_content(doc.content) if doc.chomp else doc.content
        if not body.startswith("#!"):
            return body
        marker = "ESTIBA_HEREDOC_" + hashlib.sha256(body.encode("utf-8", "replace")
                                                     ).hexdigest()[:12]
        return (f'f=$(mktemp) && cat > "$f" <<\'{marker}\'\n{body}{marker}\n'
                'chmod +x "$f" && "$f"; rc=$?; rm -f "$f"; exit $rc')
    return text + "\n" + "".join(h.content + h.name + "\n" for h in ins.heredocs)


def rootfs_mount(options: str, target: Path) -> None:
    """A read-only overlay (lower dirs only) to read another stage's files."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    rc = libc.mount(b"overlay", str(target).encode(), b"overlay", 1, options.encode())
    if rc != 0:
        err = ctypes.get_errno()
        raise BuildError(f"mounting a source image at {target} failed: {os.strerror(err)}")


def _walk_plain(host: Path):
    for dirpath, dirnames, filenames in os.walk(host):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            p = Path(dirpath) / name
            yield str(p.relative_to(host)), p, os.lstat(p)


def _drop_mount_points(upper: Path, parent: Image | None, targets: list[str] = ()) -> None:
    """Remove what the runtime made only to mount on: empty /etc/hosts & co, and the
    empty directories (with their new empty parents) of ``RUN --mount`` targets."""
    def in_parent(rel: str) -> bool:
        return parent is not None and any(os.path.lexists(d / rel) for d in parent.layer_dirs())

    for rel in _MOUNT_POINTS:
        path = upper / rel
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_size == 0 and os.path.isfile(path) and not in_parent(rel):
            path.unlink()
    for target in targets:
        rel = posixpath.normpath(target).lstrip("/")
        path = upper / rel
        if rel and path.is_file() and not path.is_symlink() and path.stat().st_size == 0 \
                and not in_parent(rel):
            path.unlink()
            rel = posixpath.dirname(rel)
        while rel and rel != ".":
            path = upper / rel
            if in_parent(rel) or not path.is_dir() or path.is_symlink() or any(path.iterdir()):
                break
            path.rmdir()
            rel = posixpath.dirname(rel)


def _expand_ports(spec: str, where: str) -> list[str]:
    port, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    lo, _, hi = port.partition("-")
    try:
        start, end = int(lo), int(hi or lo)
    except ValueError:
        raise BuildError(f"{where}: invalid port {spec!r}") from None
    if not (0 < start <= end <= 65535):
        raise BuildError(f"{where}: invalid port range {spec!r}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def _json_list(values: list[str]) -> str:
    import json

    return json.dumps(values)


def _short(text: str) -> str:
    return text if len(text) < 80 else text[:77] + "..."


class Builder:
    """``engine.builder``: Dockerfile builds over the engine's images and containers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.work_dir = Path(engine.root) / "build" / "tmp"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.cache = BuildCache(Path(engine.root) / "build" / "cache.json")

    def build(self, context: Path | str | BinaryIO, dockerfile: str = "Dockerfile",
              tags: list[str] | tuple[str, ...] = (), build_args: dict[str, str] | None = None,
              target: str | None = None, no_cache: bool = False,
              labels: dict[str, str] | None = None,
              progress: Callable[[dict], None] | None = None,
              network_mode: str = "none", host_urls: bool = True) -> Image:
        """Build ``dockerfile`` in ``context`` (a directory or a tar stream) into an image.

        ``host_urls=False`` refuses an ``ADD <url>`` whose host is this machine or its
        private networks: the engine fetches it from the host's network, where a
        builder who is not an administrator must not reach loopback services.
        """
        from engine.images import reference as refs

        build_args = dict(build_args or {})
        parsed_tags = []
        for tag in tags:
            try:
                parsed_tags.append(refs.parse(tag))
            except EngineError as exc:
                raise BuildError(f"invalid tag {tag!r}: {exc}") from None
        ctx = BuildContext.open(context, dockerfile, self.work_dir)
        try:
            data = ctx.read_dockerfile(dockerfile)
            parsed = parse(data, filename=dockerfile)
            df = build_dockerfile(parsed, dockerfile)
            run = _Run(self, ctx, df, dockerfile, build_args, no_cache, network_mode, progress,
                       host_urls)
            for warning in parsed.warnings:
                run.out(f"[WARNING]: {warning}\n")
            try:
                image = run.run(target)
                if labels:
                    st = _StageState(stage=df.stages[-1], image=image,
                                     config=copy.deepcopy(image.runtime_config if image else {}))
                    merged = dict(st.config.get("Labels") or {})
                    merged.update(labels)
                    st.config["Labels"] = merged
                    key = cache_key(st.image_id, "LABELS", sorted(labels.items()))
                    if not (not no_cache and run._cached(st, key)):
                        run._commit(st, key, None, "/bin/sh -c #(nop)  LABEL " + " ".join(
                            f"{k}={v}" for k, v in sorted(labels.items())))
                    image = st.image
                if image is None:
                    raise BuildError("the build produced no image (an empty FROM scratch stage)")
            except BuildError as exc:
                if progress is not None:
                    detail: dict[str, Any] = {"message": str(exc)}
                    if isinstance(exc, StepFailed):
                        detail["code"] = exc.exit_code
                    progress({"error": str(exc), "errorDetail": detail})
                raise
            unused = sorted(k for k in build_args if k not in run.used_args
                            and k not in BUILTIN_ARGS)
            if unused:
                run.out(f"[Warning] One or more build-args [{' '.join(unused)}] were not "
                        "consumed\n")
            if progress is not None:  # Docker's line that tells a client the image's ID
                progress({"aux": {"ID": image.id}})
            run.out(f"Successfully built {image.short_id}\n")
            for ref in parsed_tags:
                self.engine.images.tag(image.id, str(ref))
                run.out(f"Successfully tagged {ref.familiar()}\n")
            return self.engine.images.resolve(image.id)
        finally:
            ctx.close()
