"""The lessons in a real browser, on real containers, in Spanish and English."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from engine.introspect.namespaces import namespace_inode
from tests.browser.conftest import login
from tests.browser.lessons.conftest import inside, screenshot

pytestmark = pytest.mark.browser

TITLES = {"es": "Espacios de nombres", "en": "Namespaces"}
MOUNTS = {"es": "Montajes dentro del contenedor", "en": "Mounts inside the container"}


@pytest.mark.parametrize("lang", ["en", "es"])
def test_namespace_view_shows_isolation_and_the_pid_mapping(page_in, logged_in, lesson_container,
                                                            lang):
    page = page_in(lang)
    page.goto(f"{logged_in.url}/lessons/namespaces/?container={lesson_container.id}")
    assert TITLES[lang] in page.inner_text("h1")
    row = page.locator('#ns-table tr[data-kind="pid"]')
    container_inode = int(row.locator(".ns-container").inner_text())
    host_inode = int(row.locator(".ns-host").inner_text())
    assert container_inode != host_inode
    assert container_inode == namespace_inode(lesson_container.pid, "pid")
    pid1 = page.locator('#pid-table tr[data-container-pid="1"]')
    assert int(pid1.locator(".hpid").inner_text()) == lesson_container.pid
    assert page.inner_text("#hostname-inside").strip() == "aula"
    kinds = page.eval_on_selector_all("#ns-table tr[data-kind]",
                                      "rows => rows.map(r => r.dataset.kind)")
    assert {"pid", "net", "mnt", "uts", "ipc", "user", "cgroup"} <= set(kinds)
    net = page.locator('#ns-table tr[data-kind="net"]')
    assert net.locator(".ns-container").inner_text() != net.locator(".ns-host").inner_text()
    # the veth pair: eth0 inside, its peer in the host, plugged into the bridge
    cable = page.locator("#netdiagram .cable").first
    assert cable.get_attribute("data-inside") == "eth0"
    host_end = cable.get_attribute("data-host")
    assert Path(f"/sys/class/net/{host_end}/master").exists()  # enslaved to a bridge, for real
    assert "eth0" in page.inner_text("#netdiagram .box.inside")
    mounts = page.inner_text(f"section:has(h2:text-is('{MOUNTS[lang]}')) table")
    assert "overlay" in mounts and "/proc" in mounts
    page.click('[data-exp="hostname"]')
    page.wait_for_function("document.querySelector('#exp-with').textContent.length > 0")
    assert page.inner_text("#exp-with").strip() == "estiba-lesson"
    screenshot(page, f"namespaces-{lang}")


@pytest.mark.parametrize("lang", ["en", "es"])
def test_union_view_shows_a_write_in_the_upper_layer_within_2_s(page_in, logged_in,
                                                               lesson_container, lang):
    page = page_in(lang)
    page.goto(f"{logged_in.url}/lessons/union/?container={lesson_container.id}")
    page.wait_for_function("document.querySelector('#watch-status').textContent.length > 0",
                           timeout=15000)
    assert page.locator('.plane.lower').count() >= 1
    name = f"/clase-{uuid.uuid4().hex[:6]}.txt"
    start = time.monotonic()
    inside(lesson_container.pid, f"echo hola > {name}")
    item = page.locator(f'#upper-files li[data-path="{name}"]')
    item.wait_for(timeout=2000)
    assert time.monotonic() - start < 2.0
    assert "added" in item.get_attribute("class")
    lower_file = {"en": "/etc/group", "es": "/etc/passwd"}[lang]  # each run copies up its own
    inside(lesson_container.pid, f"echo '# cambio' >> {lower_file}")
    page.locator(f'#upper-files li[data-path="{lower_file}"].copy-up').wait_for(timeout=2000)
    doomed = {"en": "/usr/bin/tac", "es": "/usr/bin/yes"}[lang]  # a file of the image's layer
    inside(lesson_container.pid, f"rm {doomed}")
    gone = page.locator(f'#upper-files li[data-path="{doomed}"].whiteout')
    gone.wait_for(timeout=2000)
    assert gone.locator(".tag").inner_text() == {"en": "whiteout", "es": "whiteout"}[lang]
    screenshot(page, f"union-{lang}")


@pytest.mark.parametrize("lang", ["en", "es"])
@pytest.mark.parametrize("slug", ["layers", "cgroups", "architecture", "build", "vm"])
def test_each_other_view_in_both_languages(page_in, logged_in, lesson_container, slug, lang):
    page = page_in(lang)
    extra = f"?container={lesson_container.id}" if slug == "cgroups" else ""
    page.goto(f"{logged_in.url}/lessons/{slug}/{extra}")
    assert page.locator("html").get_attribute("lang") == lang
    assert not page.locator(".lesson .error").count(), page.inner_text(".lesson .error")
    if slug == "layers":
        assert page.locator("#layer-stack li").count() >= 1
        page.click("#which-layer button")
        page.wait_for_function("document.querySelector('#which-answer').textContent.length > 0")
    if slug == "cgroups":
        page.wait_for_function("document.querySelector('#mem-limit').textContent !== '—'",
                               timeout=10000)
        assert page.inner_text("#mem-limit").strip() == "64.0 MiB"
    screenshot(page, f"{slug}-{lang}")


@pytest.mark.slow
def test_vm_view_reports_a_measured_boot_time(page_in, logged_in):
    """One boot (10-30 s under TCG), in Spanish; the English page is shot above."""
    import shutil
    import subprocess

    from tests.engine.introspect.test_vm import PREPARE, VM_DIR

    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed")
    subprocess.run(["bash", str(PREPARE), str(VM_DIR)], check=True, capture_output=True)
    page = page_in("es")
    page.goto(f"{logged_in.url}/lessons/vm/")
    page.click("#measure-button")
    page.wait_for_function("document.querySelector('#vm-boot').dataset.seconds", timeout=120000)
    assert float(page.locator("#vm-boot").get_attribute("data-seconds")) > 0
    assert page.inner_text("#ct-start").endswith("ms")
    assert "TCG" in page.inner_text("#vm-accel") or "KVM" in page.inner_text("#vm-accel")
    screenshot(page, "vm-measured-es")


def test_cgroups_view_shows_the_oom_kill(page_in, logged_in, lesson_container):
    page = page_in("en")
    page.goto(f"{logged_in.url}/lessons/cgroups/?container={lesson_container.id}")
    page.wait_for_function("document.querySelector('#mem-limit').textContent !== '—'",
                           timeout=10000)
    before = int(page.inner_text("#oom-count"))
    page.click("#hog button")
    page.locator("#oom.killed").wait_for(timeout=20000)
    assert int(page.inner_text("#oom-count")) > before
    screenshot(page, "cgroups-oom-en")


def test_build_view_stacks_a_layer_per_instruction(page_in, logged_in):
    page = page_in("en")
    page.goto(f"{logged_in.url}/lessons/build/")
    page.check("#no-cache")
    page.click("#build-button")
    page.wait_for_function("document.querySelector('#build-log').textContent.includes('Built')",
                           timeout=60000)
    steps = page.locator("#build-stack li")
    assert steps.count() == 7  # FROM, RUN, ENV, COPY, RUN, RUN, CMD
    assert page.locator("#build-stack li.new").count() >= 3  # the RUNs and the COPY
    page.uncheck("#no-cache")
    page.click("#build-button")
    page.wait_for_function("document.querySelector('#build-log').textContent.includes('Built')",
                           timeout=60000)
    assert page.locator("#build-stack li.cached").count() >= 3  # the rebuild hits the cache
    screenshot(page, "build-cached-en")
    # the image it made, as the layers lesson shows it: RUN rm left a whiteout
    image_id = re.search(r"Built (sha256:[0-9a-f]{64})", page.inner_text("#build-log")).group(1)
    page.goto(f"{logged_in.url}/lessons/layers/?image={image_id}")
    stack = page.locator("#layer-stack li")
    assert stack.count() == 5  # busybox + RUN + COPY + RUN + RUN
    assert "rm /app/Dockerfile" in stack.first.inner_text()  # the top layer, selected
    page.locator('#layer-tree li.removed[data-path="/app/Dockerfile"]').wait_for(timeout=2000)
    assert page.inner_text("#wasted") != "0\xa0bytes"  # the removed Dockerfile is wasted
    screenshot(page, "layers-built-en")


def test_teacher_mode_steps_with_the_arrow_keys(page_in, logged_in):
    page = page_in("es")
    page.goto(f"{logged_in.url}/lessons/vm/?teacher=1")
    assert page.locator(".lesson.teacher-mode").count() == 1
    first = page.inner_text(".steps .step.on")
    assert "máquina virtual" in first.lower()
    size = page.evaluate(
        "parseFloat(getComputedStyle(document.querySelector('.step.on')).fontSize)")
    assert size >= 30  # large type, readable from the back of the room
    page.keyboard.press("ArrowRight")
    assert page.inner_text(".steps .step.on") != first
    assert page.inner_text(".step-count") == "2 / 4"
    page.keyboard.press("ArrowLeft")
    assert page.inner_text(".steps .step.on") == first
    screenshot(page, "teacher-vm-es")


#: Records the text of every row the architecture log receives (``window.archRows``).
WATCH_ROWS = """() => {
  window.archRows = [];
  new MutationObserver((changes) => changes.forEach((c) => c.addedNodes.forEach(
    (n) => window.archRows.push(n.textContent)))).observe(
    document.querySelector("#arch-log tbody"), {childList: true});
}"""
#: The first recorded row holding every one of the texts given, or a falsy value.
ROW_SEEN = "(texts) => window.archRows.find((t) => texts.every((x) => t.includes(x)))"
#: Records every diagram part that lights from now on: a part stays lit 1.2 s only, which
#: a test looking after a busy moment may miss.
WATCH_LIT = """() => {
  window.archLit = new Set();
  new MutationObserver((changes) => changes.forEach((c) => {
    if (c.target.classList.contains("lit")) window.archLit.add(c.target.id);
  })).observe(document.body, {attributes: true, attributeFilter: ["class"], subtree: true});
}"""


@pytest.mark.parametrize("lang", ["en", "es"])
def test_architecture_lights_the_path_of_real_requests(page_in, logged_in, lesson_api, lang):
    """Real clients, real requests: the docker CLI on the API's socket, a dashboard change
    from another tab, and the engine event the change makes; each lights its path."""
    from engine.errors import NotFound
    from estiba import gateway

    page = page_in(lang)
    page.goto(f"{logged_in.url}/lessons/architecture/")
    page.wait_for_timeout(500)  # the socket joins its groups
    rows = page.locator("#arch-log tbody tr")
    # the real docker CLI: `docker ps` asks GET /v1.41/containers/json (after a /_ping)
    lesson_api.docker("ps")
    row = rows.filter(has_text="docker CLI").filter(has_text="/containers/json").first
    row.wait_for(timeout=5000)
    assert row.get_attribute("data-reaches") == "api daemon containers"
    assert row.get_attribute("data-status") == "200"
    assert "root" in row.inner_text()  # the socket's caller
    page.locator("#n-containers.lit").wait_for(timeout=3000)
    page.locator("#e-api-daemon.lit").wait_for(state="attached", timeout=3000)  # a line: no box
    assert "docker CLI" in page.text_content("#client-label")  # an SVG <text>
    # a dashboard change, from another tab of the same teacher: the browser's POST
    other = page_in(lang)
    volume = f"lesson-tap-{uuid.uuid4().hex[:6]}"
    other.goto(f"{logged_in.url}/volumes/")
    other.fill("#vname", volume)
    # The log keeps its newest 50 rows, and in a busy session other requests and
    # events may push a row out before it is looked at: watch the rows as they come.
    page.evaluate(WATCH_ROWS)
    # The tap publishes once the POST has its answer, which waits for the worker: wait for
    # the page that answer leads to, not only for the request to leave.
    with other.expect_navigation(timeout=60000):  # the POST, its redirect, the new page
        other.click("form.inline button.primary")
    try:
        vrow = page.wait_for_function(ROW_SEEN, arg=["browser", "POST /volumes/"],
                                      timeout=20000)
    except PlaywrightTimeout:
        pytest.fail(f"no row for the POST; rows seen: {page.evaluate('() => window.archRows')}")
    assert "teacher" in vrow.json_value()
    # and a real engine event: the worker's projection tells the admins' group
    page.evaluate(WATCH_LIT)
    cid = gateway.call("containers.create", {"image": "busybox:latest", "cmd": ["true"],
                                             "network_mode": "none"})["Id"]
    try:
        page.wait_for_function(ROW_SEEN, arg=["container create"], timeout=10000)
        page.wait_for_function("() => window.archLit.has('n-containers')", timeout=5000)
    finally:
        try:
            gateway.call("containers.remove", cid, force=True)
        except NotFound:
            pass
        with contextlib.suppress(Exception):
            lesson_api.docker("volume", "rm", "-f", volume)
    screenshot(page, f"architecture-live-{lang}")


def test_a_student_sees_only_their_own_path_in_the_architecture(browser, dashboard, make_user,
                                                               lesson_api):
    """Scoped to the user: root's requests and the admins' events stay out of a student's view;
    the student's own request comes through, under their name."""
    from engine.errors import NotFound
    from estiba import gateway

    student = make_user(f"student-{uuid.uuid4().hex[:6]}")
    name = student[0]
    context, page = login(browser, dashboard, student)
    volume = f"lesson-own-{uuid.uuid4().hex[:6]}"
    cid = None
    try:
        page.goto(f"{dashboard.url}/lessons/architecture/")
        page.wait_for_timeout(500)  # the socket joins its groups
        page.evaluate(WATCH_ROWS)
        # someone else's traffic: root's docker CLI, and a container the student does not own
        lesson_api.docker("ps")
        cid = gateway.call("containers.create", {"image": "busybox:latest", "cmd": ["true"],
                                                 "network_mode": "none"})["Id"]
        # the student's own request, from another tab
        other = context.new_page()
        other.goto(f"{dashboard.url}/volumes/")
        other.fill("#vname", volume)
        with other.expect_navigation(timeout=60000):  # the POST, its redirect, the new page
            other.click("form.inline button.primary")
        mine = page.wait_for_function(ROW_SEEN, arg=["POST /volumes/"], timeout=20000)
        assert name in mine.json_value()
        page.wait_for_timeout(1000)  # anything else on its way has arrived by now
        seen = page.evaluate("() => window.archRows")
        assert not [r for r in seen if "/containers/json" in r or "container create" in r], seen
        screenshot(page, "architecture-student")
    finally:
        context.close()
        if cid:
            with contextlib.suppress(NotFound):
                gateway.call("containers.remove", cid, force=True)
        with contextlib.suppress(Exception):
            lesson_api.docker("volume", "rm", "-f", volume)
