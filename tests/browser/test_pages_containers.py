"""The containers pages in a real browser, on the data they show.

The list: filter by state and by name; stop and remove two selected containers
at once and watch their rows change without a reload. A container's page: logs
with ANSI colours (styled spans, never HTML), search, download; live stats
charts; its processes; the files it changed; logs and stats that follow a
restart. An admin sees another user's container; that user does not see the
admin's.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from tests.browser.conftest import login, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# sh as PID 1 ignores SIGTERM unless it traps it: this loop stops at once when asked.
LOOP = "sh -c \"trap 'exit 0' TERM; while true; do sleep 0.2; done\""


def run_container(page, server, made: list[str], name: str, command: str = LOOP,
                  start: bool = True, **fields: str) -> str:
    """Run a container from the create form; its id goes to ``made``; waits for its page.

    No network unless asked: the default bridge needs a free subnet from the host's pools,
    and these pages show nothing of it.
    """
    fields.setdefault("network", "none")
    page.goto(f"{server.url}/containers/new/")
    page.fill("input[name=image]", "busybox:latest")
    page.fill("input[name=command]", command)
    page.fill("input[name=name]", name)
    for field, value in fields.items():
        page.fill(f"[name={field}]", value)
    if not start:
        page.uncheck("input[name=start]")
    page.click("button[type=submit]")
    try:
        page.wait_for_url(re.compile(r"/containers/[0-9a-f]{64}/$"))
    except Exception:
        shot(page, f"pages-run-failed-{name}")
        raise
    cid = page.locator("#container").get_attribute("data-id")
    made.append(cid)
    if start:
        page.wait_for_selector("#state.s-running")
    return cid


def messages_shown(page) -> str:
    """The messages on the page (the server's, and those a page script adds)."""
    return " ".join(page.locator(".messages li").all_text_contents())


def _names(page) -> list[str]:
    return page.eval_on_selector_all(
        "#rows tr[data-id] td:nth-child(2) a", "as => as.map(a => a.textContent.trim())")


def _row_state(page, cid: str) -> str:
    return page.locator(f"tr[data-id='{cid}'] [data-field=state]").text_content()


def _settled(page, expected: list[str]) -> None:
    """The rows are ``expected`` now and still after a few live updates (reconcile: 1 s)."""
    assert sorted(_names(page)) == sorted(expected)
    page.wait_for_timeout(2500)
    assert sorted(_names(page)) == sorted(expected), "a live update brought other rows back"


def test_list_filters_from_the_address(browser, dashboard, make_user, containers_made):
    tag = uuid.uuid4().hex[:6]
    ctx, page = login(browser, dashboard, make_user("lfilter"))
    try:
        up = run_container(page, dashboard, containers_made, f"up-{tag}")
        made = run_container(page, dashboard, containers_made, f"made-{tag}", start=False)
        page.goto(f"{dashboard.url}/containers/")
        assert {f"up-{tag}", f"made-{tag}"} <= set(_names(page))

        page.goto(f"{dashboard.url}/containers/?state=running&q={tag}")
        page.wait_for_selector("#live.on")
        _settled(page, [f"up-{tag}"])
        assert _row_state(page, up) == "running"
        assert page.is_checked("input[name=state][value=running]")
        shot(page, "pages-list-running")

        page.goto(f"{dashboard.url}/containers/?state=created&q={tag}")
        page.wait_for_selector("#live.on")
        _settled(page, [f"made-{tag}"])
        assert _row_state(page, made) == "created"

        page.goto(f"{dashboard.url}/containers/?q=up-{tag}")
        page.wait_for_selector("#live.on")
        _settled(page, [f"up-{tag}"])
        assert page.input_value("#q") == f"up-{tag}"
        shot(page, "pages-list-by-name")

        page.goto(f"{dashboard.url}/containers/?q=nothing-{tag}")
        assert "No containers here yet." in page.locator("#rows").text_content()
    finally:
        ctx.close()


def test_list_filters_in_place_by_state_and_name(browser, dashboard, make_user,
                                                 containers_made):
    tag = uuid.uuid4().hex[:6]
    ctx, page = login(browser, dashboard, make_user("lfilter2"))
    try:
        up = run_container(page, dashboard, containers_made, f"up-{tag}")
        run_container(page, dashboard, containers_made, f"made-{tag}", start=False)
        page.goto(f"{dashboard.url}/containers/")
        page.wait_for_selector("#live.on")
        assert {f"up-{tag}", f"made-{tag}"} <= set(_names(page))

        page.locator("#q").press_sequentially(tag)          # typed: htmx listens to keyup
        page.wait_for_function("() => document.querySelectorAll('#rows tr[data-id]').length === 2")
        page.check("input[name=state][value=created]")
        page.wait_for_function("() => !document.querySelector(`#rows tr[data-state=running]`)")
        assert "state=created" in page.url        # the filter is in the address, for a reload
        shot(page, "pages-list-in-place-created")
        _settled(page, [f"made-{tag}"])

        page.check("input[name=state][value=all]")
        page.fill("#q", "")
        page.locator("#q").press_sequentially(f"up-{tag}")
        page.wait_for_function("n => { const a = document.querySelectorAll('#rows tr[data-id]');"
                               " return a.length === 1 && a[0].textContent.includes(n); }",
                               arg=f"up-{tag}")
        assert _row_state(page, up) == "running"
        _settled(page, [f"up-{tag}"])
    finally:
        ctx.close()


def _select(page, *ids: str) -> None:
    for cid in ids:
        page.check(f"tr[data-id='{cid}'] input[name=ids]")


def test_bulk_stop_then_remove_two_selected(browser, dashboard, make_user, containers_made):
    tag = uuid.uuid4().hex[:6]
    ctx, page = login(browser, dashboard, make_user("lbulk"))
    try:
        a = run_container(page, dashboard, containers_made, f"bulk-a-{tag}")
        b = run_container(page, dashboard, containers_made, f"bulk-b-{tag}")
        keep = run_container(page, dashboard, containers_made, f"bulk-keep-{tag}")
        page.goto(f"{dashboard.url}/containers/?q={tag}")
        page.wait_for_selector("#live.on")
        assert _row_state(page, a) == _row_state(page, b) == "running"
        _select(page, a, b)
        page.evaluate("window.__noReload = true")
        page.click("#bulk button[value=stop]")
        for cid in (a, b):
            page.wait_for_selector(f"tr[data-id='{cid}'][data-state=exited]", timeout=30000)
        assert _row_state(page, a) == _row_state(page, b) == "exited"
        assert _row_state(page, keep) == "running"          # not selected: untouched
        assert "Stop: 2 container(s)." in messages_shown(page)
        assert page.evaluate("window.__noReload") is True, "the page reloaded"
        shot(page, "pages-list-bulk-stopped")

        page.on("dialog", lambda d: d.accept())               # "Remove the selected containers?"
        _select(page, a, b)
        page.click("#bulk button[value=remove]")
        try:
            for cid in (a, b):
                page.wait_for_selector(f"tr[data-id='{cid}']", state="detached", timeout=30000)
        except Exception:
            shot(page, "pages-list-bulk-remove-failed")
            raise
        assert page.evaluate("window.__noReload") is True, "the page reloaded"
        assert _names(page) == [f"bulk-keep-{tag}"]
        assert "Remove: 2 container(s)." in messages_shown(page)
        shot(page, "pages-list-bulk-removed")
    finally:
        ctx.close()


ANSI = ("printf '\\033[31mred\\033[0m <b>x</b>\\n\\033[32mgreen\\nstill green\\033[0m plain\\n'; "
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done")


def test_detail_logs_colours_and_search(browser, dashboard, make_user, containers_made):
    tag = uuid.uuid4().hex[:6]
    ctx, page = login(browser, dashboard, make_user("dlogs"))
    try:
        run_container(page, dashboard, containers_made, f"ansi-{tag}", command=f'sh -c "{ANSI}"')
        page.wait_for_function("document.querySelector('#logs').textContent.includes('tick 3')")
        first = page.locator("#logs .line").first
        # The red text is a coloured span; <b> is text, not an element.
        assert first.text_content() == "red <b>x</b>\n"
        assert first.locator("b").count() == 0 and page.locator("#logs b").count() == 0
        red = first.locator("span.a31")
        assert red.text_content() == "red"
        assert red.evaluate("s => getComputedStyle(s).color") == "rgb(255, 107, 107)"
        assert "\x1b" not in page.locator("#logs").text_content()
        # A colour runs on over the next line, until it is reset.
        green = page.eval_on_selector_all(
            "#logs .line", "ls => ls.slice(1, 3).map(l => Array.from(l.children)"
            ".map(s => [s.className, s.textContent]))")
        assert green == [[["a32", "green\n"]], [["a32", "still green"], ["", " plain\n"]]], green
        shot(page, "pages-detail-logs-ansi")

        # Search: only the matching lines stay visible, and the count says how many.
        page.fill("#log-search", "tick 2")
        visible = page.eval_on_selector_all(
            "#logs .line", "ls => ls.filter(l => !l.hidden).map(l => l.textContent)")
        assert visible and all("tick 2" in v for v in visible), visible
        assert page.locator("#log-count").text_content() == str(len(visible))
        assert page.locator("#logs .line").count() > len(visible)
        shot(page, "pages-detail-logs-search")
        page.fill("#log-search", "")
        assert page.eval_on_selector_all("#logs .line", "ls => ls.every(l => !l.hidden)")
    finally:
        ctx.close()


def test_detail_log_download_gives_the_text(browser, dashboard, make_user, containers_made):
    tag = uuid.uuid4().hex[:6]
    ctx, page = login(browser, dashboard, make_user("dlogs"))
    try:
        run_container(page, dashboard, containers_made, f"ansi-{tag}", command=f'sh -c "{ANSI}"')
        page.wait_for_function("document.querySelector('#logs').textContent.includes('tick 3')")
        # Download: the log as text, the escape codes and markup as the container wrote them.
        with page.expect_download(timeout=10000) as info:
            page.click("#tab-logs a.button", timeout=5000)
        download = info.value
        assert download.suggested_filename == f"ansi-{tag}.log"
        text = Path(download.path()).read_text(encoding="utf-8")
        assert "\x1b[31mred\x1b[0m <b>x</b>\n" in text
        assert "tick 0\n" in text and "tick 3\n" in text
    finally:
        ctx.close()


def test_detail_stats_processes_and_changes(browser, dashboard, make_user, containers_made):
    tag = uuid.uuid4().hex[:6]
    command = ("sh -c \"echo hello > /root/written-" + tag + ".txt; "
               "while true; do sleep 0.2; done\"")
    ctx, page = login(browser, dashboard, make_user("dstats"))
    try:
        run_container(page, dashboard, containers_made, f"stats-{tag}", command=command,
                      memory="64m")
        # Stats: each chart gets points, and keeps getting them.
        page.click("[data-tab=stats]")
        size = ("id => { const c = window.Chart && Chart.getChart(id);"
                " return c ? c.data.datasets[0].data.length : 0; }")
        page.wait_for_function(f"() => ({size})('chart-cpu') >= 2 && ({size})('chart-mem') >= 2"
                               f" && ({size})('chart-pids') >= 2", timeout=20000)
        n = page.evaluate(f"({size})('chart-mem')")
        page.wait_for_function(f"n => ({size})('chart-mem') > n", arg=n, timeout=20000)
        mem = page.evaluate("Chart.getChart('chart-mem').data.datasets[0].data")
        assert all(0 < m <= 64 for m in mem), mem       # MiB, under the 64m limit
        assert "/ 64.0 MiB" in page.locator("#mem-now").text_content()
        pids = page.evaluate("Chart.getChart('chart-pids').data.datasets[0].data")
        assert all(p >= 1 for p in pids), pids
        shot(page, "pages-detail-stats")

        # Processes: the container's command is listed.
        page.click("[data-tab=top]")
        page.wait_for_selector("#top-body table")
        top = page.locator("#top-body").text_content()
        assert "while true" in top, top
        shot(page, "pages-detail-top")

        # Changes: the file it wrote, as added.
        page.click("[data-tab=changes]")
        page.wait_for_selector("#changes-body table")
        row = page.locator("#changes-body tr", has_text=f"/root/written-{tag}.txt")
        assert row.count() == 1
        assert row.locator(".chg").text_content() == "added"
        shot(page, "pages-detail-changes")
    finally:
        ctx.close()


def test_admin_sees_a_users_container_and_not_the_reverse(browser, dashboard, make_user,
                                                          containers_made):
    tag = uuid.uuid4().hex[:6]
    admin, user = make_user("padmin", admin=True), make_user("puser")
    actx, apage = login(browser, dashboard, admin)
    uctx, upage = login(browser, dashboard, user)
    try:
        mine = run_container(upage, dashboard, containers_made, f"users-{tag}")
        theirs = run_container(apage, dashboard, containers_made, f"admins-{tag}")

        apage.goto(f"{dashboard.url}/containers/?q={tag}")
        assert set(_names(apage)) == {f"users-{tag}", f"admins-{tag}"}
        owner = apage.locator(f"tr[data-id='{mine}'] td").last.text_content()
        assert owner == "puser"
        shot(apage, "pages-admin-sees-all")
        apage.goto(f"{dashboard.url}/containers/{mine}/")
        assert apage.locator("#container").get_attribute("data-id") == mine

        upage.goto(f"{dashboard.url}/containers/?q={tag}")
        assert _names(upage) == [f"users-{tag}"]
        assert theirs not in upage.content()
        upage.goto(f"{dashboard.url}/containers/{theirs}/")
        assert upage.url.endswith("/containers/")
        assert "No such container" in messages_shown(upage)
        shot(upage, "pages-user-sees-own")
    finally:
        actx.close()
        uctx.close()


def test_detail_follows_logs_and_stats_across_a_restart(browser, dashboard, make_user,
                                                        containers_made):
    tag = uuid.uuid4().hex[:6]
    command = f'sh -c "echo run-{tag}; trap \'exit 0\' TERM; while true; do sleep 0.2; done"'
    ctx, page = login(browser, dashboard, make_user("drestart"))
    try:
        run_container(page, dashboard, containers_made, f"again-{tag}", command=command)
        page.wait_for_selector("#live.on")
        runs = f"() => document.querySelector('#logs').textContent.split('run-{tag}').length - 1"
        page.wait_for_function(f"({runs})() === 1")
        page.click("[data-tab=stats]")
        size = ("() => { const c = Chart.getChart('chart-pids');"
                " return c ? c.data.labels.length : 0; }")
        page.wait_for_function(f"({size})() >= 1", timeout=20000)

        page.evaluate("window.__noReload = true")
        page.click("#stop")
        page.wait_for_selector("#state.s-exited", timeout=20000)
        page.wait_for_function("document.querySelector('#stats-note').textContent !== ''")
        page.click("button[formaction$='/action/start/']")
        page.wait_for_selector("#state.s-running", timeout=20000)
        # The second run's line shows, once; the first run's is not repeated.
        page.wait_for_function(f"({runs})() === 2", timeout=15000)
        page.wait_for_timeout(1000)
        assert page.evaluate(f"({runs})()") == 2, page.locator("#logs").text_content()
        # The stats charts take up the new run.
        n = page.evaluate(f"({size})()")
        page.wait_for_function(f"n => ({size})() > n", arg=n, timeout=20000)
        assert page.evaluate("window.__noReload") is True
        shot(page, "pages-detail-restarted")
    finally:
        ctx.close()
