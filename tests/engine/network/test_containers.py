"""End to end: real busybox containers on estiba's networks (runtime + network manager)."""

from __future__ import annotations

import time
import urllib.request

from tests.engine.network.conftest import output


def test_containers_reach_each_other_by_name_not_across_networks(net_engine):
    engine, run = net_engine
    engine.networks.create("e2e-front")
    engine.networks.create("e2e-back")
    alpha = run(name="e2e-alpha", cmd=["sleep", "60"], network_mode="e2e-front",
                networks={"e2e-front": {"aliases": ["db"]}})
    endpoint = alpha.to_docker_inspect()["NetworkSettings"]["Networks"]["e2e-front"]
    alpha_ip = endpoint["IPAddress"]
    beta = run(name="e2e-beta", cmd=["sh", "-c", "ping -c1 -W2 e2e-alpha && ping -c1 -W2 db"],
               network_mode="e2e-front")
    code, text = output(engine, beta.id)
    assert code == 0, text
    assert f"({alpha_ip})" in text
    gamma = run(name="e2e-gamma", cmd=["ping", "-c1", "-W1", alpha_ip], network_mode="e2e-back")
    code, text = output(engine, gamma.id)
    assert code == 1, f"a container on another network reached {alpha_ip}: {text}"
    seen = engine.networks.inspect("e2e-front")["Containers"]
    assert seen[alpha.id]["Name"] == "e2e-alpha"
    assert seen[alpha.id]["IPv4Address"] == f"{alpha_ip}/{endpoint['IPPrefixLen']}"


def test_published_port_and_connect(net_engine):
    engine, run = net_engine
    web = run(name="e2e-web", cmd=["httpd", "-f", "-p", "80", "-h", "/etc"],
              port_bindings={"80/tcp": [{"HostIp": "", "HostPort": ""}]})
    port = web.to_docker_inspect()["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/passwd", timeout=2) as resp:
                body = resp.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert body.startswith("root:x:0:0")
    # Connect the running server to a user network: a container there fetches it by name.
    engine.networks.create("e2e-side")
    engine.networks.connect("e2e-side", web.id, aliases=["www"])
    client = run(name="e2e-client", network_mode="e2e-side",
                 cmd=["sh", "-c", "wget -q -O - http://www/group"])
    code, text = output(engine, client.id)
    assert code == 0 and text.startswith("root:x:0:"), text
    engine.networks.disconnect("e2e-side", web.id)
    assert web.id not in engine.networks.inspect("e2e-side")["Containers"]
