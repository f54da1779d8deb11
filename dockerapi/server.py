"""Run the API: ``python -m dockerapi.server`` (the socket, and TCP with tokens).

One asyncio loop serves both listeners (http.py explains why this is not
daphne). Django is set up first (``django.setup()``) so the token model and
``estiba.permissions`` work; the ORM and the gateway are blocking, so handlers
call them through ``asyncio.to_thread``. ``--local`` swaps the gateway for an
engine inside this process (one host, no Celery) and may run without Django.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import grp
import logging
import os
import signal
from pathlib import Path

from dockerapi.http import serve_connection
from estiba.gil import favor_waiting_threads

DEFAULT_SOCKET = "/run/estiba/estiba.sock"
DEFAULT_TCP = "127.0.0.1:2375"


def _setup_django() -> bool:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "estiba.settings")
    try:
        import django

        django.setup()
    except Exception as exc:
        logging.getLogger("estiba.api").warning("running without Django: %s", exc)
        return False
    return True


def build_api(local: bool, use_django: bool = True):
    from dockerapi.app import Api
    from dockerapi.policy import DjangoPolicy, RootPolicy

    have_django = _setup_django() if use_django else False
    if local:
        from dockerapi.backend import LocalBackend
        from engine import Engine

        backend = LocalBackend(Engine())
    else:
        if not have_django:
            raise SystemExit("the gateway needs Django settings (or use --local)")
        from dockerapi.gateway_backend import GatewayBackend

        backend = GatewayBackend()
    policy = DjangoPolicy() if have_django else RootPolicy()
    return Api(backend, policy)


async def serve(api, socket_path: str | None, tcp: str | None, socket_mode: int = 0o660,
                socket_group: str | None = None, ready: asyncio.Event | None = None) -> None:
    servers = []
    if socket_path:
        path = Path(socket_path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old = os.umask(0o177)
        try:
            srv = await asyncio.start_unix_server(
                lambda r, w: serve_connection(r, w, api, "unix"), path=str(path),
                limit=1024 * 1024)
        finally:
            os.umask(old)
        if socket_group:
            os.chown(path, 0, grp.getgrnam(socket_group).gr_gid)
        os.chmod(path, socket_mode)
        servers.append(srv)
    if tcp:
        host, _, port = tcp.rpartition(":")

        def on_tcp(r, w):
            peer = w.get_extra_info("peername")
            return serve_connection(r, w, api, f"tcp:{peer[0] if peer else '?'}")

        servers.append(await asyncio.start_server(on_tcp, host or "127.0.0.1", int(port),
                                                  limit=1024 * 1024, reuse_address=True))
    if not servers:
        raise SystemExit("nothing to listen on: give --socket and/or --tcp")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    print(f"estiba API listening on {socket_path or '-'} and {tcp or '-'}", flush=True)
    await stop.wait()
    for srv in servers:
        srv.close()
    if socket_path:
        with contextlib.suppress(FileNotFoundError):
            Path(socket_path).unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="estiba-api",
                                     description="estiba's Docker-compatible REST API")
    parser.add_argument("--socket", default=os.environ.get("ESTIBA_API_SOCKET", DEFAULT_SOCKET),
                        help="UNIX socket path ('' for none); root's, like docker.sock")
    parser.add_argument("--tcp", default=os.environ.get("ESTIBA_API_TCP", DEFAULT_TCP),
                        help="HOST:PORT for token-authenticated TCP ('' for none)")
    parser.add_argument("--socket-mode", default="660", help="octal mode of the socket")
    parser.add_argument("--socket-group", default=None, help="group owning the socket")
    parser.add_argument("--local", action="store_true",
                        help="run the engine in this process instead of through the workers")
    parser.add_argument("--no-django", action="store_true",
                        help="(with --local) no user database: socket only, caller is root")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    favor_waiting_threads()  # handlers hand every engine call to a thread
    api = build_api(args.local, use_django=not args.no_django)
    asyncio.run(serve(api, args.socket or None, args.tcp or None,
                      int(args.socket_mode, 8), args.socket_group))


if __name__ == "__main__":
    main()
