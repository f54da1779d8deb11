"""Bench: the dashboard — how fast a container's death reaches the browser, and the list.

Two figures, through the real path a person takes (daphne, Channels, the Celery
worker, the engine, Debian's Chromium):

* ``die -> DOM``: 50 containers owned by a user (created and started through the
  dashboard's own "Run a container" form view, ``sh -c 'sleep 1000'``, network
  ``none``) are shown on that user's containers list in headless Chromium. Each
  container's process is killed in turn with ``kill -9`` of its host PID — a
  death behind estiba's back, seen only by the container's supervisor. The start
  is the ``die`` event's ``timeNano`` in the engine's events journal; the end is
  ``performance.timeOrigin + performance.now()`` when a MutationObserver in the
  page sees that container's row show the state ``exited``. Both are wall-clock
  epoch ms of the same machine. Median and p95 over 50. Target: p95 under 100 ms.
  ``--kill engine`` kills through the dashboard's kill action (the worker)
  instead; the start is still the ``die`` event.
* ``list``: server time of ``GET /containers/`` for the user with 500 containers
  (created, not started), median over 20 rounds, measured in-process with
  Django's test Client on the same settings and database (no network, no
  daphne). Time to first byte over HTTP from daphne is printed beside it.
  Target: under 150 ms.

Two faults of the system show up while it runs; the bench says so each time and
carries on: rows of containers made through the dashboard that lose their owner
(a race in ``estiba.projection.upsert_container``; the bench gives them back), and
the dashboard calling the worker offline when one reconcile pass outlasts the
15 s heartbeat (the engine's ``containers.list`` is quadratic in the number of
containers; the bench waits for the next beat and retries). ``--profile`` prints
where one list GET and one engine list spend their time.

The bench starts everything in a private directory under /var/tmp (redis-server,
a migrated SQLite database, a Celery worker, daphne; the engine root has busybox
imported), with its own ESTIBA_* settings and ESTIBA_PREFIX, and removes it all
at the end: containers, processes, mounts, files.

Usage (root): ``.venv/bin/python bench/bench_dashboard.py [-n 50] [--list 500] [--rounds 20]
[--kill pid|engine] [--only die|list] [--profile]``
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from benchlib import free_port, start_redis_and_db, stop_all, tail, take_down, wait_for  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: Installed in the list page: the wall-clock time a row first shows "exited",
#: and the time the projection sent the message (``t``, for a breakdown).
OBSERVER = """() => {
  window.__exited = {}; window.__sent = {};
  const rows = document.getElementById("rows");
  const check = () => {
    const t = performance.timeOrigin + performance.now();
    for (const tr of rows.querySelectorAll("tr[data-id]")) {
      const st = tr.querySelector("[data-field=state]");
      if (!(tr.dataset.id in window.__exited) && tr.dataset.state === "exited"
          && st && st.textContent.trim() === "exited") window.__exited[tr.dataset.id] = t;
    }
  };
  new MutationObserver(check).observe(rows, {subtree: true, childList: true,
    attributes: true, characterData: true});
  document.addEventListener("estiba:event", (e) => {
    const ev = e.detail;
    if (ev.kind === "container" && ev.state === "exited" && !(ev.id in window.__sent))
      window.__sent[ev.id] = ev.t * 1000;
  });
}"""


def figures(samples_ms: list[float]) -> str:
    s = sorted(samples_ms)
    p95 = statistics.quantiles(s, n=20, method="inclusive")[18] if len(s) >= 2 else s[0]
    return (f"median {statistics.median(s):7.1f} ms   p95 {p95:7.1f}   "
            f"min {s[0]:6.1f}   max {s[-1]:7.1f}   (n={len(s)})")


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def create_containers(client, n: int, prefix: str, run: bool) -> list[str]:
    """Through the dashboard's "Run a container" view; returns the engine ids."""
    from estiba import gateway

    ids, offline = [], 0
    for i in range(n):
        form = {"image": "busybox:latest", "command": "sh -c 'sleep 1000'",
                "name": f"{prefix}-{i:03d}", "network": "none", "restart_policy": "no"}
        if run:
            form["start"] = "on"
        for _attempt in range(5):
            answer = client.post("/containers/new/", form)
            location = answer.get("Location", "")
            if answer.status_code == 302 and not location.rstrip("/").endswith("containers"):
                break
            html = answer.content.decode(errors="replace")
            said = " / ".join(s.strip() for s in re.findall(r'role="alert">(.*?)</', html, re.S))
            if "no running estiba worker" not in said:
                raise SystemExit(f"creating {form['name']} failed ({answer.status_code}): "
                                 + (said or html[-1500:]))
            # The worker's heartbeat lapsed (see reconcile below): wait for the next beat.
            offline += 1
            wait_for(gateway.host_alive, "the worker's heartbeat", timeout=120)
        else:
            raise SystemExit(f"creating {form['name']}: the worker stays offline")
        ids.append(location.rstrip("/").rsplit("/", 1)[-1])
    if offline:
        print(f"  ! the dashboard said the worker was offline {offline} time(s) while "
              f"{n} containers were made (heartbeat lapsed); retried")
    return ids


def time_reconcile(engine, what: str, profile: bool = False) -> None:
    """One pass of the worker's container reconcile, in this process (it runs every 2 s)."""
    from django.conf import settings

    from estiba import projection

    t0 = time.perf_counter()
    projection.reconcile_containers(engine, settings.ESTIBA_HOSTNAME)
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(engine.containers.list, all=True)
        print("profile of the engine's containers.list(all=True), by own time:")
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    t1 = time.perf_counter()
    engine.containers.list(all=True)
    t2 = time.perf_counter()
    print(f"  one reconcile of the containers ({what}): {t1 - t0:.2f} s, of which the engine's "
          f"list {t2 - t1:.2f} s; the worker beats once a pass, the beat lasts "
          f"{settings.ESTIBA_HEARTBEAT_TIMEOUT} s")


def reown(ids: list[str], user) -> None:
    """Say how many rows lost their owner after creation, and give them back.

    A known race (estiba/projection.py): the worker's ``upsert_container`` for the
    ``create`` event may load the row before ``record_owner`` sets its owner and then
    ``save()`` every field, owner ``None`` included; such a container vanishes from
    its user's list. The bench reports it and restores the owners so it can measure.
    """
    from containers_app.models import Container

    lost = Container.objects.filter(engine_id__in=ids).exclude(owner=user)
    if n := lost.count():
        print(f"  ! {n} of {len(ids)} containers made through the dashboard lost their owner "
              "(projection race); owners restored for the bench")
        lost.update(owner=user)


def die_latency(args, url: str, user: tuple[str, str], user_row, engine, client) -> None:
    from playwright.sync_api import sync_playwright

    from containers_app.models import Container

    ids = create_containers(client, args.n, "die", run=True)
    wait_for(lambda: Container.objects.filter(engine_id__in=ids, state="running").count()
             == len(ids), f"{len(ids)} running rows in the projection", timeout=60)
    time.sleep(1)  # the worker's event backlog settles
    reown(ids, user_row)
    samples, worker_ms, browser_ms = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_context(locale="en-US").new_page()
            page.set_default_timeout(15000)
            page.goto(f"{url}/login/")
            page.fill("#id_username", user[0])
            page.fill("#id_password", user[1])
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/containers/")
            page.wait_for_selector("#live.on")  # the event feed's websocket is open
            shown = page.locator("#rows tr[data-state=running]").count()
            if shown != len(ids):
                states = page.evaluate("Array.from(document.querySelectorAll('#rows tr'))"
                                       ".map(tr => tr.dataset.state)")
                db = list(Container.objects.filter(engine_id__in=ids)
                          .values_list("state", "owner_id"))
                live = [engine.containers.get(cid).state.status for cid in ids]
                raise SystemExit(f"the list shows {shown} running rows, not {len(ids)}:\n"
                                 f"page {states}\ndb {db}\nengine {live}")
            # The page's clock against this process's (both should read the same wall
            # clock): the reading with the shortest round trip of a few.
            readings = []
            for _ in range(7):
                t0 = time.time() * 1000
                t_page = page.evaluate("performance.timeOrigin + performance.now()")
                t1 = time.time() * 1000
                readings.append((t1 - t0, t_page - (t0 + t1) / 2))
            skew = min(readings)[1]
            page.evaluate(OBSERVER)
            for cid in ids:
                since = time.time_ns()
                if args.kill == "pid":
                    os.kill(engine.containers.get(cid).pid, signal.SIGKILL)
                else:
                    answer = client.post(f"/containers/{cid}/action/kill/",
                                         HTTP_HX_REQUEST="true")
                    assert answer.status_code == 204, answer.status_code
                page.wait_for_function("id => id in window.__exited", arg=cid, timeout=20000)
                dom = page.evaluate("id => [window.__exited[id], window.__sent[id]]", cid)
                dies = [e for e in engine.events.history(since_nano=since)
                        if e.type == "container" and e.action == "die" and e.actor_id == cid]
                if not dies:
                    raise SystemExit(f"no die event in the journal for {cid[:12]}")
                die_ms = dies[0].time_nano / 1e6
                samples.append(dom[0] - die_ms)
                if dom[1] is not None:
                    worker_ms.append(dom[1] - die_ms)
                    browser_ms.append(dom[0] - dom[1])
                time.sleep(args.pause)
            ARTIFACTS = REPO / "test-artifacts"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "bench-dashboard-exited.png"), full_page=True)
        finally:
            browser.close()
    how = "kill -9 of the host PID" if args.kill == "pid" else "the dashboard's kill action"
    print(f"die -> DOM ({len(ids)} containers, {how}; page clock skew {skew:+.1f} ms)")
    print(f"  die event -> row shows exited   {figures(samples)}   target p95 < 100 ms")
    if worker_ms:
        print(f"    die event -> notify sent    {figures(worker_ms)}")
        print(f"    notify sent -> DOM          {figures(browser_ms)}")
    for cid in ids:
        client.post(f"/containers/{cid}/action/remove/", HTTP_HX_REQUEST="true")
    wait_for(lambda: not Container.objects.filter(engine_id__in=ids).exists(),
             "the projection to drop the removed containers", timeout=60)


def list_time(args, port: int, user_row, engine, client, worker_pid: int) -> None:
    from containers_app.models import Container

    ids = create_containers(client, args.list, "list", run=False)
    wait_for(lambda: Container.objects.filter(engine_id__in=ids).count() == len(ids),
             f"{len(ids)} rows in the projection", timeout=60)
    time.sleep(1)
    reown(ids, user_row)
    time_reconcile(engine, f"{len(ids)} containers", args.profile)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    def rounds() -> tuple[list[float], list[float], list[float], int]:
        server, ttfb, full = [], [], []
        for i in range(args.rounds + 3):
            t0 = time.perf_counter()
            answer = client.get("/containers/")
            t1 = time.perf_counter()
            assert answer.status_code == 200, answer.status_code
            rows = answer.content.count(b"<tr data-id=")
            assert rows == len(ids), rows
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            t2 = time.perf_counter()
            conn.request("GET", "/containers/", headers={"Cookie": cookie})
            resp = conn.getresponse()  # returns once the status line and headers are in
            t3 = time.perf_counter()
            body = resp.read()
            t4 = time.perf_counter()
            conn.close()
            assert resp.status == 200 and body.count(b"<tr data-id=") == len(ids), resp.status
            if i >= 3:  # the first rounds warm caches, templates and connections
                server.append((t1 - t0) * 1000)
                ttfb.append((t3 - t2) * 1000)
                full.append((t4 - t2) * 1000)
        return server, ttfb, full, len(answer.content)

    server, ttfb, full, size = rounds()
    # The same with the worker stopped (SIGSTOP): the list reads only the projection,
    # so this is the view alone, without the worker's reconcile competing for the CPU.
    os.kill(worker_pid, signal.SIGSTOP)
    try:
        quiet, quiet_ttfb, _full, _size = rounds()
    finally:
        os.kill(worker_pid, signal.SIGCONT)
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(client.get, "/containers/")
        print("profile of one GET /containers/ (in-process), by own time:")
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    print(f"list GET /containers/ ({len(ids)} containers, {size // 1024} KiB)")
    print(f"  server time (test Client)       {figures(server)}   target < 150 ms")
    print(f"  daphne, time to first byte      {figures(ttfb)}")
    print(f"  daphne, whole response          {figures(full)}")
    print("  with the worker stopped (SIGSTOP) meanwhile:")
    print(f"  server time (test Client)       {figures(quiet)}   target < 150 ms")
    print(f"  daphne, time to first byte      {figures(quiet_ttfb)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="containers killed (die -> DOM)")
    parser.add_argument("--list", type=int, default=500, help="containers in the list")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the list")
    parser.add_argument("--kill", choices=["pid", "engine"], default="pid")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between kills")
    parser.add_argument("--only", choices=["die", "list"], help="measure one figure only")
    parser.add_argument("--profile", action="store_true", help="profile one list GET")
    parser.add_argument("--reconcile", default="2",
                        help="the worker's reconcile interval, seconds (the default's 2)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the engine runs real containers")
    if not Path(CHROMIUM).exists():
        raise SystemExit("Debian's chromium is not installed (apt-get install chromium)")

    base = Path(tempfile.mkdtemp(prefix="estiba-bench-dash-", dir="/var/tmp"))
    token = uuid.uuid4().hex[:4]
    port = free_port()
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="estiba.settings", PYTHONPATH=str(REPO),
               ESTIBA_ROOT=str(base / "root"), ESTIBA_RUN_DIR=str(base / "run"),
               ESTIBA_PREFIX=f"eb{token}", ESTIBA_HOSTNAME=f"bench-{token}",
               ESTIBA_SQLITE_PATH=str(base / "db.sqlite3"), ESTIBA_STATE_DIR=str(base),
               ESTIBA_SECRET_KEY="bench-" + uuid.uuid4().hex,
               REDIS_URL=f"redis://127.0.0.1:{port}/0", ESTIBA_RECONCILE_INTERVAL=args.reconcile)
    for name in ("ESTIBA_DEBUG", "DATABASE_URL"):
        env.pop(name, None)
    procs: list[subprocess.Popen] = []
    engine = None
    try:
        from engine import Engine, EngineConfig
        from engine.images.busybox import ensure_busybox

        engine = Engine(config=EngineConfig(root=base / "root", run_dir=base / "run",
                                            prefix=env["ESTIBA_PREFIX"]))
        ensure_busybox(engine.images)
        r = start_redis_and_db(procs, port, base, env)
        log = base / "worker.log"
        procs.append(start(
            [sys.executable, "-m", "celery", "-A", "estiba", "worker", "-P", "threads",
             "-c", "16", "-Q", f"host.{env['ESTIBA_HOSTNAME']}", "-n",
             f"bench@{env['ESTIBA_HOSTNAME']}", "--without-gossip", "--without-mingle",
             "-l", "warning"], env, log))
        wait_for(lambda: r.exists(f"estiba:host:{env['ESTIBA_HOSTNAME']}:alive"),
                 "the worker", procs[-1], log=log)
        web_port = free_port()
        log = base / "daphne.log"
        procs.append(start([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p",
                            str(web_port), "estiba.asgi:application"], env, log))
        wait_for(lambda: socket.create_connection(("127.0.0.1", web_port), timeout=0.2),
                 "daphne", procs[-1], log=log)

        # This process: the same settings, database and Redis as the worker and daphne.
        os.environ.update(env)
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"  # Playwright's sync API runs a loop
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.test import Client

        password = "pw-" + uuid.uuid4().hex[:10]
        user = get_user_model().objects.create_user("bench", password=password)
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True)
        print(f"estiba dashboard bench: daphne + Celery worker + {version.stdout.strip()}")
        if args.only != "list":
            die_latency(args, f"http://127.0.0.1:{web_port}", ("bench", password), user,
                        engine, client)
        if args.only != "die":
            list_time(args, web_port, user, engine, client, procs[1].pid)
    except BaseException:
        for name in ("worker.log", "daphne.log"):
            if text := tail(base / name, 3000):
                print(f"--- the end of {name}:\n{text}", file=sys.stderr)
        raise
    finally:
        if engine is not None:
            for c in engine.containers.list(all=True):
                try:
                    engine.containers.remove(c.id, force=True)
                except Exception as exc:
                    print(f"could not remove {c.id[:12]}: {exc}", file=sys.stderr)
        stop_all(procs)
        take_down(base, env["ESTIBA_PREFIX"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
