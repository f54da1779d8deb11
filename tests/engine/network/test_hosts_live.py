"""A running container's /etc/hosts follows its networks (issue 5), as in Docker:
peers that join later are learnt, peers that leave are forgotten, a network
connected later brings its names."""

from __future__ import annotations

from pathlib import Path

from tests.engine.network.conftest import output


def _exec(engine, container_id: str, *cmd: str) -> tuple[int, str]:
    exec_id = engine.containers.exec_create(container_id, list(cmd))
    session = engine.containers.exec_start(exec_id)
    try:
        out, err = session.output(timeout=20)
        code = session.wait(timeout=20)
    finally:
        session.close()
    return code, (out + err).decode()


def _hosts(engine, container_id: str) -> str:
    code, text = _exec(engine, container_id, "cat", "/etc/hosts")
    assert code == 0, text
    return text


def _names(hosts: str) -> set[str]:
    return {word for line in hosts.splitlines() for word in line.split()[1:]}


def test_running_container_learns_and_forgets_peers(net_engine):
    engine, run = net_engine
    engine.networks.create("live-net")
    a = run(name="live-a", cmd=["sleep", "60"], network_mode="live-net")
    assert "live-b" not in _names(_hosts(engine, a.id))
    b = run(name="live-b", cmd=["sleep", "60"], network_mode="live-net",
            networks={"live-net": {"aliases": ["bee"]}})
    b_ip = b.to_docker_inspect()["NetworkSettings"]["Networks"]["live-net"]["IPAddress"]
    hosts = _hosts(engine, a.id)
    assert any(line.split()[:1] == [b_ip] and "live-b" in line.split() and "bee" in line.split()
               for line in hosts.splitlines()), hosts
    code, text = _exec(engine, a.id, "ping", "-c1", "-W2", "live-b")
    assert code == 0 and f"({b_ip})" in text, text
    # What inspect calls HostsPath is the file the container sees.
    assert Path(a.to_docker_inspect()["HostsPath"]).read_text() == hosts
    engine.containers.remove(b.id, force=True)
    hosts = _hosts(engine, a.id)
    assert not {"live-b", "bee"} & _names(hosts) and b_ip not in hosts.split(), hosts
    code, text = _exec(engine, a.id, "ping", "-c1", "-W1", "live-b")
    assert code != 0, text


def test_connect_brings_the_new_networks_names(net_engine):
    engine, run = net_engine
    engine.networks.create("live-side")
    server = run(name="live-server", cmd=["sleep", "60"], network_mode="live-side")
    client = run(name="live-client", cmd=["sleep", "60"])  # the default bridge: no names
    assert "live-server" not in _names(_hosts(engine, client.id))
    engine.networks.connect("live-side", client.id)
    assert "live-server" in _names(_hosts(engine, client.id))
    assert "live-client" in _names(_hosts(engine, server.id))
    code, text = _exec(engine, client.id, "ping", "-c1", "-W2", "live-server")
    assert code == 0, text
    engine.networks.disconnect("live-side", client.id)
    assert "live-server" not in _names(_hosts(engine, client.id))
    assert "live-client" not in _names(_hosts(engine, server.id))


def test_a_container_sharing_a_namespace_shares_the_hosts_file(net_engine):
    engine, run = net_engine
    engine.networks.create("live-share")
    base = run(name="live-base", cmd=["sleep", "60"], network_mode="live-share")
    side = run(name="live-sidecar", cmd=["sleep", "60"], network_mode=f"container:{base.id}")
    run(name="live-late", cmd=["sleep", "60"], network_mode="live-share")
    assert "live-late" in _names(_hosts(engine, side.id))
    code, text = output(engine, run(name="live-probe", network_mode="live-share",
                                    cmd=["ping", "-c1", "-W2", "live-base"]).id)
    assert code == 0, text


def test_a_stopped_container_keeps_its_hosts_file_and_it_is_live_again_when_started(net_engine):
    engine, run = net_engine
    engine.networks.create("kept-net")
    c = run(name="kept-a", cmd=["sleep", "60"], network_mode="kept-net")
    hosts = Path(c.to_docker_inspect()["HostsPath"])
    assert hosts == c.dir / "hosts"  # as Docker's containers/<id>/hosts
    assert c.id[:12] in _names(hosts.read_text())  # its own name: the hostname
    engine.containers.stop(c.id, timeout=1)
    stopped = Path(engine.containers.get(c.id).to_docker_inspect()["HostsPath"])
    assert stopped == hosts and c.id[:12] in _names(hosts.read_text())  # its last content
    engine.containers.start(c.id)
    assert Path(engine.containers.get(c.id).to_docker_inspect()["HostsPath"]) == hosts
    run(name="kept-b", cmd=["sleep", "60"], network_mode="kept-net")
    assert "kept-b" in _names(hosts.read_text())  # the same file, rewritten live
