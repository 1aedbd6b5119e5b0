"""Chapter 07: the engine.   Check your work: pytest chapters/07_engine"""
import json


def create(daemon, config: dict, name: str | None = None) -> str:
    status, body = daemon.request("POST", "/v1.41/containers/create" + (f"?name={name}" if name else ""),
                                  json.dumps(config).encode())
    assert status == 201, body
    return body["Id"]


def test_create_turns_dockers_config_into_a_created_container(daemon, tmp_path):
    create(daemon, {"Image": "busybox", "Cmd": ["sh", "-c", "echo $A"], "Env": ["A=1"], "WorkingDir": "/tmp",
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


def test_start_runs_it_and_wait_answers_its_exit_status(daemon):
    cid = create(daemon, {"Image": "busybox", "Cmd": ["sh", "-c", "exit 3"]})
    assert daemon.request("POST", f"/v1.41/containers/{cid}/start")[0] == 204
    assert daemon.request("POST", f"/v1.41/containers/{cid}/wait") == (200, {"StatusCode": 3, "Error": None})
    assert daemon.request("DELETE", f"/v1.41/containers/{cid}")[0] == 204


def test_a_wait_asked_before_the_start_sees_the_end(daemon):
    cid = create(daemon, {"Image": "busybox", "Cmd": ["sh", "-c", "exit 5"]})
    waiting = daemon.connection()
    waiting.request("POST", f"/v1.41/containers/{cid}/wait?condition=next-exit")
    answer = waiting.getresponse()                  # its headers come at once: docker run goes on
    assert answer.status == 200
    assert daemon.request("POST", f"/v1.41/containers/{cid}/start")[0] == 204
    assert json.loads(answer.read()) == {"StatusCode": 5, "Error": None}     # its body, once it ended
    waiting.close()
    daemon.request("DELETE", f"/v1.41/containers/{cid}")


def test_docker_run_drives_your_engine(daemon):
    hello = daemon.docker("run", "--rm", "busybox", "echo", "hello")
    assert (hello.returncode, hello.stdout) == (0, "hello\n"), hello.stderr
    assert daemon.docker("run", "--rm", "busybox", "sh", "-c", "exit 4").returncode == 4
    assert daemon.docker("ps", "-a", "-q").stdout == ""                  # --rm: removed once it ended


def test_bad_input_creates_nothing(daemon):
    status, body = daemon.request("POST", "/v1.41/containers/create", b'{"Image": "nosuch", "Cmd": ["true"]}')
    assert status == 404 and "No such image" in body["message"]
    status, body = daemon.request("POST", "/v1.41/containers/create",
                                  b'{"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Binds": ["data:relative"]}}')
    assert status == 400 and "must be absolute" in body["message"]
    assert daemon.request("GET", "/v1.41/containers/json?all=1") == (200, [])
