"""Chapter 07, images through the engine: `docker images`, `image inspect`, `rmi`, `pull`,
`push`, `login`, `build`, `tag`, `history`, `import`, `save`, `load`, `image prune`.

Each handler is a few lines over what chapters 04 and 10 built (images.py, image_commands.py,
pull.py, push.py, build.py); what is particular to the API is how progress streams back to
the client: one JSON object per line, in a chunked answer (JSONProgress).
"""
import io
import json
import os
import re
import tarfile
from pathlib import Path

from lab import LabError, NotFound, image_commands, images, layers, names, store, tarsplit
from lab.api import ApiError, check_filters, check_kinds, dangling, filters, has_labels, image_json, virtual_size
from lab.engine_system import disk_use


def list_images(req):
    """GET /images/json (docker images), with the filters reference (NAME[:TAG], wildcards as
    docker's: an image shows only its tags that match), dangling, label, before and since (an
    image: those made before or after it); ?filter=NAME (older clients) is a reference."""
    import fnmatch
    wanted = filters(req)
    check_filters(wanted, ("reference", "dangling", "label", "before", "since"))
    untagged = dangling(wanted)
    if req.query.get("filter"):
        wanted.setdefault("reference", []).append(req.query["filter"])
    made = {key: images.find(wanted[key][0])["Created"] for key in ("before", "since") if wanted.get(key)}

    def matching(tags: list[str]) -> list[str]:
        return [tag for tag in tags if any(fnmatch.fnmatch(tag, ref if ":" in ref.rsplit("/", 1)[-1] else f"{ref}:*")
                                           for ref in wanted["reference"])] if wanted.get("reference") else tags

    def shown(i: dict) -> bool:
        if wanted.get("reference") and not matching(i["RepoTags"] or []):
            return False
        if untagged is not None and untagged == bool(i["RepoTags"]):
            return False
        if i["Created"] >= made.get("before", float("inf")) or i["Created"] <= made.get("since", float("-inf")):
            return False
        return has_labels(i["Config"].get("Labels") or {}, wanted.get("label", []))
    every = images.list_images(listing=True)
    return 200, [{"Id": i["Id"], "ParentId": i.get("Parent", ""), "RepoTags": matching(i["RepoTags"] or []),
                  "RepoDigests": [], "Created": int(i["Created"]), "Size": i["Size"], **virtual_size(req, i["Size"]),
                  "SharedSize": -1, "Labels": i["Config"].get("Labels") or {}, "Containers": -1}
                 for i in (every if req.flag("all") else images.listed(every)) if shown(i)]      # (-a: a build's steps too)


def get_image(req):
    return 200, image_json(req, images.find(req.params[0]))


def delete_image(req):
    """DELETE /images/{name} (docker rmi): untag, and delete what no tag and no other image needs."""
    done = image_commands.remove_image(req.params[0], force=req.flag("force"))
    return 200, [dict([line.split(": ", 1)]) for line in done]      # [{"Untagged": ...}, {"Deleted": ...}]


def post_pull(req):
    """POST /images/create (docker pull): lab pull, its progress as JSON lines the client draws.
    An image lab made itself (busybox, an import, a commit) is not looked for in a registry."""
    if "fromImage" not in req.query:
        raise ApiError(400, "lab does not import images through the API: use lab image import FILE NAME")
    tag = req.query.get("tag") or "latest"
    ref = req.query["fromImage"] + ("@" if tag.startswith("sha256:") else ":") + tag
    platform_asked = req.query.get("platform") or ""
    try:
        image = images.resolve(ref)
        if not image.get("RepoDigests"):
            if platform_asked and not names.runs_here(platform_asked):
                raise ApiError(400, f"invalid platform {platform_asked!r}: unknown operating system or architecture "
                               f"(lab made {ref} here, for linux/{names.host_arch()})")
            out = req.stream("application/json")
            out.write(json.dumps({"status": f"{ref}: lab made it here (not pulled): it is up to date"}).encode() + b"\n")
            out.write(json.dumps({"status": f"Status: Image is up to date for {ref}"}).encode() + b"\n")
            return
    except NotFound:
        pass
    from lab import pull
    progress = JSONProgress(req)
    try:
        pull.pull(ref, platform_asked or None, progress=progress, login=registry_login(req))
    except LabError as e:
        if progress.out is None:             # nothing sent yet: an error status docker shows as is
            raise
        progress.write({"errorDetail": {"message": str(e)}, "error": str(e)})


def post_push(req):
    """POST /images/{name}/push (docker push): lab push, its progress as JSON lines."""
    from lab import push
    tag = req.query.get("tag") or ""
    ref = req.params[0] + (f":{tag}" if tag else "")
    images.find(ref)                          # no such image: 404, before any stream
    progress = JSONProgress(req)
    try:
        push.push(ref, progress=progress, login=registry_login(req))
    except LabError as e:
        if progress.out is None:
            raise
        progress.write({"errorDetail": {"message": str(e)}, "error": str(e)})


# Build options lab does not apply: refused when set, never silently ignored.
BUILD_REFUSED = {"squash": "--squash",
                 "cpusetcpus": "--cpuset-cpus", "cpusetmems": "--cpuset-mems", "cgroupparent": "--cgroup-parent",
                 "ulimits": "--ulimit", "isolation": "--isolation", "platform": "--platform", "outputs": "--output",
                 "memory": "-m/--memory", "memswap": "--memory-swap", "cpushares": "--cpu-shares",
                 "cpuperiod": "--cpu-period", "cpuquota": "--cpu-quota", "pull": "--pull (pull the base image first)"}


def post_build(req):
    """POST /build (docker build, the legacy builder: DOCKER_BUILDKIT=0): the context arrives
    as a tar; `lab build` runs on it as a child process (its RUN steps write to their stdout),
    and every line it prints goes to the client as {"stream": line}: in red when a step wrote it
    to its stderr, as docker's builder sends it. Quiet (docker build -q): the image's id only."""
    import subprocess
    import sys
    import tempfile
    from lab import build
    if req.query.get("remote"):
        raise ApiError(400, "lab builds from a context sent with the request, not from a remote URL")
    if req.query.get("version") == "2":
        raise ApiError(400, "lab builds with the legacy builder only: DOCKER_BUILDKIT=0 docker build ...")
    for key, flag in BUILD_REFUSED.items():          # (docker's CLI sends them all, empty or 0, every time)
        if req.query.get(key) not in (None, "", "0", "[]", "{}", "null", "false", "False", "default"):
            raise ApiError(400, f"lab build does not support {flag}: build without it")
    extra_hosts = [host for hosts in req.values("extrahosts") for host in hosts.split(",") if host]  # (HOST:IP)
    shm_size = None if req.query.get("shmsize") in (None, "", "0") else req.query["shmsize"]
    build.check_options(req.values("t"), extra_hosts, shm_size)    # (a LabError: 400, before any answer)
    with tempfile.TemporaryDirectory(prefix="lab-build-") as work:
        context = os.path.join(work, "context")
        os.mkdir(context)
        build.unpack_context(req.upload, context)
        name = (req.values("dockerfile") or ["Dockerfile"])[0]     # (the first, as docker's: the SDK sends
        dockerfile = os.path.realpath(os.path.join(context, name))  # one from outside the context as a second)
        if not dockerfile.startswith(os.path.realpath(context) + os.sep):
            raise ApiError(400, f"the Dockerfile {name!r} is outside the build context: name a file in it")
        command = [sys.executable, "-m", "lab", "build", "--iidfile", os.path.join(work, "id"), "-f", dockerfile]
        for tag in req.values("t"):
            command += ["-t", tag]
        for key, value in req.query_json("buildargs", {}, dict).items():
            if value is not None:                         # (null: --build-arg NAME the client's env lacks:
                command += ["--build-arg", f"{key}={value}"]   # the ARG's default, as docker's)
        for key, value in req.query_json("labels", {}, "labels").items():
            command += ["--label", f"{key}={value}"]
        for host in extra_hosts:
            command += ["--add-host", host]
        for ref in req.query_json("cachefrom", [], "strings"):
            command += ["--cache-from", ref]
        if shm_size is not None:
            command += ["--shm-size", shm_size]
        if req.query.get("target"):
            command += ["--target", req.query["target"]]
        if req.query.get("nocache") in ("1", "true", "True"):
            command.append("--no-cache")
        if req.query.get("networkmode") not in (None, "", "default"):
            command += ["--network", req.query["networkmode"]]
        package = os.path.dirname(os.path.dirname(os.path.abspath(build.__file__)))
        child = subprocess.Popen(command + [context], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,   # (cwd: -m
                                 stderr=subprocess.PIPE, cwd=work, env={**os.environ, "PYTHONPATH": package})  # finds this lab)
        pidfd = os.pidfd_open(child.pid)      # (a signal sent through it reaches this child or nothing)
        out = BuildOutput(req.stream("application/json", chunked=True))
        try:
            req.end_if_client_leaves(lambda: stop_build(pidfd))   # docker build's Ctrl-C hangs up: the build
            said = out.relay(child, os.path.join(work, "id"), req.flag("q"))   # stops, as docker's does
            req.answering()
            status = child.wait()
        except BaseException:                 # this handler fails, or the daemon stops: the build too
            stop_build(pidfd)
            child.wait()
            raise
    # The error goes last, once the context is gone: a client leaves as soon as it reads it, and
    # a daemon stopped then would take this handler with it, leaving the folder behind.
    if status != 0:
        message = said or f"lab build exited with status {status}"
        code = re.search(r"returned a non-zero code: (\d+)$", message)     # (a RUN step's status)
        detail = {"code": int(code.group(1)), "message": message} if code else {"message": message}
        out.send({"errorDetail": detail, "error": message})


def stop_build(pidfd: int) -> None:
    """SIGTERM to the handler's lab build: it removes its step's container and ends."""
    import signal
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
    except ProcessLookupError:                # ended already
        pass


class BuildOutput:
    """lab build's output as docker's builder sends it: a JSON object a line."""

    def __init__(self, out):
        self.out = out

    def send(self, message: dict) -> None:
        try:
            self.out.write(json.dumps(message).encode() + b"\n")
        except OSError:        # the client left: lab build is being stopped; its output is read to its end
            pass

    def relay(self, child, idfile: str, quiet: bool) -> str:
        """Each line of child's (lab build's) output, until it ends: a step's stderr in red; quiet
        (docker build -q), the image's id only. Returns lab build's error line, if any."""
        said = ""
        for from_stderr, text in lines_of(child):
            if from_stderr and text.startswith("lab: error: "):
                said = text.removeprefix("lab: error: ").strip()
                continue
            # lab build's own last line, not a step's that says the same: it writes idfile just before
            built = not from_stderr and text.startswith("Successfully built ") and os.path.exists(idfile)
            if quiet and not built:
                continue
            if from_stderr:
                self.send({"stream": f"\x1b[91m{text}\x1b[0m"})
                continue
            if built:                                  # the image's id first, as docker's builder sends it
                with open(idfile) as f:
                    image_id = f.read().strip()
                self.send({"aux": {"ID": image_id}})
                text = f"{image_id}\n" if quiet else text
            self.send({"stream": text})
        return said


def lines_of(child):
    """(whether from stderr, a line) from a child's stdout and stderr, as they come, to the end of both."""
    import selectors
    selector, rest = selectors.DefaultSelector(), {child.stdout: b"", child.stderr: b""}
    for pipe in rest:
        selector.register(pipe, selectors.EVENT_READ)
    while selector.get_map():
        for key, _ in selector.select():
            pipe, data = key.fileobj, os.read(key.fd, 1 << 16)
            if data:
                *whole, rest[pipe] = (rest[pipe] + data).split(b"\n")
                whole = [line + b"\n" for line in whole]
            else:                                   # (its end: what is left, if anything)
                selector.unregister(pipe)
                whole, rest[pipe] = [rest[pipe]] if rest[pipe] else [], b""
            for line in whole:
                yield pipe is child.stderr, line.decode(errors="replace")


def post_auth(req):
    """POST /auth (docker login): the daemon tries the login on the registry; the client keeps it."""
    from lab import registry
    body = req.json() or {}
    check_kinds(body, {"username": str, "password": str, "serveraddress": str, "email": str})
    server = registry.server_name(body.get("serveraddress") or registry.DOCKER_HUB)
    if not body.get("username") or not body.get("password"):
        raise ApiError(400, "docker login needs a user name and a password")
    registry.check_login(server, body["username"], body["password"])
    return 200, {"Status": "Login Succeeded", "IdentityToken": ""}


def registry_login(req) -> tuple[str, str] | None:
    """The client's login for the registry (docker login's, sent as X-Registry-Auth: base64 JSON)."""
    import base64
    sent = req.handler.headers.get("X-Registry-Auth")
    try:
        auth = json.loads(base64.urlsafe_b64decode(sent + "=" * (-len(sent) % 4))) if sent else {}
    except ValueError:
        raise ApiError(400, "X-Registry-Auth is not base64-encoded JSON") from None
    return (auth["username"], auth["password"]) if isinstance(auth, dict) and auth.get("username") else None


class JSONProgress:
    """lab pull's progress as the Engine API streams it: one JSON object a line, e.g.
    {"status": "Downloading", "progressDetail": {"current": 1024, "total": 4096}, "id": "1a2b3c"}."""

    def __init__(self, req):
        import threading
        self.req, self.out, self.lock = req, None, threading.Lock()

    def write(self, message: dict) -> None:
        with self.lock:
            if self.out is None:
                self.out = self.req.stream("application/json", chunked=True)
            self.out.write(json.dumps(message).encode() + b"\n")

    def line(self, text: str) -> None:
        self.write({"status": text})

    def update(self, short: str, state: str, done: int = 0, total: int = 0) -> None:
        self.write({"status": state, "progressDetail": {"current": done, "total": total} if total else {}, "id": short})


def post_tag(req):
    """POST /images/{name}/tag?repo=R&tag=T (docker tag)."""
    if not req.query.get("repo"):
        raise ApiError(400, "docker tag needs a new name: docker tag IMAGE NAME[:TAG]")
    image_commands.tag(req.params[0], f"{req.query['repo']}:{req.query.get('tag') or 'latest'}")
    return 201, None


def get_history(req):
    """GET /images/{name}/history (docker history): its layers, the top one first."""
    from lab.layers import created
    image = images.find(req.params[0])
    rows, below = [], list(image["Layers"])
    for step in reversed(layers.history_of(image)):
        rows.append({"Id": "<missing>", "Created": int(created(step)), "CreatedBy": step.get("created_by", ""), "Tags": None,
                     "Size": 0 if step.get("empty_layer") else layers.layer_size(below.pop()),
                     "Comment": step.get("comment", "")})
    if rows:
        rows[0].update(Id=image["Id"], Tags=image["RepoTags"])
    return 200, rows


def post_images_create(req):
    """POST /images/create: docker pull (post_pull), or docker import (?fromSrc=- and a tar)."""
    if "fromSrc" not in req.query:
        return post_pull(req)
    if req.query["fromSrc"] != "-":
        raise ApiError(400, "lab imports from the request's body only (docker import FILE), not from a URL")
    ref = None                                  # (no repo: an untagged image, as docker's)
    if req.query.get("repo"):
        name, tag = names.parse_reference(req.query["repo"])     # (the CLI sends repo=NAME:TAG)
        ref = f"{name}:{req.query.get('tag') or tag}"
    changes = req.values("changes")
    image_id = image_commands.import_image(req.upload.name, ref, changes, req.query.get("message", ""), upload=True)
    return 200, {"status": image_id}


def post_images_load(req):
    """POST /images/load (docker load): a `docker save` archive, under the names it carries."""
    def load(path):
        try:
            archive = tarfile.open(path)
        except tarfile.TarError:                # (tarfile's error lists each compression it tried)
            raise ApiError(400, "the uploaded archive is not a tar archive (plain, gzip, xz or bzip2)") from None
        with archive:
            try:
                manifest = json.load(archive.extractfile("manifest.json"))
                every = [entry.get("RepoTags") or [] for entry in manifest]
            except (KeyError, ValueError, IndexError, AttributeError, TypeError):
                raise ApiError(400, "not a docker save archive (no usable manifest.json): "
                               "docker import takes a plain rootfs tar") from None
        loaded = []
        for which, tags in enumerate(every):                   # (one `docker save` of several images)
            image_id = image_commands.import_image(path, tags[0] if tags else None, upload=True, which=which)
            for ref in tags[1:]:
                image_commands.tag(image_id, ref)
            loaded += tags or [image_id]
        return loaded
    try:
        loaded, error = load(req.upload.name), None
    except (tarfile.TarError, LabError, ApiError) as e:      # docker answers 200, and says it in the stream
        loaded, error = [], f"not a docker save archive: {e}"
    out = req.stream("application/json", chunked=True)         # a JSON object a chunk, as docker's
    if error:
        out.write(json.dumps({"errorDetail": {"message": error}, "error": error}).encode() + b"\n")
    for name in loaded:
        out.write(json.dumps({"stream": f"Loaded image{' ID' if name.startswith('sha256:') else ''}: {name}\n"})
                  .encode() + b"\n")


def get_image_save(req):
    """GET /images/{name}/get, or /images/get?names=NAME&names=... (docker save): a `docker save`
    archive of the images: manifest.json (an entry per image, with the names it was saved by),
    each one's config, a tar per layer, each once (whiteouts as OCI's)."""
    import hashlib
    import tempfile
    refs = req.params[:1] or req.values("names")
    if not refs:
        raise ApiError(400, "docker save: name at least one image")
    found = [(ref, images.find(ref)) for ref in refs]
    store.layers_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.layers_dir(), prefix=f".incoming-{os.getpid()}-save-") as work:
        packed: dict[str, tuple[str, Path, str]] = {}          # layer -> (its member, its tar, its diff_id)
        entries: dict[str, dict] = {}                          # config's member -> manifest entry
        configs: dict[str, bytes] = {}
        for ref, image in found:
            for digest in image["Layers"]:
                if digest not in packed:
                    path = Path(work, f"{len(packed)}.tar")
                    diff_id = tarsplit.write_tar(digest, path, compress=False)[0]
                    packed[digest] = (f"{diff_id[7:]}/layer.tar", path, diff_id)
            config = layers.sent_config(image, [packed[d][2] for d in image["Layers"]])   # docker load: the same id
            config_name = hashlib.sha256(config).hexdigest() + ".json"
            configs[config_name] = config
            entry = entries.setdefault(config_name, {"Config": config_name, "RepoTags": [],
                                                     "Layers": [packed[d][0] for d in image["Layers"]]})
            try:                                  # saved by name: under that name; by id: none
                named = "%s:%s" % names.parse_reference(ref)
            except LabError:
                named = None
            if named in image["RepoTags"] and named not in entry["RepoTags"]:
                entry["RepoTags"].append(named)
        manifest = json.dumps(list(entries.values())).encode()
        out = req.stream("application/x-tar", chunked=True)      # (cut short: no last chunk)
        with tarfile.open(fileobj=out, mode="w|") as tar:
            for name, data in (("manifest.json", manifest), *configs.items()):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            for name, path, _ in packed.values():
                tar.add(path, arcname=name)
    for image in {image["Id"]: image for _, image in found}.values():
        store.record_image_event("save", image["Id"], labels=image["Config"].get("Labels"))


def post_prune_images(req):
    """POST /images/prune: images with no tag (dangling=false: every image no container uses)."""
    wanted = filters(req)
    check_filters(wanted, ("dangling",))
    every = dangling(wanted) is False
    done, space = prune(lambda image: every or not image["RepoTags"])
    return 200, {"ImagesDeleted": [dict([line.split(": ", 1)]) for line in done] or None, "SpaceReclaimed": space}


def prune(wanted) -> tuple[list[str], int]:
    """Remove the images wanted(image) says, but those a container uses: what rmi said of
    each ("Untagged: ...", "Deleted: ..."), and the bytes that freed."""
    used = {c.config["ImageId"] for c in store.list_containers()}
    done, space = [], 0
    for image in images.list_images():
        if image["Id"] not in used and wanted(image):
            before = disk_use()
            done += image_commands.remove_image(image["Id"], force=True)
            space += before - disk_use()
    return done, max(space, 0)


def post_prune_build(req):
    """POST /build/prune (docker builder prune, and system prune's last step): lab build's cache,
    the images of its steps that no tag names (images.is_intermediate), but those a container uses.
    All of them: filters (until, ...) and --keep-storage are refused."""
    check_filters(filters(req), ())
    if req.query.get("keep-storage") not in (None, "", "0"):
        raise ApiError(400, "lab's builder prune keeps nothing: leave --keep-storage out")
    done, space = prune(images.is_intermediate)
    deleted = [line.split(": ", 1)[1] for line in done if line.startswith("Deleted: ")]
    return 200, {"CachesDeleted": deleted or None, "SpaceReclaimed": space}


ROUTES = [
    ("POST", r"/build/prune", post_prune_build),
    ("GET", r"/images/json", list_images), ("GET", r"/images/(.+)/json", get_image),
    ("GET", r"/images/(.+)/history", get_history), ("POST", r"/images/(.+)/tag", post_tag),
    ("DELETE", r"/images/(.+)", delete_image), ("POST", r"/images/prune", post_prune_images),
    ("POST", r"/images/create", post_images_create), ("POST", r"/images/(.+)/push", post_push),
    ("POST", r"/auth", post_auth), ("POST", r"/build", post_build),
    ("GET", r"/images/get", get_image_save), ("GET", r"/images/(.+)/get", get_image_save),
    ("POST", r"/images/load", post_images_load),
]
