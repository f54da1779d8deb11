"""Bridge networks on the real kernel, with namespaces playing the containers.

Each test uses a private NetworkManager (its own prefix, root and nftables
table) and ends with the host exactly as it was (the ``host_unchanged`` check
runs after the manager removed its objects).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from ipaddress import IPv4Address, IPv4Network

import pytest

from engine.network import netns
from engine.network.iproute import iproute
from tests.engine.network.conftest import cid, in_sandbox, start_in_sandbox


def ping(sandbox, target: str) -> bool:
    return in_sandbox(sandbox, "busybox", "ping", "-c1", "-W1", target).returncode == 0


def wait_http(url: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_same_network_by_name_and_alias_other_network_cut_off(netman):
    front = netman.create("front", labels={"tier": "web"})
    back = netman.create("back")
    assert not IPv4Network(front["IPAM"]["Config"][0]["Subnet"]).overlaps(
        IPv4Network(back["IPAM"]["Config"][0]["Subnet"])
    )
    a = netman.setup(cid(), "alpha", "alpha", "front", {"front": {"aliases": ["web"]}})
    b = netman.setup(cid(), "beta", "beta", "front")
    c = netman.setup(cid(), "gamma", "gamma", "back")

    assert ping(b, "alpha") and ping(b, "web")
    assert ping(a, "beta"), "alpha's hosts file was not updated when beta joined"
    a_ip = a.settings["Networks"]["front"]["IPAddress"]
    assert IPv4Address(a_ip) in IPv4Network(front["IPAM"]["Config"][0]["Subnet"])
    assert not ping(c, a_ip), "a container on another network reached alpha"
    assert not ping(c, "alpha")

    seen = netman.inspect("front")
    assert {v["Name"] for v in seen["Containers"].values()} == {"alpha", "beta"}
    assert seen["Containers"][a.container_id]["IPv4Address"].startswith(a_ip + "/")
    assert seen["Labels"] == {"tier": "web"} and seen["Driver"] == "bridge"

    netman.teardown(b.container_id)
    assert "beta" not in a.hosts_file.read_text()
    assert b.container_id not in netman.inspect("front")["Containers"]
    for sb in (a, c):
        netman.teardown(sb.container_id)
    netman.remove("front")
    netman.remove("back")
    assert sorted(n["Name"] for n in netman.list()) == ["bridge", "host", "none"]


def test_published_port_answers_from_the_host_and_loopback(netman, processes, www):
    netman.create("pub")
    web = netman.setup(
        cid(), "web", "web", "pub", None,
        {"80/tcp": [{"HostIp": "", "HostPort": ""}]}, False, None,
    )
    processes.append(start_in_sandbox(web, "busybox", "httpd", "-f", "-p", "80", "-h", str(www)))
    binding = web.settings["Ports"]["80/tcp"][0]
    port = int(binding["HostPort"])
    assert 49153 <= port <= 65535 and binding["HostIp"] == "0.0.0.0"
    assert "hello from the container" in wait_http(f"http://127.0.0.1:{port}/")
    gateway = web.settings["Gateway"]
    assert "hello" in wait_http(f"http://{gateway}:{port}/")
    # A container on another network reaches the published port through a host address.
    other = netman.setup(cid(), "other", "other", "bridge")
    out = in_sandbox(
        other, "timeout", "5", "busybox", "wget", "-q", "-O", "-",
        f"http://{other.settings['Gateway']}:{port}/",
    )
    assert "hello" in out.stdout, out.stderr
    netman.teardown(web.container_id)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
    netman.teardown(other.container_id)


def test_publish_on_loopback_only_and_publish_all(netman, processes, www):
    netman.create("pub2")
    sb = netman.setup(
        cid(), "web2", "web2", "pub2", None,
        {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}, True,
        {"80/tcp": {}, "8080/tcp": {}, "53/udp": {}},
    )
    ports = sb.settings["Ports"]
    assert set(ports) == {"80/tcp", "8080/tcp", "53/udp"}
    assert ports["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": ports["80/tcp"][0]["HostPort"]}]
    processes.append(start_in_sandbox(sb, "busybox", "httpd", "-f", "-p", "80", "-h", str(www)))
    port = ports["80/tcp"][0]["HostPort"]
    assert "hello" in wait_http(f"http://127.0.0.1:{port}/")
    with pytest.raises(OSError):  # bound to 127.0.0.1 only: the gateway address is not it
        urllib.request.urlopen(f"http://{sb.settings['Gateway']}:{port}/", timeout=1)
    netman.teardown(sb.container_id)


def test_port_already_allocated_is_refused(netman):
    netman.create("dup")
    first = netman.setup(cid(), "one", "one", "dup", None, {"80/tcp": [{"HostPort": "18181"}]})
    from engine.errors import Conflict

    with pytest.raises(Conflict, match="already allocated"):
        netman.setup(cid(), "two", "two", "dup", None, {"80/tcp": [{"HostPort": "18181"}]})
    assert len(netman.inspect("dup")["Containers"]) == 1  # the failed one left nothing
    netman.teardown(first.container_id)


def test_outbound_nat_reaches_a_server_beyond_the_host(netman, processes, tmp_path, www):
    """A namespace 'outside' the host, with no route back to the bridge subnet: only
    masquerading (the host's address as source) lets the container's connection work."""
    outside_ns = tmp_path / "outside.ns"
    netns.create(outside_ns)
    host_if = f"nto{cid()[:8]}"
    fd = netns.open_fd(outside_ns)
    try:
        with iproute() as ipr:
            ipr.link("add", ifname=host_if, kind="veth", peer={"ifname": "up0", "net_ns_fd": fd})
            idx = ipr.link_lookup(ifname=host_if)[0]
            ipr.addr("add", index=idx, address="198.18.7.1", prefixlen=30)
            ipr.link("set", index=idx, state="up")
    finally:
        import os

        os.close(fd)
    subprocess.run(
        ["nsenter", f"--net={outside_ns}", "sh", "-c",
         "ip link set lo up && ip addr add 198.18.7.2/30 dev up0 && ip link set up0 up"],
        check=True,
    )
    try:
        processes.append(subprocess.Popen(
            ["nsenter", f"--net={outside_ns}", "busybox", "httpd", "-f", "-p", "198.18.7.2:8088",
             "-h", str(www)],
        ))
        sb = netman.setup(cid(), "client", "client", "bridge")
        deadline = time.monotonic() + 5
        while True:
            out = in_sandbox(
                sb, "timeout", "4", "busybox", "wget", "-q", "-O", "-", "http://198.18.7.2:8088/"
            )
            if "hello" in out.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert "hello" in out.stdout, out.stderr
        netman.teardown(sb.container_id)
    finally:
        for proc in processes:
            proc.kill()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        netns.remove(outside_ns)


def test_host_server_on_the_gateway_is_reachable(netman, processes, www):
    sb = netman.setup(cid(), "c", "c", "bridge")
    gw = sb.settings["Gateway"]
    server = ["busybox", "httpd", "-f", "-p", f"{gw}:8089", "-h", str(www)]
    processes.append(subprocess.Popen(server))
    time.sleep(0.2)
    out = in_sandbox(sb, "timeout", "5", "busybox", "wget", "-q", "-O", "-", f"http://{gw}:8089/")
    assert "hello" in out.stdout, out.stderr
    netman.teardown(sb.container_id)


def test_connect_and_disconnect_a_running_container(netman):
    netman.create("n1")
    netman.create("n2")
    a = netman.setup(cid(), "a1", "a1", "n1")
    b = netman.setup(cid(), "b2", "b2", "n2")
    assert not ping(b, "a1")
    settings = netman.connect("n2", a.container_id, aliases=["api"])
    assert IPv4Address(settings["IPAddress"]) in IPv4Network(
        netman.inspect("n2")["IPAM"]["Config"][0]["Subnet"]
    )
    out = subprocess.run(
        ["nsenter", f"--net={a.netns_path}", "ip", "-br", "addr"], capture_output=True, text=True
    ).stdout
    assert "eth0" in out and "eth1" in out and settings["IPAddress"] in out
    assert ping(b, "a1") and ping(b, "api")
    netman.disconnect("n2", a.container_id)
    assert not ping(b, settings["IPAddress"])
    assert "a1" not in b.hosts_file.read_text()
    assert a.container_id not in netman.inspect("n2")["Containers"]
    from engine.errors import NotFound

    with pytest.raises(NotFound):
        netman.disconnect("n2", a.container_id)
    netman.teardown(a.container_id)
    netman.teardown(b.container_id)


def test_internal_network_has_peers_but_no_way_out(netman):
    netman.create("vault", internal=True)
    a = netman.setup(cid(), "safe1", "safe1", "vault")
    b = netman.setup(cid(), "safe2", "safe2", "vault")
    routes = subprocess.run(
        ["nsenter", f"--net={a.netns_path}", "ip", "route"], capture_output=True, text=True
    ).stdout
    assert "default" not in routes
    assert ping(b, "safe1")
    outsider = netman.setup(cid(), "out", "out", "bridge")
    assert not ping(outsider, a.settings["IPAddress"])
    for sb in (a, b, outsider):
        netman.teardown(sb.container_id)
    journal = [line for line in netman.events.journal.read_text().splitlines() if "network" in line]
    actions = [json.loads(line)["action"] for line in journal]
    assert actions.count("connect") == 3 and actions.count("disconnect") == 3
    assert actions[0] == "create"
