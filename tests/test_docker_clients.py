"""The engine end to end: `lab daemon` driven by the stock docker CLI and by the Docker SDK for
Python, each scenario asserting what a user of that client sees."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import docker
import pytest

from chapters.harness import DOCKER, LAB, Terminal, children, lab_processes, supervisor_of, wait_until


# --- the docker CLI

def test_docker_run_rm_prints_hello_and_leaves_nothing(daemon):
    result = daemon.docker("run", "--rm", "busybox", "echo", "hello")
    assert (result.returncode, result.stdout) == (0, "hello\n"), result.stderr
    assert daemon.docker("ps", "-a", "-q").stdout == ""


def test_docker_run_passes_on_exit_status_and_both_streams(daemon):
    result = daemon.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    missing = daemon.docker("run", "--rm", "busybox", "nosuchcommand")
    assert missing.returncode == 127 and 'exec "nosuchcommand": executable file not found' in missing.stderr


def test_the_container_gets_only_its_stdin_stdout_and_stderr(daemon):
    # docker run -i attaches before the start: the client's connection must not reach PID 1
    for flags in ([], ["-i"]):
        shown = daemon.docker("run", "--rm", *flags, "busybox", "sh", "-c", "ls /proc/1/fd; true", input="")
        assert shown.stdout.split() == ["0", "1", "2"], shown.stderr


def test_input_the_container_leaves_unread_does_not_reset_the_client(daemon):
    """`seq 1000000 | docker run -i busybox head -2`: head exits with input still coming. The
    engine closed the connection with that input unread, which resets a Unix socket's other end:
    the client read "connection reset by peer" and exited 1 (one run in five). It now reads on
    while the client sends (relay.drain)."""
    import subprocess
    from chapters.harness import DOCKER
    for _ in range(8):                                            # (each about 0.3 s: 7 MB sent)
        ran = subprocess.run(f"seq 1000000 | {DOCKER} run --rm -i busybox head -2", shell=True, capture_output=True,
                             text=True, env=daemon.env, timeout=60)
        assert (ran.returncode, ran.stdout, ran.stderr) == (0, "1\n2\n", ""), ran.stderr


def test_hanging_up_does_not_wait_on_a_client_that_sends_nothing():
    """`docker run -it busybox sh`, then `exit`: the client's input is open and idle. Before it
    hangs up, the engine reads what a client still sends (relay.drain); on a socket with a timeout
    (attach gives each client 5 s) Python's recv waits it out first, MSG_DONTWAIT or not: every
    such run, and `sleep 8 | docker run -i ...`, ended 5 s after its container."""
    import socket
    import threading
    from lab import relay
    ours, theirs = socket.socketpair()
    ours.settimeout(60)
    done = threading.Event()
    threading.Thread(target=lambda: (relay.drain(ours), done.set()), daemon=True).start()
    try:
        assert done.wait(30), "drain waited for a client that sends nothing (and has not hung up)"
    finally:
        theirs.close()                      # (a drain still waiting reads its end, and returns)


def test_docker_run_options_reach_the_container(daemon, tmp_path):
    result = daemon.docker("run", "--rm", "--name", "opts", "--hostname", "boxy", "-e", "GREETING=hi",
                           "-w", "/tmp", "--cpus", "0.5", "--pids-limit", "50", "busybox", "sh", "-c",
                           "echo $GREETING $(hostname) $(pwd)")
    assert result.stdout == "hi boxy /tmp\n", result.stderr
    pinned = daemon.docker("run", "--rm", "--cpuset-cpus", "0", "busybox", "grep", "Cpus_allowed_list", "/proc/self/status")
    assert pinned.stdout.split() == ["Cpus_allowed_list:", "0"], pinned.stderr          # (a cpuset cgroup)
    box = daemon.client().containers.create("busybox", "true", cpuset_cpus="0")
    assert box.attrs["HostConfig"]["CpusetCpus"] == "0"
    box.remove()


def test_docker_run_i_passes_stdin_and_its_end(daemon):
    result = daemon.docker("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done", input="one\ntwo\n")
    assert result.stdout == "one\ntwo\ndone\n", result.stderr


def test_detached_container_logs_exec_stop_rm(daemon):
    started = daemon.docker("run", "-d", "--name", "web", "busybox", "sh", "-c",
                            "echo ready; echo oops >&2; trap 'echo bye; exit 3' TERM; while true; do sleep 0.05; done")
    assert started.returncode == 0 and len(started.stdout.strip()) == 64, started.stderr
    wait_until(lambda: daemon.docker("logs", "web").stdout == "ready\n", what="the log")
    assert daemon.docker("logs", "web").stderr == "oops\n"
    assert "Up " in daemon.docker("ps").stdout
    ran = daemon.docker("exec", "web", "sh", "-c", "echo in $(hostname); exit 4")
    assert (ran.returncode, ran.stdout) == (4, f"in {started.stdout[:12]}\n")
    assert daemon.docker("exec", "-i", "web", "cat", input="piped\n").stdout == "piped\n"
    assert daemon.docker("stop", "web").stdout == "web\n"
    assert daemon.docker("inspect", "-f", "{{.State.ExitCode}}", "web").stdout == "3\n"
    assert daemon.docker("logs", "web").stdout == "ready\nbye\n"
    assert "Exited (3)" in daemon.docker("ps", "-a").stdout
    assert daemon.docker("rm", "web").stdout == "web\n"
    assert daemon.docker("ps", "-a", "-q").stdout == ""


def test_docker_wait_and_logs_follow(daemon):
    daemon.docker("run", "-d", "--name", "ticker", "busybox", "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.1; done; exit 7")
    assert daemon.docker("logs", "-f", "ticker").stdout == "1\n2\n3\n"
    assert daemon.docker("wait", "ticker").stdout == "7\n"
    daemon.docker("rm", "ticker")


def test_a_memory_hog_is_killed_with_137_and_inspect_says_oomkilled(daemon):
    result = daemon.docker("run", "--name", "hog", "-m", "16m", "busybox", "sh", "-c", "x=a; while true; do x=$x$x; done")
    assert result.returncode == 137, result.stderr
    assert daemon.docker("inspect", "-f", "{{.State.OOMKilled}} {{.HostConfig.Memory}}", "hog").stdout == "true 16777216\n"
    daemon.docker("rm", "hog")


def test_a_volume_outlives_its_containers(daemon):
    volumes = lambda: daemon.docker("volume", "ls", "-q").stdout.split()
    assert daemon.docker("volume", "create", "kept").stdout == "kept\n"
    assert daemon.docker("run", "--rm", "-v", "kept:/data", "busybox", "sh", "-c", "echo kept > /data/f").returncode == 0
    assert daemon.docker("run", "--rm", "-v", "kept:/data:ro", "busybox", "cat", "/data/f").stdout == "kept\n"
    refused = daemon.docker("run", "--rm", "-v", "kept:/data:ro", "busybox", "touch", "/data/g")
    assert refused.returncode == 1 and "Read-only file system" in refused.stderr
    assert "kept" in volumes()
    assert daemon.docker("volume", "rm", "kept").stdout == "kept\n"
    assert "kept" not in volumes()
    assert daemon.docker("volume", "rm", "kept").returncode == 1           # gone: an error, but with -f
    assert daemon.docker("volume", "rm", "-f", "kept").returncode == 0     # (docker's: a cleanup's rm -f)


def test_rm_refuses_a_running_container_and_rm_f_kills_it(daemon):
    daemon.docker("run", "-d", "--name", "busy", "busybox", "sleep", "600")
    refused = daemon.docker("rm", "busy")
    assert refused.returncode == 1 and "container busy is running" in refused.stderr
    assert daemon.docker("rm", "-f", "busy").stdout == "busy\n"
    assert daemon.docker("ps", "-a", "-q").stdout == ""


def test_version_info_images_and_pull(daemon):
    version = daemon.docker("version", "-f", "{{.Server.APIVersion}} {{.Client.APIVersion}}")
    server, client = version.stdout.split()
    assert server == "1.47", version.stderr
    # the client speaks the older of the two versions: Debian 12's its own 1.41, a newer one 1.47
    assert tuple(map(int, client.split("."))) <= (1, 47)
    info = daemon.docker("info")
    assert "Storage Driver: overlay" in info.stdout
    # docker info warns of what the host lacks, from the daemon's own list: --cpu-shares always works
    status, fields = daemon.request("GET", "/v1.41/info")
    assert status == 200 and fields["CPUShares"] and fields["Warnings"] == [
        line for line in info.stderr.splitlines() if line.startswith("WARNING")], info.stderr
    assert daemon.docker("pull", "busybox").returncode == 0
    assert "busybox:latest" in daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert json.loads(daemon.docker("image", "inspect", "busybox").stdout)[0]["Os"] == "linux"
    for name in ("library/busybox", "docker.io/library/busybox"):       # Docker Hub's names of busybox
        ran = daemon.docker("run", "--rm", "--network", "none", name, "echo", "hi")
        assert (ran.returncode, ran.stdout) == (0, "hi\n"), (name, ran.stderr)
    unknown = daemon.docker("inspect", "k")                        # not a container, image, volume...
    assert unknown.returncode == 1 and unknown.stderr.strip() == "Error: No such object: k"
    nowhere = "127.0.0.1:9/nosuch"                                # port 9: no registry listens there
    missing = daemon.docker("pull", nowhere)
    assert missing.returncode == 1 and "cannot reach the registry at 127.0.0.1:9" in missing.stderr
    with pytest.raises(docker.errors.APIError, match="cannot reach the registry"):   # the SDK pulls too
        daemon.client().containers.run(nowhere, "true")
    run = daemon.docker("run", "--rm", nowhere, "true")           # docker run pulls what is missing
    assert run.returncode == 125 and "Unable to find image '127.0.0.1:9/nosuch:latest' locally" in run.stderr
    assert "cannot reach the registry at 127.0.0.1:9" in run.stderr


def test_docker_rmi_untags_and_deletes_what_nothing_uses(daemon):
    daemon.docker("run", "--name", "base", "busybox", "touch", "/made")
    subprocess.run([LAB, "commit", "base", "made:v1"], check=True, capture_output=True)
    daemon.docker("rm", "base")
    daemon.docker("run", "-d", "--name", "user", "made:v1", "sleep", "600")
    refused = daemon.docker("rmi", "made:v1")
    assert refused.returncode == 1 and "is used by the container user" in refused.stderr
    daemon.docker("rm", "-f", "user")
    removed = daemon.docker("rmi", "made:v1").stdout.splitlines()
    assert removed[0] == "Untagged: made:v1" and removed[1].startswith("Deleted: sha256:")
    assert "made" not in daemon.docker("images").stdout


def test_docker_rmi_f_removes_a_stopped_containers_image_and_the_container_keeps_its_files(daemon, lab_root):
    """As docker's: forced, an image a stopped container uses goes (the container keeps its
    layers, which go with it); a running container's only loses its tag, and by its id not even
    that (`docker rmi -f $(docker images -q)` cleans up all it can)."""
    daemon.docker("run", "--name", "base", "busybox", "sh", "-c", "echo made > /made")
    made = subprocess.run([LAB, "commit", "base", "made:v2"], check=True, capture_output=True, text=True).stdout.strip()
    daemon.docker("rm", "base")
    stored = lambda: {p.name for p in (lab_root / "layers").iterdir() if not p.name.startswith(".")}  # noqa: E731
    layers = lambda image: {d[7:] for d in json.loads(daemon.docker("image", "inspect", image).stdout)[0]["RootFS"]["Layers"]}  # noqa: E731
    its_own = layers(made) - layers("busybox")
    assert its_own and its_own <= stored()
    assert daemon.docker("run", "-d", "--name", "running", "made:v2", "sleep", "600").returncode == 0
    refused = daemon.docker("rmi", "-f", made)
    assert refused.returncode == 1 and "(cannot be forced) - image is being used by running container running" \
        in refused.stderr, refused.stderr
    assert daemon.docker("rmi", "-f", "made:v2").stdout.splitlines() == ["Untagged: made:v2"]
    assert daemon.docker("inspect", "-f", "{{.Id}}", made).stdout.strip() == made          # (there still, untagged)
    assert daemon.docker("rm", "-f", "running").returncode == 0
    assert daemon.docker("create", "--name", "stopped", made, "cat", "/made").returncode == 0
    deleted = daemon.docker("rmi", "-f", made)
    assert deleted.stdout.splitlines() == [f"Deleted: {made}"], deleted.stderr           # (its layers stay)
    assert daemon.docker("start", "-a", "stopped").stdout == "made\n"
    committed = daemon.docker("commit", "stopped", "again")
    assert committed.returncode == 1 and "was removed (rmi -f): a commit needs it" in committed.stderr
    assert its_own <= stored()
    assert daemon.docker("rm", "stopped").returncode == 0
    assert not its_own & stored(), "the container's layers outlived it and its image"


def test_what_lab_lacks_is_one_readable_line(daemon):
    swarm = daemon.docker("swarm", "init")
    assert swarm.returncode == 1
    assert swarm.stderr.strip() == ("Error response from daemon: lab daemon does not implement POST "
                                    "/swarm/init: lab serves a subset of the Docker Engine API "
                                    "(see chapters/07_engine/README.md)")
    assert daemon.docker("inspect", "nosuchthing").stderr.strip() == "Error: No such object: nosuchthing"
    runtime = daemon.docker("run", "--rm", "--runtime", "runc", "busybox", "true")
    assert runtime.returncode == 125 and "lab does not support --runtime" in runtime.stderr
    assert daemon.docker("ps", "-a", "-q").stdout == ""                # and nothing was created


def test_docker_networks_and_published_ports(daemon):
    assert daemon.docker("network", "create", "--subnet", "172.31.77.0/24", "mine").returncode == 0
    run = daemon.docker("run", "-d", "--name", "web", "--network", "mine", "-p", "8085:80",
                        "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
    assert run.returncode == 0, run.stderr
    assert daemon.docker("port", "web").stdout == "80/tcp -> 0.0.0.0:8085\n"
    hostname = daemon.docker("inspect", "-f", "{{.Config.Hostname}}", "web").stdout
    fetch = ["busybox", "wget", "-q", "-O-", "http://web/hostname"]
    wait_until(lambda: daemon.docker("run", "--rm", "--network", "mine", *fetch).stdout == hostname, 20,
               "web answering by its name on the network mine")
    with socket.create_connection(("127.0.0.1", 8085), timeout=10) as s:      # the published port
        s.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
        assert b"".join(iter(lambda: s.recv(4096), b"")).endswith(hostname.encode())
    assert "0.0.0.0:8085->80/tcp" in daemon.docker("ps").stdout
    linked = daemon.docker("run", "--rm", "--network", "mine", "--link", "web:db", "-e", "X=1", "busybox", "sh", "-c",
                           "echo $DB_NAME $DB_ENV_HOSTNAME; wget -q -O- http://db/hostname")   # docker's legacy links
    assert linked.stdout.endswith("/db\n" + hostname) and "DB_ENV_HOSTNAME" not in linked.stdout, linked.stderr
    assert "172.31.77." in daemon.docker("inspect", "-f", "{{.NetworkSettings.Networks.mine.IPAddress}}", "web").stdout
    busy = daemon.docker("network", "rm", "mine")
    assert busy.returncode == 1 and "active endpoints" in busy.stderr
    daemon.docker("rm", "-f", "web")
    assert daemon.docker("network", "rm", "mine").stdout == "mine\n"
    client = daemon.client()                                           # the SDK
    net = client.networks.create("sdknet")
    box = client.containers.run("busybox", "sleep 60", detach=True, network="sdknet", ports={"80/tcp": None})
    box.reload()
    assert box.attrs["NetworkSettings"]["Networks"]["sdknet"]["Gateway"] == net.attrs["IPAM"]["Config"][0]["Gateway"]
    assert int(box.ports["80/tcp"][0]["HostPort"]) > 0
    box.remove(force=True)
    net.remove()
    every = daemon.docker("run", "-d", "--name", "every", "-P", "--expose", "7000", "--expose", "7001/udp",
                          "busybox", "httpd", "-f", "-p", "7000", "-h", "/etc")                # -P: all it exposes
    assert every.returncode == 0, every.stderr
    shown = dict(line.split(" -> ") for line in daemon.docker("port", "every").stdout.splitlines())
    assert sorted(shown) == ["7000/tcp", "7001/udp"] and all(int(a.rsplit(":", 1)[1]) > 0 for a in shown.values())
    assert daemon.docker("inspect", "-f", "{{.HostConfig.PublishAllPorts}}", "every").stdout == "true\n"
    with socket.create_connection(("127.0.0.1", int(shown["7000/tcp"].rsplit(":", 1)[1])), timeout=10) as s:
        s.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
        assert b"200 OK" in b"".join(iter(lambda: s.recv(4096), b""))
    daemon.docker("rm", "-f", "every")
    spaced = client.networks.create("test 01")                        # (docker takes spaces in its names)
    assert client.networks.get("test 01").id == spaced.id
    spaced.remove()
    assert [n.name for n in client.networks.list()] == ["bridge", "host", "none"]


def test_dns_options_make_the_containers_resolv_conf(daemon, lab):
    """--dns, --dns-search and --dns-option replace the host's nameserver, search and options
    lines, as docker's; for a container without a network of its own they are refused."""
    shown = daemon.docker("run", "--rm", "--dns", "9.9.9.9", "--dns", "149.112.112.112", "--dns-search", "example.com",
                          "--dns-option", "ndots:2", "busybox", "cat", "/etc/resolv.conf")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line for line in lines if line.split()[0] in ("nameserver", "search", "options")] == [
        "nameserver 9.9.9.9", "nameserver 149.112.112.112", "search example.com", "options ndots:2"], lines
    refused = lab("run", "--rm", "--network", "host", "--dns", "9.9.9.9", "busybox", "true")
    assert refused.returncode == 125 and "--dns, --dns-search and --dns-option are for a container" in refused.stderr
    bad = lab("run", "--rm", "--dns", "nine", "busybox", "true")
    assert bad.returncode == 125 and "invalid --dns 'nine'" in bad.stderr
    lines = "fe80::1%x\nnameserver 6.6.6.6"         # (an IPv6 zone is any text to Python's ipaddress)
    bad = lab("run", "--rm", "--dns", lines, "busybox", "true")
    assert bad.returncode == 125 and "invalid --dns" in bad.stderr, bad.stderr
    status, answer = daemon.request("POST", "/v1.41/containers/create", json.dumps(
        {"Image": "busybox", "HostConfig": {"Dns": [lines]}}).encode())
    assert status == 400 and "invalid --dns" in answer["message"], answer


def test_docker_compose_up_s_requests_give_services_that_find_each_other_by_name(daemon):
    """What docker-compose 1.x sends for `up` (here with the SDK it uses): an attachable project
    network; each service's container created on it, disconnected and connected again with the
    service's name as an alias (from API 1.45 on), started; the project's events followed by its
    label; and to recreate a container, its image inspected at API 1.44 for ContainerConfig."""
    client = daemon.client()
    api = client.api
    project = {"com.docker.compose.project": "proj"}
    network = client.networks.create("proj_default", driver="bridge", attachable=True, labels=project)
    conn = daemon.connection()
    conn.request("GET", "/v1.47/events?filters=" + urllib.parse.quote(json.dumps({"label": ["com.docker.compose.project=proj"]})))
    events = conn.getresponse()
    try:
        assert events.status == 200, events.read()
        assert network.attrs["Attachable"] is True and network.attrs["Options"] == {}   # (compose compares them)
        assert daemon.docker("run", "-d", "--name", "stranger", "busybox", "sleep", "600").returncode == 0   # no label
        for service, command in (("web", ["httpd", "-f", "-p", "80", "-h", "/etc"]), ("client", ["sleep", "600"])):
            made = api.create_container("busybox", command, name=f"proj_{service}_1", labels=project,
                                        host_config=api.create_host_config(network_mode="proj_default"))
            api.disconnect_container_from_network(made["Id"], "proj_default")
            api.connect_container_to_network(made["Id"], "proj_default", aliases=[service])
            api.start(made["Id"])
        seen = []                                          # (two containers in one look: either first)
        while sum(event["Action"] == "start" for event in seen) < 2:
            seen.append(json.loads(events.readline()))
        assert sorted((e["Actor"]["Attributes"]["name"], e["Action"]) for e in seen) == [
            ("proj_client_1", "create"), ("proj_client_1", "start"), ("proj_web_1", "create"), ("proj_web_1", "start")]
        hostname = api.inspect_container("proj_web_1")["Config"]["Hostname"]
        fetch = lambda: daemon.docker("exec", "proj_client_1", "wget", "-qO-", "http://web/hostname").stdout.strip()  # noqa: E731
        wait_until(lambda: fetch() == hostname, 20, "the client reaching the web service by its name")
        assert sorted(api.inspect_container("proj_web_1")["NetworkSettings"]["Networks"]) == ["proj_default"]
        status, image = daemon.request("GET", "/v1.44/images/busybox/json")
        assert status == 200 and image["ContainerConfig"]["Cmd"] == ["sh"]
        status, image = daemon.request("GET", "/v1.45/images/busybox/json")
        assert status == 200 and "ContainerConfig" not in image                        # gone, as in docker's
        # disconnected from its only network while it does not run: lo only, until connected again
        docker = daemon.docker
        links = lambda: [line.split()[1].split("@")[0].rstrip(":") for line in docker("start", "-a", "alone").stdout.splitlines()]  # noqa: E731
        assert docker("create", "--name", "alone", "--network", "proj_default", "busybox", "ip", "-o", "link").returncode == 0
        assert docker("network", "disconnect", "proj_default", "alone").returncode == 0
        assert links() == ["lo"]
        for verb in ("connect", "disconnect", "connect"):                 # (compose, at each `up`)
            assert docker("network", verb, "proj_default", "alone").returncode == 0, verb
        assert links() == ["lo", "eth0"]
        assert docker("create", "--name", "hosted", "--network", "host", "busybox", "true").returncode == 0
        refused = docker("network", "disconnect", "host", "hosted")        # (host: not a network it can leave)
        assert refused.returncode == 1 and "is not connected to network host" in refused.stderr
        # connected again while it runs (with lo only): at once, and at its next start too
        assert docker("create", "--name", "again", "--network", "proj_default", "busybox", "sleep", "600").returncode == 0
        assert docker("network", "disconnect", "proj_default", "again").returncode == 0
        assert docker("start", "again").returncode == 0
        assert docker("network", "connect", "proj_default", "again").returncode == 0
        assert docker("exec", "again", "ip", "-o", "-4", "addr").stdout.count("inet ") == 2       # lo and proj_default
        assert docker("restart", "-t", "0", "again").returncode == 0
        assert docker("exec", "again", "ip", "-o", "-4", "addr").stdout.count("inet ") == 2
    finally:
        conn.close()
        daemon.docker("rm", "-f", "proj_web_1", "proj_client_1", "alone", "again", "stranger", "hosted")
        network.remove()


COMPOSE_FILE = """\
services:
  web:
    image: busybox
    command: httpd -f -p 8080 -h /site
    volumes: ["./site:/site:ro", "data:/data"]
    init: true
  client:
    image: busybox
    command: sleep 600
    depends_on: [web]
    init: true
volumes:
  data:
"""


def test_docker_compose_brings_a_project_up_and_down(daemon, tmp_path):
    """docker-compose (1.x, Debian's: it drives the engine with the Docker SDK) on lab daemon: a
    project network, a volume, two services that find each other by name; a recreate (at API
    1.44, as with docker's engine since 26: compose 1.x reads ContainerConfig, which 1.45
    dropped); down takes it all away. (init: a PID 1 that ends on SIGTERM, so stops are quick.)"""
    compose_command = shutil.which("docker-compose")
    assert compose_command, "docker-compose is missing: run `make setup` (it installs Debian's docker-compose)"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("hello from compose\n")
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE)

    def compose(*args, api=None):
        env = {**daemon.env, **({"COMPOSE_API_VERSION": api} if api else {})}
        return subprocess.run([compose_command, "--ansi", "never", "-p", "proj", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    def fetch():        # (docker-compose exec runs `docker exec`: the docker CLI's own, tested above)
        return daemon.docker("exec", "proj_client_1", "wget", "-qO-", "http://web:8080/").stdout
    try:
        up = compose("up", "-d")
        assert up.returncode == 0 and "Creating network \"proj_default\"" in up.stderr, up.stderr
        wait_until(lambda: fetch() == "hello from compose\n", 30, "the client reaching web by its service's name")
        again = compose("up", "-d", "--force-recreate", api="1.44")
        assert again.returncode == 0 and "Recreating proj_web_1 ... done" in again.stderr, again.stderr
        wait_until(lambda: fetch() == "hello from compose\n", 30, "the recreated web")
    finally:
        down = compose("down", "-v")
    assert down.returncode == 0 and "Removing volume proj_data" in down.stderr, down.stderr
    assert daemon.docker("ps", "-a", "-q").stdout == ""
    assert "proj_default" not in daemon.docker("network", "ls").stdout


def test_a_start_that_works_after_one_that_failed_forgets_the_failure(daemon):
    docker = daemon.docker
    try:
        assert docker("create", "--name", "later", "busybox", "sleep", "600").returncode == 0
        assert docker("create", "--name", "joiner", "--network", "container:later", "busybox", "echo", "joined").returncode == 0
        failed = docker("start", "-a", "joiner")                   # later is not running: no network to join
        assert failed.returncode != 0 and "cannot join network of a non running container" in failed.stderr
        state = "{{.State.Status}} {{.State.ExitCode}} {{.State.StartedAt}} [{{.State.Error}}]"
        shown = docker("inspect", "-f", state, "joiner").stdout        # (docker's: it never ran, so "created")
        assert shown.startswith("created 125 0001-01-01T00:00:00Z [") and "non running" in shown, shown
        assert docker("ps", "-a", "-f", "name=joiner", "--format", "{{.Status}}").stdout == "Created\n"
        assert docker("start", "later").returncode == 0
        again = docker("start", "-a", "joiner")
        assert (again.returncode, again.stdout) == (0, "joined\n"), again.stderr     # (the wait said the old error)
        assert docker("inspect", "-f", "{{.State.ExitCode}} [{{.State.Error}}]", "joiner").stdout == "0 []\n"
        assert docker("stop", "-t", "0", "later").returncode == 0
        assert docker("start", "joiner").returncode != 0             # it ran before: now "exited", with the failure's status
        assert docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "joiner").stdout == "exited 125\n"
    finally:
        docker("rm", "-f", "joiner", "later")


def test_add_host_is_a_line_of_etc_hosts_with_a_network_or_without(daemon):
    for network in ("bridge", "none"):
        hosts = daemon.docker("run", "--rm", "--network", network, "--add-host", "db.local:10.0.0.5",
                              "busybox", "cat", "/etc/hosts")
        assert "\n10.0.0.5\tdb.local\n" in hosts.stdout, hosts.stderr
    box = daemon.client().containers.create("busybox", "true", extra_hosts={"db.local": "10.0.0.5"})
    assert box.attrs["HostConfig"]["ExtraHosts"] == ["db.local:10.0.0.5"]
    box.remove()


def test_a_link_local_ip_is_one_more_address_of_eth0(daemon):
    # (docker's CLI 20.10 sends --link-local-ip only for a user network: on the default bridge it drops it)
    assert daemon.docker("network", "create", "--subnet", "172.31.78.0/24", "linked").returncode == 0
    shown = daemon.docker("run", "--rm", "--network", "linked", "--link-local-ip", "169.254.8.8",
                          "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
    assert "inet 169.254.8.8/16" in shown.stdout and "inet 172.31.78." in shown.stdout, shown.stderr
    assert daemon.docker("network", "rm", "linked").returncode == 0
    api = daemon.client().api
    box = api.create_container("busybox", "true", networking_config=api.create_networking_config(
        {"bridge": api.create_endpoint_config(link_local_ips=["169.254.8.9"])}))
    networks = api.inspect_container(box)["NetworkSettings"]["Networks"]
    assert networks["bridge"]["IPAMConfig"] == {"LinkLocalIPs": ["169.254.8.9"]}
    api.remove_container(box)


def test_an_endpoints_sysctls_are_refused_as_sysctl_is(daemon):
    """docker 25 writes driver-opt com.docker.network.endpoint.sysctls into the container's
    /proc/sys; lab takes no sysctls, and says so instead of keeping them unused."""
    api = daemon.client().api
    sysctls = {"com.docker.network.endpoint.sysctls": "net.ipv4.conf.IFNAME.log_martians=1"}
    with pytest.raises(docker.errors.APIError, match="lab does not set sysctls") as refused:
        api.create_container("busybox", "true", name="tuned", networking_config=api.create_networking_config(
            {"bridge": api.create_endpoint_config(driver_opt=sysctls)}))
    assert refused.value.status_code == 400 and "tuned" not in daemon.docker("ps", "-a").stdout
    box = api.create_container("busybox", "true", networking_config=api.create_networking_config(
        {"bridge": api.create_endpoint_config(driver_opt={"com.example.other": "1"})}))   # the driver's own: kept
    assert api.inspect_container(box)["NetworkSettings"]["Networks"]["bridge"]["DriverOpts"] == {"com.example.other": "1"}
    api.remove_container(box)
    odd = {"Image": "busybox", "NetworkingConfig": {"EndpointsConfig": {"bridge": {"DriverOpts": "x=1"}}}}
    assert daemon.request("POST", "/containers/create", json.dumps(odd).encode()) == (
        400, {"message": 'an endpoint\'s DriverOpts is an object of strings: {"name": "value"}'})


def test_neither_the_bridge_nor_a_container_takes_ipv6_router_advertisements(lab):
    """lab's networks have no IPv6: with it on, the bridge and each container's interfaces took the
    router advertisements a container sent, which made it the IPv6 router of the host and of its
    neighbours (docker's CVE-2020-13401; a review's reproduction set the host's default route)."""
    shown = lab("run", "--rm", "busybox", "sh", "-c", "cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6; ip -6 addr show eth0")
    assert shown.returncode == 0 and shown.stdout == "1\n", shown.stdout + shown.stderr
    assert Path("/proc/sys/net/ipv6/conf/lab0/disable_ipv6").read_text() == "1\n"    # (the session's own netns)
    assert lab("network", "create", "noipv6").returncode == 0
    try:
        bridge = json.loads((Path(os.environ["LAB_ROOT"]) / "networks" / "noipv6.json").read_text())["Bridge"]
        assert Path(f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6").read_text() == "1\n"
    finally:
        lab("network", "rm", "noipv6")


def test_an_internal_network_reaches_its_own_and_the_host_and_nothing_beyond(daemon):
    import importlib
    chapter = importlib.import_module("chapters.09_network.test_network")     # its "internet"
    world = chapter.Internet()
    try:
        out = f"timeout 3 wget -q -O- http://{chapter.INTERNET}:8000/; echo status $?"
        assert "status 0" in daemon.docker("run", "--rm", "busybox", "sh", "-c", out).stdout   # (it is there)
        assert daemon.docker("network", "create", "--internal", "--subnet", "172.31.78.0/24", "closed").returncode == 0
        assert daemon.docker("network", "inspect", "-f", "{{.Internal}}", "closed").stdout == "true\n"
        run = daemon.docker("run", "-d", "--name", "inside", "--network", "closed", "busybox", "httpd", "-f", "-p", "80",
                            "-h", "/etc")
        assert run.returncode == 0, run.stderr
        hostname = daemon.docker("inspect", "-f", "{{.Config.Hostname}}", "inside").stdout
        fetch = ["busybox", "wget", "-q", "-O-", "http://inside/hostname"]
        wait_until(lambda: daemon.docker("run", "--rm", "--network", "closed", *fetch).stdout == hostname, 20,
                   "inside answering its neighbour on the internal network")
        address = daemon.docker("inspect", "-f", "{{.NetworkSettings.Networks.closed.IPAddress}}", "inside").stdout
        with socket.create_connection((address.strip(), 80), timeout=10) as s:       # the host reaches it
            s.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
            assert b"".join(iter(lambda: s.recv(4096), b"")).endswith(hostname.encode())
        shut_in = daemon.docker("run", "--rm", "--network", "closed", "busybox", "sh", "-c", out).stdout
        assert "status 0" not in shut_in, shut_in                    # but nothing goes out
    finally:
        daemon.docker("rm", "-f", "inside")
        daemon.docker("network", "rm", "closed")
        world.close()


def test_network_connect_and_disconnect_a_running_container(daemon):
    docker = daemon.docker
    for name, subnet in (("front", "172.31.79.0/24"), ("back", "172.31.80.0/24")):
        assert docker("network", "create", "--subnet", subnet, name).returncode == 0
    try:
        for name, net in (("app", "front"), ("db", "back"), ("brief", "front")):
            started = docker("run", "-d", "--name", name, "--network", net, "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
            assert started.returncode == 0, started.stderr
        hostname = {name: docker("inspect", "-f", "{{.Config.Hostname}}", name).stdout.strip() for name in ("app", "db")}
        joined = docker("network", "connect", "--alias", "data", "back", "app")
        assert joined.returncode == 0, joined.stderr
        addresses = docker("exec", "app", "ip", "-o", "-4", "addr").stdout
        assert "eth0    inet 172.31.79." in addresses and "eth1    inet 172.31.80." in addresses, addresses
        fetch = lambda name, url: docker("exec", name, "wget", "-q", "-O-", url).stdout.strip()    # noqa: E731
        wait_until(lambda: fetch("app", "http://db/hostname") == hostname["db"], 20, "app reaching db through back")
        assert fetch("db", "http://data/hostname") == hostname["app"]            # app's alias on back
        networks = docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "app").stdout
        assert sorted(json.loads(networks)) == ["back", "front"]
        members = docker("network", "inspect", "-f", "{{json .Containers}}", "back").stdout
        assert sorted(m["Name"] for m in json.loads(members).values()) == ["app", "db"]
        again = docker("network", "connect", "back", "app")
        assert again.returncode == 1 and "already exists in network back" in again.stderr
        assert docker("network", "connect", "back", "brief").returncode == 0
        assert docker("rm", "-f", "brief").returncode == 0                       # its address on back goes too
        assert docker("network", "disconnect", "back", "app").returncode == 0
        assert "eth1" not in docker("exec", "app", "ip", "-o", "link").stdout
        assert "data" not in docker("exec", "db", "cat", "/etc/hosts").stdout
        assert sorted(json.loads(docker("network", "inspect", "-f", "{{json .Containers}}", "back").stdout)) == \
            [docker("inspect", "-f", "{{.Id}}", "db").stdout.strip()]
        twice = docker("network", "disconnect", "back", "app")
        assert twice.returncode == 1 and "is not connected to network back" in twice.stderr
        assert docker("network", "disconnect", "front", "app").returncode == 0    # its first network, too
        assert "eth0" not in docker("exec", "app", "ip", "-o", "link").stdout
        assert docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "app").stdout.strip() == "{}"
        docker("stop", "-t", "0", "db")
        assert docker("network", "connect", "front", "db").returncode == 0            # from its next start
        networks = docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "db").stdout
        assert sorted(json.loads(networks)) == ["back", "front"]
        assert docker("start", "db").returncode == 0
        addresses = docker("exec", "db", "ip", "-o", "-4", "addr").stdout
        assert "eth0    inet 172.31.80." in addresses and "eth1    inet 172.31.79." in addresses, addresses
        assert docker("network", "disconnect", "front", "db").returncode == 0
        assert docker("create", "--name", "fresh", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc").returncode == 0
        assert docker("network", "connect", "--alias", "new", "back", "fresh").returncode == 0  # (its supervisor,
        assert docker("start", "fresh").returncode == 0                      # made at create, starts it)
        assert "eth1    inet 172.31.80." in docker("exec", "fresh", "ip", "-o", "-4", "addr").stdout
        assert fetch("db", "http://new/hostname") == docker("inspect", "-f", "{{.Config.Hostname}}", "fresh").stdout.strip()
    finally:
        docker("rm", "-f", "app", "db", "brief", "fresh")
    assert docker("network", "rm", "front", "back").returncode == 0             # no address left leased


def test_a_network_of_its_own_addresses_gateway_range_and_fixed_ones(daemon, lab):
    docker = daemon.docker
    made = docker("network", "create", "--subnet", "172.28.0.0/16", "--ip-range", "172.28.5.0/24", "--gateway",
                  "172.28.5.254", "--aux-address", "router=172.28.5.1", "planned")
    assert made.returncode == 0, made.stderr
    try:
        ipam = json.loads(docker("network", "inspect", "-f", "{{json .IPAM}}", "planned").stdout)
        assert ipam == {"Driver": "default", "Options": None, "Config": [{
            "Subnet": "172.28.0.0/16", "IPRange": "172.28.5.0/24", "Gateway": "172.28.5.254",
            "AuxiliaryAddresses": {"router": "172.28.5.1"}}]}
        fixed = docker("run", "-d", "--name", "fixed", "--network", "planned", "--ip", "172.28.5.24", "busybox", "sleep", "600")
        assert fixed.returncode == 0, fixed.stderr
        shown = json.loads(docker("inspect", "-f", "{{json .NetworkSettings.Networks.planned}}", "fixed").stdout)
        assert (shown["IPAddress"], shown["IPAMConfig"], shown["Gateway"]) == \
            ("172.28.5.24", {"IPv4Address": "172.28.5.24"}, "172.28.5.254")
        assert "inet 172.28.5.24/16" in docker("exec", "fixed", "ip", "-o", "-4", "addr").stdout
        assert "default via 172.28.5.254" in docker("exec", "fixed", "ip", "route").stdout
        docker("run", "-d", "--name", "next", "--network", "planned", "busybox", "sleep", "600")
        address = docker("inspect", "-f", "{{.NetworkSettings.Networks.planned.IPAddress}}", "next").stdout.strip()
        assert address.startswith("172.28.5.") and address not in ("172.28.5.1", "172.28.5.24", "172.28.5.254")
        for ip, said in (("172.28.5.24", "Address already in use"), ("172.28.5.254", "gateway or kept for"),
                         ("172.28.5.1", "gateway or kept for"), ("10.0.0.1", "not a host address of the subnet")):
            refused = docker("run", "--rm", "--network", "planned", "--ip", ip, "busybox", "true")
            assert refused.returncode == 125 and said in refused.stderr, refused.stderr
        bridged = lab("run", "--rm", "--ip", "172.30.0.9", "busybox", "true")     # (docker's CLI drops --ip
        assert bridged.returncode == 125 and "not the default bridge" in bridged.stderr   # without --network)
        assert docker("run", "-d", "--name", "elsewhere", "busybox", "sleep", "600").returncode == 0
        joined = docker("network", "connect", "--ip", "172.28.5.30", "planned", "elsewhere")
        assert joined.returncode == 0, joined.stderr
        assert "eth1    inet 172.28.5.30/16" in docker("exec", "elsewhere", "ip", "-o", "-4", "addr").stdout
        assert sorted(docker("ps", "-a", "--format", "{{.Names}}").stdout.split()) == ["elsewhere", "fixed", "next"]
    finally:
        docker("rm", "-f", "fixed", "next", "elsewhere")
    assert docker("network", "rm", "planned").returncode == 0
    bad = lab("network", "create", "--subnet", "172.29.0.0/16", "--ip-range", "172.27.0.0/24", "wrong")   # (docker's
    assert bad.returncode == 125 and "must be a part of the subnet" in bad.stderr            # CLI checks it too)
    assert "wrong" not in docker("network", "ls").stdout


def test_docker_run_confinement_flags_reach_the_container(daemon, tmp_path):
    def status(*flags):
        shown = daemon.docker("run", "--rm", *flags, "busybox", "cat", "/proc/self/status")
        assert shown.returncode == 0, shown.stderr
        return dict(line.split(":\t", 1) for line in shown.stdout.splitlines() if ":\t" in line)
    default = status()
    assert (default["CapEff"], default["Seccomp"], default["NoNewPrivs"]) == ("00000000a80425fb", "2", "0")
    assert status("--cap-drop", "ALL", "--cap-add", "NET_ADMIN")["CapEff"] == "0000000000001000"
    assert status("--security-opt", "no-new-privileges")["NoNewPrivs"] == "1"
    assert status("--privileged")["Seccomp"] == "0"
    # The docker command reads a profile file itself and sends its JSON: the daemon gets the content.
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}))
    made = daemon.docker("run", "--rm", "--security-opt", f"seccomp={profile}", "busybox", "mkdir", "/tmp/x")
    assert made.returncode == 1 and "Function not implemented" in made.stderr
    daemon.docker("create", "--name", "shown", "--cap-add", "SYS_TIME", "--device-cgroup-rule", "c 240:* rwm",
                  "busybox", "true")
    try:
        host = json.loads(daemon.docker("inspect", "shown").stdout)[0]["HostConfig"]
    finally:
        daemon.docker("rm", "shown")
    assert (host["CapAdd"], host["Privileged"], host["DeviceCgroupRules"]) == (["SYS_TIME"], False, ["c 240:* rwm"])


def test_malformed_requests_get_400_with_a_message(daemon):
    status, body = daemon.request("POST", "/v1.41/containers/create", b"{not json")
    assert status == 400 and body["message"].startswith("the request body is not valid JSON")
    status, body = daemon.request("POST", "/v1.41/containers/create", b'{"Cmd": ["true"]}')
    assert status == 400 and "no Image" in body["message"]
    status, body = daemon.request("GET", "/v9.99/version")
    assert status == 400 and "client version 9.99 is too new" in body["message"]
    status, body = daemon.request("", "", raw=b"NONSENSE\r\n\r\n")
    assert status == 400 and body["message"].startswith("bad request")
    status, body = daemon.request("GET", "/v1.41/containers/nosuch/json")
    assert status == 404 and body["message"].startswith("No such container: nosuch")


def test_create_turns_dockers_config_into_a_created_container(daemon, tmp_path):
    daemon.create({"Image": "busybox", "Cmd": ["sh", "-c", "echo $A"], "Env": ["A=1"], "WorkingDir": "/tmp",
                   "Hostname": "made-host", "HostConfig": {"Memory": 32 << 20, "NanoCpus": 500_000_000,
                                                           "PidsLimit": 20, "Binds": [f"{tmp_path}:/data:ro"]}},
                  name="made")
    status, info = daemon.request("GET", "/v1.41/containers/made/json")
    assert status == 200 and info["State"]["Status"] == "created"        # created, not started
    assert info["Path"] == "sh" and "A=1" in info["Config"]["Env"] and info["Config"]["WorkingDir"] == "/tmp"
    assert info["Config"]["Hostname"] == "made-host"
    assert (info["HostConfig"]["Memory"], info["HostConfig"]["NanoCpus"], info["HostConfig"]["PidsLimit"]) \
        == (32 << 20, 500_000_000, 20)
    assert [(m["Source"], m["Destination"], m["RW"]) for m in info["Mounts"]] == [(str(tmp_path), "/data", False)]
    assert daemon.request("DELETE", "/v1.41/containers/made")[0] == 204


def test_bad_input_creates_nothing(daemon):
    status, body = daemon.request("POST", "/v1.41/containers/create", b'{"Image": "nosuch", "Cmd": ["true"]}')
    assert status == 404 and "No such image" in body["message"]
    status, body = daemon.request("POST", "/v1.41/containers/create",
                                  b'{"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Binds": ["data:relative"]}}')
    assert status == 400 and "must be absolute" in body["message"]
    status, body = daemon.request("POST", "/v1.41/containers/create", json.dumps(   # (docker asks a volume
        {"Image": "busybox", "HostConfig": {"Binds": ["data:/data"], "VolumeDriver": "nfs"}}).encode())  # driver
    assert status == 400 and "only the local volume driver, not 'nfs'" in body["message"]   # only for a volume)
    assert daemon.request("GET", "/v1.41/containers/json?all=1") == (200, [])
    without = daemon.client().containers.create("busybox", "true", volume_driver="nfs")
    assert without.attrs["HostConfig"]["VolumeDriver"] == "nfs"
    without.remove()


def test_containers_outlive_a_daemon_restart(daemon):
    daemon.docker("run", "-d", "--name", "survivor", "busybox", "sh", "-c", "echo before; exec sleep 600")
    daemon.stop()
    shown = subprocess.run([LAB, "inspect", "-f", "{{.State.Running}}", "survivor"], capture_output=True, text=True)
    assert shown.stdout == "true\n"                 # running all along, with its supervisor
    daemon.start()
    assert "survivor" in daemon.docker("ps").stdout
    assert daemon.docker("logs", "survivor").stdout == "before\n"
    assert daemon.docker("exec", "survivor", "echo", "after").stdout == "after\n"
    assert daemon.docker("rm", "-f", "survivor").returncode == 0


def test_a_stopped_daemon_has_ended_its_connections_handlers(daemon):
    """Each connection has a process of the daemon's (a fork); an idle HTTP/1.1 connection, as
    the Docker SDK keeps, holds one. When the daemon has stopped, none of them is left."""
    idle = daemon.connection()
    idle.request("GET", "/_ping")
    assert idle.getresponse().read() == b"OK"               # answered; the connection stays open
    handlers = children(daemon.process.pid)
    assert handlers, "no process of the daemon's holds the open connection"
    daemon.stop()
    left = [pid for pid in handlers if os.path.exists(f"/proc/{pid}")]    # running, or ended but not reaped
    idle.close()
    assert not left, f"the daemon stopped before its handlers {left} had ended"


def libraries(pid: int) -> set[str]:
    """The shared libraries mapped into the process's memory."""
    return {Path(line.split()[-1]).name.split(".so")[0] for line in open(f"/proc/{pid}/maps") if ".so" in line}


def test_the_engines_supervisors_are_forked_from_a_small_zygote_not_from_the_daemon(daemon):
    """A supervisor forked from the daemon would be a copy of all the daemon has loaded (22 MB):
    the zygote, forked before the engine loads, forks them (13 MB). One per daemon, it ends with
    it, whatever still runs; killed, the daemon forks the supervisors itself."""
    wait_until(lambda: len(lab_processes("lab-zygote")) == 1, what="one zygote")
    assert daemon.docker("run", "-d", "--name", "small", "busybox", "sleep", "600").returncode == 0
    assert "libcrypto" in libraries(daemon.process.pid)         # (hashlib and ssl: images, registries)
    assert "libcrypto" not in libraries(supervisor_of("small"))
    idle = daemon.connection()                                   # a client's connection, open
    idle.request("GET", "/_ping")
    assert idle.getresponse().read() == b"OK"
    daemon.stop()
    wait_until(lambda: not lab_processes("lab-zygote"), what="the zygote ended with its daemon")     # (30 s: a busy CI)
    idle.close()
    daemon.start()
    wait_until(lambda: len(lab_processes("lab-zygote")) == 1, what="the new daemon's zygote")
    os.kill(lab_processes("lab-zygote")[0], signal.SIGKILL)
    wait_until(lambda: not lab_processes("lab-zygote"), what="the zygote ended")
    ran = daemon.docker("run", "--rm", "busybox", "echo", "started without it")
    assert ran.stdout == "started without it\n", ran.stderr
    assert "the zygote is gone" in daemon.log.read_text()
    assert daemon.docker("rm", "-f", "small").returncode == 0


def test_a_create_the_zygote_was_killed_before_serving_is_served_all_the_same(daemon):
    """Killed with a request in its queue, the zygote takes the report pipe's end with it, unread:
    the handler, waiting on that pipe, forks the supervisor itself."""
    wait_until(lambda: len(lab_processes("lab-zygote")) == 1, what="one zygote")
    zygote = lab_processes("lab-zygote")[0]
    os.kill(zygote, signal.SIGSTOP)                      # it cannot read the request before it is killed
    try:
        created = subprocess.Popen([DOCKER, "run", "-d", "--name", "queued", "busybox", "sleep", "600"],
                                   env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        def on_a_pipe(pid: int) -> bool:
            try:
                return open(f"/proc/{pid}/wchan").read().endswith("pipe_read")
            except FileNotFoundError:                    # (a handler that has just ended: the ping's)
                return False
        wait_until(lambda: any(map(on_a_pipe, children(daemon.process.pid))),    # the create's handler, on the pipe
                   what="the create's request sent to the stopped zygote")
    finally:
        os.kill(zygote, signal.SIGKILL)
    out, err = created.communicate(timeout=60)
    assert created.returncode == 0, err
    assert daemon.docker("exec", "queued", "echo", "supervised").stdout == "supervised\n"
    assert "the zygote is gone" in daemon.log.read_text()
    assert daemon.docker("rm", "-f", "queued").returncode == 0


def test_a_daemon_killed_with_sigkill_finds_every_container_as_it_was(daemon):
    daemon.docker("run", "-d", "--name", "up", "busybox", "sleep", "600")
    daemon.docker("run", "--name", "done", "busybox", "sh", "-c", "exit 3")
    daemon.docker("create", "--name", "new", "busybox", "echo", "started later")
    daemon.docker("run", "-d", "--name", "again", "--restart", "always", "busybox", "sh", "-c", "echo run; sleep 0.2")
    daemon.stop(signal.SIGKILL)
    restarts = lambda: int(subprocess.run([LAB, "inspect", "-f", "{{.RestartCount}}", "again"],      # noqa: E731
                                          capture_output=True, text=True).stdout or 0)
    before = restarts()
    wait_until(lambda: restarts() >= before + 2, what="restarts with the daemon gone")   # its supervisor's job
    daemon.start()
    shown = {name: daemon.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name).stdout
             for name in ("up", "done", "new")}
    assert shown == {"up": "running 0\n", "done": "exited 3\n", "new": "created 0\n"}
    wait_until(lambda: restarts() >= before + 3, what="restarts with the daemon back")
    assert daemon.docker("start", "-a", "new").stdout == "started later\n"
    assert daemon.docker("exec", "up", "echo", "still supervised").stdout == "still supervised\n"
    assert daemon.docker("rm", "-f", "up", "done", "new", "again").returncode == 0


def in_terminal(daemon, args: list[str], typed: bytes, shown: bytes) -> tuple[int, bytes]:
    """Run docker ARGS on a terminal of its own (a pty), type `typed` at its first prompt, and
    wait for `shown`; return its exit status and what the terminal showed."""
    terminal = Terminal([DOCKER, *args], env={**os.environ, **daemon.env})
    try:
        terminal.wait_for(b"# ")
        terminal.type(typed)
        terminal.wait_for(shown)
    finally:
        status = terminal.close()
    return status, terminal.output


def test_docker_run_it_gives_a_terminal(daemon):
    """A terminal, and TERM=xterm saying what it can do (vi, top, clear ask), as docker's."""
    status, shown = in_terminal(daemon, ["run", "-it", "--rm", "busybox", "sh"], b"tty; echo T=$TERM; exit 3\r", b"T=xterm")
    assert status == 3 and b"/dev/pts/0" in shown


def test_docker_exec_it_gives_a_terminal_of_its_own(daemon):
    daemon.docker("run", "-d", "--name", "host", "busybox", "sleep", "600")
    status, shown = in_terminal(daemon, ["exec", "-it", "host", "sh"], b"tty; echo T=$TERM; exit 5\r", b"T=xterm")
    assert status == 5 and b"/dev/pts/0" in shown
    assert daemon.docker("exec", "host", "sh", "-c", "echo T=$TERM").stdout == "T=\n"     # no terminal, no TERM
    assert daemon.docker("rm", "-f", "host").returncode == 0


def test_detach_keys_leave_the_container_running(daemon):
    terminal = Terminal([DOCKER, "run", "-it", "--name", "stays", "busybox", "sh"], env={**os.environ, **daemon.env})
    terminal.wait_for(b"# ")
    terminal.type(b"echo typed\r")
    terminal.wait_for(b"typed")
    terminal.type(b"\x10\x11")                                     # ctrl-p, ctrl-q: docker's default
    assert terminal.close() == 0
    assert daemon.docker("inspect", "-f", "{{.State.Status}}", "stays").stdout == "running\n"
    daemon.docker("rm", "-f", "stays")
    # The docker CLI watches for them itself too; the engine must, for every other client.
    box = daemon.client().containers.run("busybox", "sh", stdin_open=True, detach=True)
    sock = daemon.client().api.attach_socket(box.id, params={"stdin": 1, "stdout": 1, "stream": 1,
                                                             "detachKeys": "ctrl-x,x"})._sock
    sock.sendall(b"echo a\x18yb; echo done\n")                      # ctrl-x, then not x: both go on
    sock.settimeout(30)
    received = b""
    while not received.endswith(b"done\n"):
        received += sock.recv(4096)
    assert b"a\x18yb" in received
    sock.sendall(b"\x18x")
    assert sock.recv(4096) == b""                                    # the engine hangs up at once
    assert daemon.docker("inspect", "-f", "{{.State.Status}}", box.id).stdout == "running\n"
    status, answer = daemon.request("POST", f"/v1.43/containers/{box.id}/attach?stream=1&stdin=1&detachKeys=ctrl-hello")
    assert status == 400 and "invalid detach keys" in answer["message"]
    box.remove(force=True)


def test_docker_kill_sends_the_signal_asked_for(daemon):
    daemon.docker("run", "-d", "--name", "hup", "busybox", "sh", "-c",
                  "trap 'exit 42' HUP; echo ready; while true; do sleep 0.05; done")
    wait_until(lambda: daemon.docker("logs", "hup").stdout == "ready\n", what="the trap")
    assert daemon.docker("kill", "-s", "HUP", "hup").stdout == "hup\n"
    assert daemon.docker("wait", "hup").stdout == "42\n"
    refused = daemon.docker("kill", "hup")
    assert refused.returncode == 1 and "container hup is not running" in refused.stderr
    daemon.docker("rm", "hup")


# --- the Docker SDK for Python

def test_sdk_run_returns_output_and_raises_the_exit_status(daemon):
    client = daemon.client()
    assert client.containers.run("busybox", ["echo", "hello"], remove=True) == b"hello\n"
    with pytest.raises(docker.errors.ContainerError) as failed:
        client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 5"], remove=True)
    assert (failed.value.exit_status, failed.value.stderr) == (5, b"bad\n")
    assert client.containers.list(all=True) == []


def test_sdk_attach_with_logs_gets_them_all(daemon):
    """The SDK reads attach's answer (101 UPGRADED) with http.client, which reads ahead into a
    buffer of its own, then takes the stream from the socket: output the engine sent just after
    the answer was lost (b'' about one attach in four). The engine waits until the answer is read."""
    client = docker.DockerClient(base_url=f"unix://{daemon.socket}", version="auto", timeout=5)   # (a lost
    ended = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], detach=True)  # line: 5 s)
    ended.wait()
    answers = [ended.attach(stream=False, logs=True) for _ in range(20)]            # (the engine answers)
    running = client.containers.run("busybox", ["sh", "-c", "echo first; exec sleep 600"], detach=True)
    wait_until(lambda: running.logs() == b"first\n", what="the first line")
    firsts = []
    for _ in range(20):                                                              # (its supervisor answers)
        stream = running.attach(stream=True, logs=True)
        firsts.append(next(stream))
        stream.close()
    ended.remove()
    running.remove(force=True)
    assert answers == [b"out\nerr\n"] * 20 and firsts == [b"first\n"] * 20, (answers, firsts)


def test_sdk_detached_exec_stop_remove(daemon):
    client = daemon.client()
    box = client.containers.run("busybox", ["sh", "-c", "echo hi; exec sleep 600"], detach=True, name="sdk",
                                mem_limit="32m", environment={"COLOR": "blue"})
    wait_until(lambda: box.logs() == b"hi\n", what="the log")
    assert box.exec_run(["sh", "-c", "echo $COLOR; exit 3"]) == (3, b"blue\n")
    assert box.exec_run(["tty"], tty=True) == (0, b"/dev/pts/0\r\n")     # a pts of the container's own
    box.reload()
    assert (box.status, box.attrs["HostConfig"]["Memory"]) == ("running", 32 << 20)
    box.stop(timeout=1)
    box.reload()
    assert (box.status, box.attrs["State"]["ExitCode"]) == ("exited", 137)
    box.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("sdk")


def test_sdk_memory_limit_oom_and_volumes(daemon):
    client = daemon.client()
    volume = client.volumes.create("sdkdata")
    hog = client.containers.run("busybox", ["sh", "-c", "echo $$ > /data/pid; x=a; while true; do x=$x$x; done"],
                                detach=True, mem_limit="16m", volumes={"sdkdata": {"bind": "/data", "mode": "rw"}})
    assert hog.wait(timeout=60)["StatusCode"] == 137
    hog.reload()
    assert hog.attrs["State"]["OOMKilled"] is True
    ooms = client.events(since=0, until=int(time.time()) + 1, filters={"event": "oom", "container": hog.id},
                         decode=True)
    assert [e["Actor"]["ID"] for e in ooms] == [hog.id]              # (docker events -f event=oom)
    hog.remove()
    assert client.containers.run("busybox", ["cat", "/data/pid"], remove=True,
                                 volumes=["sdkdata:/data:ro"]) == b"1\n"
    volume.remove()
    assert "sdkdata" not in [v.name for v in client.volumes.list()]
