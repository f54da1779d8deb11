"""Networks as objects: IPAM, errors, modes, Docker's JSON, crash recovery."""

from __future__ import annotations

import os
import subprocess
from ipaddress import IPv4Network

import pytest

from engine.errors import Conflict, Forbidden, InvalidArgument, NotFound
from engine.network import ipam, links, netns
from engine.network.manager import NetworkManager
from engine.network.ports import parse_publish
from tests.engine.network.conftest import cid


def test_ipam_never_clashes_with_host_routes_or_other_networks(netman):
    host = ipam.host_networks()
    made = [netman.create(f"auto{i}") for i in range(3)]
    subnets = [IPv4Network(n["IPAM"]["Config"][0]["Subnet"]) for n in made]
    for i, net in enumerate(subnets):
        assert not any(net.overlaps(h) for h in host)
        assert not any(net.overlaps(o) for o in subnets[i + 1 :])
        assert made[i]["IPAM"]["Config"][0]["Gateway"] == str(net.network_address + 1)
    with pytest.raises(Conflict, match="overlaps network"):
        netman.create("clash", subnet=str(subnets[0]))
    for n in made:
        netman.remove(n["Id"])


def test_given_subnet_gateway_and_fixed_address(netman):
    net = netman.create("fixed", subnet="10.213.0.0/24", gateway="10.213.0.254")
    assert net["IPAM"]["Config"] == [{"Subnet": "10.213.0.0/24", "Gateway": "10.213.0.254"}]
    sb = netman.setup(cid(), "f1", "f1", "fixed", {"fixed": {"ipv4_address": "10.213.0.77"}})
    assert sb.settings["IPAddress"] == "10.213.0.77"
    assert sb.settings["Gateway"] == "10.213.0.254"
    assert sb.settings["MacAddress"] == "02:42:0a:d5:00:4d"
    with pytest.raises(Conflict, match="already in use"):
        netman.setup(cid(), "f2", "f2", "fixed", {"fixed": {"ipv4_address": "10.213.0.77"}})
    other = netman.setup(cid(), "f3", "f3", "fixed")
    assert other.settings["IPAddress"] not in ("10.213.0.77", "10.213.0.254", "10.213.0.0")
    out = subprocess.run(
        ["nsenter", f"--net={sb.netns_path}", "ip", "route"], capture_output=True, text=True
    ).stdout
    assert "default via 10.213.0.254 dev eth0" in out
    with pytest.raises(Conflict, match="active endpoints"):
        netman.remove("fixed")
    netman.teardown(sb.container_id)
    netman.teardown(other.container_id)
    netman.remove("fixed")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "bad name"}, InvalidArgument, "network name"),
        ({"name": "x", "subnet": "10.0.0.1/24"}, InvalidArgument, "host bits"),
        ({"name": "x", "subnet": "10.9.0.0/24", "gateway": "10.8.0.1"}, InvalidArgument, "gateway"),
        ({"name": "x", "subnet": "192.0.2.0/25"}, Conflict, "host's route"),
        ({"name": "x", "driver": "overlay"}, InvalidArgument, "driver"),
        ({"name": "bridge"}, Conflict, "already exists"),
    ],
)
def test_bad_network_requests_are_refused_clearly(netman, kwargs, error, match):
    before = {n["Name"] for n in netman.list()}
    with pytest.raises(error, match=match):
        netman.create(**kwargs)
    assert {n["Name"] for n in netman.list()} == before


def test_predefined_networks_and_filters(netman):
    names = {n["Name"]: n for n in netman.list()}
    assert names["bridge"]["Driver"] == "bridge" and names["host"]["Driver"] == "host"
    assert names["none"]["Driver"] == "null"
    with pytest.raises(Forbidden):
        netman.remove("host")
    netman.create("lab", labels={"course": "redes"})
    assert [n["Name"] for n in netman.list({"label": ["course=redes"]})] == ["lab"]
    assert [n["Name"] for n in netman.list({"type": ["custom"]})] == ["lab"]
    assert {n["Name"] for n in netman.list({"type": {"builtin": True}})} == {
        "bridge", "host", "none",
    }
    assert netman.inspect(names["host"]["Id"][:10])["Name"] == "host"
    with pytest.raises(NotFound):
        netman.inspect("nope")
    assert netman.prune() == {"NetworksDeleted": ["lab"]}


def test_host_and_none_modes(netman):
    host = netman.setup(cid(), "h", "h", "host")
    assert host.netns_path is None
    assert "host" in host.settings["Networks"]
    none = netman.setup(cid(), "n", "n", "none")
    assert none.netns_path == ""
    assert none.settings["IPAddress"] == ""
    assert host.container_id in netman.inspect("host")["Containers"]
    with pytest.raises(Conflict):
        netman.connect("bridge", none.container_id)
    netman.teardown(host.container_id)
    netman.teardown(none.container_id)
    assert netman.inspect("host")["Containers"] == {}


def test_state_survives_a_new_manager_and_recover_cleans_a_crash(netman, tmp_path):
    netman.create("keep")
    a = netman.setup(cid(), "a", "a", "keep", None, {"80/tcp": [{"HostPort": "18282"}]})
    b = netman.setup(cid(), "b", "b", "keep")
    # A "crash": the namespace of b vanishes (as after a reboot) and a stray veth appears.
    stray = f"{netman.prefix}vdead"
    subprocess.run(["ip", "link", "add", stray, "type", "veth", "peer", "name", f"{stray}p"],
                   check=True)
    subprocess.run(["umount", "-l", b.netns_path], check=True)
    orphan = netns.create(netman.run_dir / "netns" / ("f" * 64))  # a crash mid-setup
    fresh = NetworkManager(netman.root, netman.run_dir, netman.events, _Cfg(netman.prefix))
    removed = fresh.recover()
    assert removed["sandboxes"] == [b.container_id]
    assert stray in removed["links"]
    assert removed["netns"] == ["f" * 64] and not orphan.exists()
    assert set(fresh.inspect("keep")["Containers"]) == {a.container_id}
    assert not any(name.startswith(stray) for name in links.host_links(netman.prefix))
    table = subprocess.run(["nft", "list", "table", "ip", netman.prefix],
                           capture_output=True, text=True).stdout
    assert "dport 18282" in table
    # The worker learns only a is gone: recover(live=[]) removes everything of it.
    fresh.recover(live_container_ids=[])
    assert fresh.inspect("keep")["Containers"] == {}
    assert not os.listdir(netman.run_dir / "netns")
    assert "dport 18282" not in subprocess.run(
        ["nft", "list", "table", "ip", netman.prefix], capture_output=True, text=True
    ).stdout
    fresh.remove("keep")


class _Cfg:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix


@pytest.mark.parametrize(
    ("spec", "key", "binding"),
    [
        ("80", "80/tcp", {"HostIp": "", "HostPort": ""}),
        ("8080:80", "80/tcp", {"HostIp": "", "HostPort": "8080"}),
        ("127.0.0.1:8080:80/udp", "80/udp", {"HostIp": "127.0.0.1", "HostPort": "8080"}),
        ("127.0.0.1::80", "80/tcp", {"HostIp": "127.0.0.1", "HostPort": ""}),
    ],
)
def test_parse_publish(spec, key, binding):
    assert parse_publish(spec) == (key, binding)


@pytest.mark.parametrize("spec", ["", "x:80", "80/sctp", "1.2.3:80:80", "99999:80", "8080:0"])
def test_parse_publish_refuses_garbage(spec):
    with pytest.raises(InvalidArgument):
        parse_publish(spec)


def test_setup_on_a_missing_network_makes_nothing(netman):
    with pytest.raises(NotFound, match="nope"):
        netman.setup(cid(), "x", "x", "nope")
    with pytest.raises(NotFound, match="not running"):
        netman.setup(cid(), "y", "y", "container:ghost")
    with pytest.raises(InvalidArgument, match="port"):
        netman.setup(cid(), "z", "z", "bridge", None, {"80/sctp": [{}]})
    assert not list((netman.run_dir / "net").glob("*"))
    assert not list((netman.run_dir / "netns").glob("*"))
    assert not list((netman.root / "sandboxes").glob("*.json"))
