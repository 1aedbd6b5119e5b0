"""lab build: a Dockerfile's steps, one layer each, cached; bad Dockerfiles and contexts refused."""
import json
import os
import urllib.parse

import pytest


@pytest.fixture(autouse=True)
def lab_root(monkeypatch, tmp_path):
    """A LAB_ROOT of each test's own: a build cache that starts empty."""
    monkeypatch.setenv("LAB_ROOT", str(tmp_path / "lab-root"))
    return tmp_path / "lab-root"


@pytest.fixture
def context(tmp_path):
    folder = tmp_path / "context"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "hello.txt").write_text("hello from the context\n")
    (folder / "src" / "secret.key").write_text("not for the image\n")
    (folder / ".dockerignore").write_text("# keys stay out\n**/*.key\n")
    (folder / "Dockerfile").write_text("""\
# a comment
ARG GREETING=hi
FROM busybox
ARG GREETING
ENV APP=/app \\
    MODE=test
WORKDIR $APP
COPY src/ ./src/
RUN echo "$GREETING from RUN" > made.txt && \\
    ls src > listing.txt
LABEL course="containers" chapter=10
EXPOSE 8080
USER 1000
CMD ["cat", "made.txt"]
""")
    return folder


def build(lab, *args):
    return lab("build", "--network", "none", *args, timeout=120)


def tags(lab):
    """The REPOSITORY:TAG of every row of `lab images` (an image id may well contain "bad")."""
    return {"{}:{}".format(*row.split()[:2]) for row in lab("images").stdout.splitlines()[1:]}


def test_build_makes_one_layer_per_step_and_runs_as_the_dockerfile_says(lab, context):
    result = build(lab, "-t", "built:1", str(context))
    assert result.returncode == 0, result.stderr
    assert "Step 1/11 : ARG GREETING=hi" in result.stdout and "Step 11/11 : CMD" in result.stdout
    assert result.stdout.splitlines()[-2:][1] == "Successfully tagged built:1"
    run = lab("run", "--rm", "built:1")
    assert (run.returncode, run.stdout) == (0, "hi from RUN\n"), run.stderr
    listing = lab("run", "--rm", "built:1", "cat", "/app/listing.txt")
    assert listing.stdout == "hello.txt\n"                     # .dockerignore kept secret.key out
    image = json.loads(lab("image", "inspect", "built:1").stdout)[0]
    base = json.loads(lab("image", "inspect", "busybox").stdout)[0]
    assert len(image["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 2      # COPY and RUN
    config = image["Config"]
    assert config["WorkingDir"] == "/app" and config["User"] == "1000" and "APP=/app" in config["Env"]
    assert config["Labels"] == {"course": "containers", "chapter": "10"}
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    whoami = lab("run", "--rm", "built:1", "id", "-u")
    assert whoami.stdout == "1000\n"
    listed = lab("images")
    assert listed.returncode == 0 and "<none>" not in listed.stdout   # the steps' images: the cache, not listed


def test_a_second_build_uses_the_cache_and_a_changed_file_runs_from_its_copy(lab, context):
    assert build(lab, "-t", "built:1", str(context)).returncode == 0
    again = build(lab, "-t", "built:2", str(context))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("Using cache") == 8 and "Running in" not in again.stdout      # all but FROM, ARG
    ids = [json.loads(lab("image", "inspect", t).stdout)[0]["Id"] for t in ("built:1", "built:2")]
    assert ids[0] == ids[1]
    (context / "src" / "hello.txt").write_text("changed\n")
    changed = build(lab, str(context))
    assert changed.stdout.count("Using cache") == 2 and "Running in" in changed.stdout   # ENV, WORKDIR; from COPY on: run
    untagged = [row.split()[:3] for row in lab("images").stdout.splitlines() if row.startswith("<none>")]
    assert untagged == [["<none>", "<none>", changed.stdout.split()[-1]]]      # (docker's too; its steps are not)
    other_arg = build(lab, "--build-arg", "GREETING=hello", "-t", "built:3", str(context))
    assert other_arg.stdout.count("Using cache") == 3          # ENV, WORKDIR, COPY; the RUN sees another GREETING
    assert lab("run", "--rm", "built:3").stdout == "hello from RUN\n"
    fresh = build(lab, "--no-cache", str(context))
    assert fresh.returncode == 0 and "Using cache" not in fresh.stdout


def test_a_failing_step_stops_the_build_with_its_output_and_status_and_leaves_nothing(lab, lab_root, tmp_path):
    folder = tmp_path / "failing"
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM busybox\nRUN echo before; exit 3\nRUN echo never\n")
    result = build(lab, "-t", "failed:1", str(folder))
    assert result.returncode == 125
    assert "before\n" in result.stdout and "never" not in result.stdout
    assert result.stderr.strip().splitlines()[-1] == \
        "lab: error: The command '/bin/sh -c echo before; exit 3' returned a non-zero code: 3"
    assert "failed:1" not in tags(lab) and "busybox:latest" in tags(lab)
    assert not [name for name in os.listdir(lab_root / "containers") if not name.startswith(".")]
    assert lab("ps", "-a").stdout.count("\n") == 1


@pytest.mark.parametrize("dockerfile, context_files, error", [
    ("FROM busybox\nCOPY ../secret /s\n", {}, "COPY ../secret: forbidden path outside the build context"),
    ("FROM busybox\nCOPY link /s\n", {"link": "/etc"}, "COPY link: forbidden path outside the build context"),
    ("FROM busybox\nSHELL [\"/bin/ash\", \"-c\"]\n", {}, "Dockerfile line 2: lab build does not support SHELL"),
    ("FROM busybox\nRUN --mount=type=cache,target=/c true\n", {}, "the --mount option requires BuildKit"),
    ("FROM busybox\nHEALTHCHECK --every=1s CMD true\n", {}, "'--every=1s'? use --interval=, --timeout="),
    ("RUN true\n", {}, "the Dockerfile has no FROM"),
    ("FROM busybox\nCOPY missing.txt /m\n", {}, "COPY missing.txt: no such file in the build context"),
    ("FROM busybox\nADD http://example.org/x /x\n", {}, "lab build adds files of the build context only"),
])
def test_bad_dockerfiles_and_contexts_get_one_line_and_no_image(lab, tmp_path, dockerfile, context_files, error):
    folder = tmp_path / "bad"
    folder.mkdir()
    (tmp_path / "secret").write_text("the host's\n")
    (folder / "Dockerfile").write_text(dockerfile)
    for name, target in context_files.items():
        os.symlink(target, folder / name)
    result = build(lab, "-t", "bad:1", str(folder))
    assert result.returncode == 125
    errors = [line for line in result.stderr.splitlines() if line.startswith("lab: error:")]
    assert len(errors) == 1 and error in errors[0], result.stderr
    assert "bad:1" not in tags(lab)


def test_add_unpacks_a_local_tar_and_copy_does_not(lab, tmp_path):
    import tarfile
    folder = tmp_path / "adding"
    folder.mkdir()
    (folder / "inside.txt").write_text("from the tar\n")
    with tarfile.open(folder / "files.tar.gz", "w:gz") as tar:
        tar.add(folder / "inside.txt", arcname="inside.txt")
    (folder / "Dockerfile").write_text("FROM busybox\nADD files.tar.gz /added/\nCOPY files.tar.gz /copied/\n")
    assert build(lab, "-t", "adding:1", str(folder)).returncode == 0
    run = lab("run", "--rm", "adding:1", "sh", "-c", "cat /added/inside.txt; ls /copied")
    assert run.stdout == "from the tar\nfiles.tar.gz\n", run.stderr


def test_copy_puts_a_file_into_a_folder_the_image_has_or_the_dest_names(lab, tmp_path):
    """As docker's: a DEST that is a folder in the image already (/tmp), or says it is one (., x/),
    gets the file inside it; any other DEST is the file's new name."""
    folder = tmp_path / "copying"
    folder.mkdir()
    (folder / "a.txt").write_text("a\n")
    (folder / "Dockerfile").write_text("FROM busybox\nWORKDIR /srv\nCOPY a.txt .\nCOPY a.txt /tmp\nCOPY a.txt /etc/b.txt\n"
                                       "COPY a.txt sub/\nRUN cat /srv/a.txt /tmp/a.txt /etc/b.txt /srv/sub/a.txt\n")
    result = build(lab, "-t", "copying:1", str(folder))
    assert result.returncode == 0, result.stderr
    assert "a\na\na\na\n" in result.stdout


def test_healthcheck_goes_into_the_image_and_none_takes_the_base_images_away(lab, tmp_path):
    folder = tmp_path / "checked"
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM busybox\nHEALTHCHECK --interval=5s --retries=2 CMD test -e /tmp/ok\n")
    assert build(lab, "-t", "checked:1", str(folder)).returncode == 0
    check = json.loads(lab("image", "inspect", "checked:1").stdout)[0]["Config"]["Healthcheck"]
    assert check == {"Test": ["CMD-SHELL", "test -e /tmp/ok"], "Interval": 5 * 10**9, "Retries": 2}
    (folder / "Dockerfile").write_text('FROM checked:1\nHEALTHCHECK CMD ["true"]\n')
    assert build(lab, "-t", "checked:2", str(folder)).returncode == 0
    assert json.loads(lab("image", "inspect", "checked:2").stdout)[0]["Config"]["Healthcheck"] == {"Test": ["CMD", "true"]}
    (folder / "Dockerfile").write_text("FROM checked:1\nHEALTHCHECK NONE\n")
    assert build(lab, "-t", "checked:3", str(folder)).returncode == 0
    assert json.loads(lab("image", "inspect", "checked:3").stdout)[0]["Config"]["Healthcheck"] == {"Test": ["NONE"]}


def test_docker_build_through_the_engine_with_the_cli_and_the_sdk(daemon, context, lab):
    env = {**daemon.env, "DOCKER_BUILDKIT": "0"}
    import subprocess
    from chapters.harness import DOCKER
    built = subprocess.run([DOCKER, "build", "--network", "none", "-t", "engine-built:1", str(context)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert built.returncode == 0, built.stderr
    assert "Step 11/11 : CMD" in built.stdout and "hi from RUN" not in built.stdout    # (RUN wrote a file)
    assert "Successfully tagged engine-built:1" in built.stdout
    run = daemon.docker("run", "--rm", "engine-built:1")
    assert (run.returncode, run.stdout) == (0, "hi from RUN\n"), run.stderr
    quiet = subprocess.run([DOCKER, "build", "-q", "--network", "none", str(context)],     # IMAGE=$(docker build -q .)
                           capture_output=True, text=True, env=env, timeout=120)
    assert quiet.stdout == daemon.docker("inspect", "-f", "{{.Id}}", "engine-built:1").stdout, quiet.stderr
    image, logs = daemon.client().images.build(path=str(context), tag="engine-built:2", network_mode="none",
                                               buildargs={"GREETING": "hey"})
    assert "engine-built:2" in image.tags
    assert any("Running in" in entry.get("stream", "") for entry in logs)
    failing = context / "Dockerfile.failing"
    failing.write_text("FROM busybox\nRUN echo Successfully built 0123; echo about to fail; exit 7\n")
    failed = subprocess.run([DOCKER, "build", "--network", "none", "-f", str(failing), str(context)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert failed.returncode == 7 and "about to fail" in failed.stdout, failed.stderr   # (the step's status, as
    assert "Successfully built 0123\n" in failed.stdout        # docker's; a step's line is no lab build's)
    assert "returned a non-zero code: 7" in failed.stderr
    from lab import images
    assert any(images.is_intermediate(i) for i in images.list_images())     # (each step's image: the cache)
    listed, every = (daemon.docker("images", "-q", *flag).stdout.split() for flag in ([], ["-a"]))
    assert set(listed) < set(every), (listed, every)                         # (docker images -a shows them)
    cache = daemon.docker("builder", "prune", "-f")              # the steps' images go, the named ones stay
    assert cache.returncode == 0 and "Total reclaimed space" in cache.stdout, cache.stderr
    assert not any(images.is_intermediate(i) for i in images.list_images())
    rerun = daemon.docker("run", "--rm", "engine-built:1")
    assert (rerun.returncode, rerun.stdout) == (0, "hi from RUN\n"), rerun.stderr
    pruned = daemon.docker("system", "prune", "-f")               # containers, networks, images, build cache
    assert pruned.returncode == 0 and "Total reclaimed space" in pruned.stdout, pruned.stderr


def test_docker_build_from_scratch_with_labels_and_two_names_as_the_sdk_reads_it(daemon, tmp_path):
    import importlib
    archives = importlib.import_module("chapters.04_overlay.archives")
    body = archives.tar([("Dockerfile", b"FROM scratch\nARG who\nARG also=its-default\nUSER $who\nENV ALSO=$also\n"),
                         ("kept/inner/file", b"x")])           # (no entry of its own for kept/inner: a
    query = "t=scratch-made:1&t=scratch-made:2&buildargs=" + urllib.parse.quote(json.dumps(  # .dockerignore
        {"who": "nobody", "also": None}))    # (null: --build-arg also, unset in the client's env: the default)
    query += "&labels=%7B%22course%22%3A%22lab%22%7D"        # exception sends such contexts)
    status, answer = daemon.request("POST", f"/v1.41/build?{query}", body)
    lines = [json.loads(line) for line in answer.splitlines()] if isinstance(answer, str) else [answer]
    assert status == 200 and not any("error" in line for line in lines), lines
    aux = next(n for n, line in enumerate(lines) if "aux" in line)
    assert [line["stream"] for line in lines[aux + 1:]] == [      # the id comes first, the names last
        f"Successfully built {lines[aux]['aux']['ID'][7:19]}\n", "Successfully tagged scratch-made:1\n",
        "Successfully tagged scratch-made:2\n"]
    image = daemon.client().images.get("scratch-made:2")
    assert image.id == lines[aux]["aux"]["ID"] and "scratch-made:1" in image.tags
    assert (image.attrs["Config"]["User"], image.attrs["Config"]["Labels"]) == ("nobody", {"course": "lab"})
    assert "ALSO=its-default" in image.attrs["Config"]["Env"]
    status, answer = daemon.request("POST", "/v1.41/build?t=empty:1", archives.tar([("Dockerfile", b"FROM scratch\n")]))
    assert "no image was made: the Dockerfile has nothing after FROM scratch" in json.dumps(answer), answer


def test_docker_history_shows_what_made_each_layer_and_the_messages_given(daemon, lab, tmp_path):
    """Each step, commit and import adds to the image's history (its config's, as OCI's), and
    docker history shows it, the newest first: what made each layer, its size, the comment."""
    folder = tmp_path / "history"
    folder.mkdir()
    (folder / "a.txt").write_text("a\n")
    (folder / "Dockerfile").write_text("FROM busybox\nRUN echo made > /made\nCOPY a.txt /\nCMD [\"cat\", \"/made\"]\n")
    assert build(lab, "-t", "storied:1", str(folder)).returncode == 0
    assert daemon.docker("run", "--name", "changer", "storied:1", "touch", "/changed").returncode == 0
    assert daemon.docker("commit", "-m", "one more file", "changer", "storied:2").returncode == 0
    assert daemon.docker("export", "-o", str(tmp_path / "flat.tar"), "changer").returncode == 0
    assert daemon.docker("import", "-m", "flattened", str(tmp_path / "flat.tar"), "flat:1").returncode == 0

    def history(ref):
        shown = daemon.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", ref)
        assert shown.returncode == 0, shown.stderr
        return shown.stdout.splitlines()
    assert history("storied:2")[:4] == ["touch /changed|one more file", '/bin/sh -c #(nop)  CMD ["cat", "/made"]|',
                                        "/bin/sh -c #(nop) COPY a.txt /|", "/bin/sh -c echo made > /made|"]
    assert len(history("storied:2")) == 5                      # and busybox's layer, made before
    assert history("flat:1") == ["|flattened"]
    assert daemon.docker("rm", "changer").returncode == 0


def test_one_build_runs_many_run_steps(lab, tmp_path):
    # Each RUN step is a container that lab build starts, one after another: each start must
    # leave lab build's next child to its own PID namespace, not the last step's (ended) one.
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN touch /a\nRUN touch /b\nRUN touch /c\n")
    built = build(lab, "--no-cache", "-t", "steps:1", str(tmp_path))
    assert built.returncode == 0, built.stderr
    assert lab("run", "--rm", "--network", "none", "steps:1", "ls", "/a", "/b", "/c").returncode == 0


def test_target_ends_at_a_stage_add_host_and_shm_size_reach_run_steps_and_cache_from_picks_the_cache(daemon):
    import io
    dockerfile = (b"FROM busybox AS first\nENV FOO=bar\nRUN cp /etc/hosts /hosts-file; df -k /dev/shm > /shm\n"
                  b"FROM busybox\nONBUILD RUN echo not read: the build ends with the stage first\n")
    api = daemon.client().api

    def build(**options):
        logs = list(api.build(fileobj=io.BytesIO(dockerfile), target="first", network_mode="none", decode=True,
                              **options))
        assert not any("error" in line for line in logs), logs
        return sum("Using cache" in line.get("stream", "") for line in logs)
    build(tag="first:1", extra_hosts={"db.local": "10.0.0.5"}, shmsize=128 << 20)
    hosts = daemon.docker("run", "--rm", "--network", "none", "first:1", "cat", "/hosts-file", "/shm")
    assert "\n10.0.0.5\tdb.local\n" in hosts.stdout and " 131072 " in hosts.stdout, hosts.stdout + hosts.stderr
    assert build(tag="second:1", cache_from=["first:1"]) == 2             # ENV and RUN, from first:1
    assert build(tag="third:1", cache_from=["no-such-image"]) == 0         # nothing it was built on
    assert build(tag="fourth:1") == 2                                      # (without: the whole cache)


def test_the_sdk_s_build_details_a_dockerfile_from_outside_the_context_and_a_failed_step_s_code(daemon, tmp_path):
    import io
    (tmp_path / "context").mkdir()
    (tmp_path / "context" / "kept.txt").write_text("kept\n")
    (tmp_path / "context" / "left.txt").write_text("left\n")
    (tmp_path / "context" / ".dockerignore").write_text("*.txt\n!  kept.txt\n")     # (spaces after the !)
    (tmp_path / "elsewhere.Dockerfile").write_text("FROM busybox\nCOPY . /ctx/\n")
    api = daemon.client().api
    logs = list(api.build(path=str(tmp_path / "context"), dockerfile=str(tmp_path / "elsewhere.Dockerfile"),
                          tag="outside:1", decode=True))
    assert not any("error" in line for line in logs), logs
    listed = daemon.docker("run", "--rm", "outside:1", "ls", "/ctx")
    assert listed.stdout.split() == ["kept.txt"], listed.stderr
    failed = list(api.build(fileobj=io.BytesIO(b"FROM busybox\nRUN echo out; echo oops >&2; exit 7\n"), decode=True))
    assert failed[-1]["errorDetail"]["code"] == 7, failed[-1]
    assert {"stream": "out\n"} in failed and {"stream": "\x1b[91moops\n\x1b[0m"} in failed     # (stderr: red)
    import docker
    with pytest.raises(docker.errors.APIError, match="lab build does not support --squash"):    # (never
        list(api.build(fileobj=io.BytesIO(b"FROM busybox\n"), squash=True))                     # ignored)
    import importlib
    archives = importlib.import_module("chapters.04_overlay.archives")
    for query, said in (("t=BAD%20NAME", "invalid image name"), ("t=ok:1&shmsize=abc", "--shm-size"),
                        ("t=ok:1&extrahosts=nocolon", "--add-host")):      # refused before any answer: a 400,
        status, answer = daemon.request("POST", f"/v1.41/build?{query}",    # as docker's
                                        archives.tar([("Dockerfile", b"FROM busybox\n")]))
        assert status == 400 and said in answer["message"], (query, status, answer)
    assert "ok:1" not in daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()


def test_docker_build_takes_the_cli_s_contexts_and_builds_from_an_earlier_stage(daemon, tmp_path):
    """The contexts the docker CLI sends for `tar -c . | docker build -` (its first member is
    ./), for `-f -` with a folder and for a Dockerfile outside the context (the CLI adds it as
    .dockerfile.<random> and ends the tar with its data: no padding, no end blocks). And FROM
    an earlier stage's name is that stage, not an image to pull (a helper's CLI walk found all
    four refused)."""
    import subprocess
    from chapters.harness import DOCKER
    context = tmp_path / "context"
    context.mkdir()
    (context / "hello.txt").write_text("hello\n")
    dockerfile = ("FROM busybox AS base\nRUN echo from-base > /base.txt\n"
                  "FROM base\nCOPY hello.txt /hello.txt\nCMD cat /base.txt /hello.txt\n")
    (tmp_path / "outside.Dockerfile").write_text(dockerfile)
    env = {**daemon.env, "DOCKER_BUILDKIT": "0"}
    ways = {"piped": f"tar -C {context} -c . | {DOCKER} build -t ways:piped -",
            "stdin": f"{DOCKER} build -t ways:stdin -f - {context} < {tmp_path / 'outside.Dockerfile'}",
            "outside": f"{DOCKER} build -t ways:outside -f {tmp_path / 'outside.Dockerfile'} {context}"}
    (context / "Dockerfile").write_text(dockerfile)                     # (for the piped one)
    for name, command in ways.items():
        built = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, timeout=120)
        assert built.returncode == 0, (name, built.stdout, built.stderr)
        ran = daemon.docker("run", "--rm", f"ways:{name}")
        assert ran.stdout == "from-base\nhello\n", (name, ran.stderr)


def test_a_build_stops_on_ctrl_c_and_when_docker_build_s_client_leaves(daemon, lab, tmp_path):
    """docker build's Ctrl-C cancels the build: its client hangs up and the daemon stops it. So do
    lab build's Ctrl-C and Ctrl-\\: the RUN step's container is killed and removed, nothing is
    tagged. Before, both builds went on: lab passed the signal to the step's PID 1 (a shell, which
    ignores it), and the engine's build noticed its client only when it had output to send."""
    import signal
    import subprocess
    from chapters.harness import DOCKER, LAB, wait_until
    (tmp_path / "context").mkdir()
    (tmp_path / "context" / "Dockerfile").write_text("FROM busybox\nRUN echo st''arted; sleep 600\n")
    for command, sig in (([DOCKER, "build", "-t", "stopped:docker"], signal.SIGINT),
                         ([LAB, "build", "-t", "stopped:lab"], signal.SIGINT),       # (Ctrl-C
                         ([LAB, "build", "-t", "stopped:lab"], signal.SIGQUIT)):     # and Ctrl-\\)
        output = tmp_path / "output"
        with open(output, "w") as out:      # (env: as a terminal's shell starts it, with Ctrl-C's signals not
            building = subprocess.Popen(       #  ignored, which they are where pytest was started by `cmd &`)
                ["env", "--default-signal=INT,QUIT", *command, str(tmp_path / "context")], stdout=out,
                stderr=subprocess.STDOUT, env={**daemon.env, "DOCKER_BUILDKIT": "0"}, process_group=0)
        try:
            wait_until(lambda: "started" in output.read_text().splitlines(), timeout=60, what="the RUN step started",
                       seen=output.read_text)
            os.killpg(building.pid, sig)                            # (the terminal's whole group)
            status = building.wait(timeout=30)
            wait_until(lambda: lab("ps", "-aq").stdout == "", what="the step's container removed",
                       seen=lambda: lab("ps", "-a").stdout)
        finally:
            building.kill()
            for left in lab("ps", "-aq").stdout.split():
                lab("rm", "-f", left)
        assert command[0] == DOCKER or status == 130, (status, output.read_text())
    assert not {"stopped:docker", "stopped:lab"} & tags(lab)


@pytest.mark.parametrize("way", ["by ..", "through a symlink"])
def test_a_build_context_that_writes_outside_itself_is_refused(daemon, way, tmp_path):
    import importlib
    archives = importlib.import_module("chapters.04_overlay.archives")
    target = tmp_path / "escaped"
    members = ([(archives.climbing_to(target), b"x")] if way == "by .." else
               [("link", ("symlink", str(tmp_path))), ("link/escaped", b"x")])
    body = archives.tar([("Dockerfile", b"FROM busybox\n"), *members])
    status, answer = daemon.request("POST", "/v1.41/build?t=hostile:1", body)
    assert status == 400 and "outside the context: refused" in answer["message"], answer
    assert not target.exists()


def test_a_build_context_neither_writes_nor_reads_a_host_file_through_its_symlinks(daemon, lab, tmp_path):
    import importlib
    archives = importlib.import_module("chapters.04_overlay.archives")
    host_file = tmp_path / "host-file"
    host_file.write_text("the host's\n")
    host_file.chmod(0o600)
    body = archives.tar([("Dockerfile", b"FROM busybox\nCOPY x /x\n"), ("x", ("symlink", str(host_file))),
                         ("x", b"the context's\n", {"mode": 0o777})])     # a later x replaces the symlink
    status, _ = daemon.request("POST", "/v1.41/build?t=replaced:1", body)
    assert status == 200
    assert (host_file.read_text(), host_file.stat().st_mode & 0o777) == ("the host's\n", 0o600)
    assert lab("run", "--rm", "--network", "none", "replaced:1", "cat", "/x").stdout == "the context's\n"
    host_dockerfile = tmp_path / "Dockerfile.host"
    host_dockerfile.write_text("FROM busybox\nthe host's secret line\n")
    for query, members in ((f"dockerfile={urllib.parse.quote(str(host_dockerfile))}", []),
                           (f"dockerfile={urllib.parse.quote(archives.climbing_to(host_dockerfile))}", []),
                           ("", [("Dockerfile", ("symlink", str(host_dockerfile)))])):
        status, answer = daemon.request("POST", f"/v1.41/build?t=leaked:1&{query}", archives.tar(members or [("Dockerfile", b"FROM busybox\n")]))
        assert status == 400 and "is outside the build context" in answer["message"], answer
        assert "secret" not in answer["message"]
    assert lab("rmi", "replaced:1").returncode == 0


def test_a_context_s_dockerfile_and_dockerignore_are_its_own_regular_files(daemon, lab, tmp_path):
    """Not a symlink out of the context (lab would read the host's file, and a Dockerfile's error
    quotes its first word), nor a pipe (lab would wait on it for ever); one that stays in it is
    followed."""
    import importlib
    archives = importlib.import_module("chapters.04_overlay.archives")
    host_file = tmp_path / "host-file"
    host_file.write_text("HOSTSECRET line\n")
    for name, kind, said in (("Dockerfile", "pipe", "the Dockerfile {} is not a regular file"),
                             ("Dockerfile", "symlink", "the Dockerfile of the build context {} leads outside it"),
                             (".dockerignore", "pipe", "the .dockerignore {} is not a regular file"),
                             (".dockerignore", "symlink", "the .dockerignore of the build context {} leads outside it")):
        context = tmp_path / f"{name}-{kind}"
        context.mkdir()
        if name != "Dockerfile":
            (context / "Dockerfile").write_text("FROM busybox\nCOPY . /x\n")
        os.mkfifo(context / name) if kind == "pipe" else (context / name).symlink_to(host_file)
        built = lab("build", "-t", "refused:1", str(context))
        assert built.returncode == 125 and said.format(context if kind == "symlink" else context / name) in built.stderr, \
            (name, kind, built.stderr)
        assert "HOSTSECRET" not in built.stdout + built.stderr
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "Dockerfile.real").write_text("FROM busybox\n")
    (tmp_path / "inside" / "Dockerfile").symlink_to("Dockerfile.real")
    assert lab("build", "-t", "followed:1", str(tmp_path / "inside")).returncode == 0
    body = archives.tar([("Dockerfile", b"FROM busybox\nCOPY . /x\n"), (".dockerignore", ("symlink", str(host_file)))])
    status, answer = daemon.request("POST", "/v1.41/build?t=refused:1", body)
    assert "leads outside it" in str(answer), (status, answer)
    assert lab("image", "inspect", "refused:1").returncode != 0
    assert lab("rmi", "followed:1").returncode == 0


def test_an_entrypoint_resets_the_base_images_cmd_but_not_its_own_stages(lab, tmp_path):
    # docker's rule: busybox's CMD ["sh"] would become the new ENTRYPOINT's arguments; a CMD the
    # Dockerfile wrote before its ENTRYPOINT is meant for it
    for name, lines, printed in (("reset", 'ENTRYPOINT ["echo", "only"]', "only\n"),
                                 ("kept", 'CMD ["from", "cmd"]\nENTRYPOINT ["echo"]', "from cmd\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Dockerfile").write_text(f"FROM busybox\n{lines}\n")
        assert build(lab, "-t", f"{name}:1", str(tmp_path / name)).returncode == 0
        assert lab("run", "--rm", "--network", "none", f"{name}:1").stdout == printed
