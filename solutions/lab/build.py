"""`lab build`: an image from a Dockerfile, one layer per step. Chapter 10.

The seed notes' "each step adds a layer", literally: a RUN step starts a container from the
image so far, runs the command in it, and commits the container's upper folder (chapter 04)
as a new layer on top; a COPY or ADD step packs the files it copies into a layer directly.
The other instructions (ENV, WORKDIR, USER, CMD, ...) change only the image's config.

Every step's result is an image of its own, hidden from `lab images` once the next step is
built on it (an intermediate image; the last one is listed, as <none> without -t), and the
build cache remembers it under a key: the image it started from, the instruction, the build
arguments a RUN sees, and the content of the files a COPY reads. The same step on the same
image gives the same key, and is not run again ("Using cache"). --no-cache runs all;
--cache-from IMAGE takes a cached step only if it made IMAGE or one IMAGE was built on.

The subset of the Dockerfile reference lab reads: FROM, RUN, COPY, ADD (local files; local
tar archives are unpacked), ENV, ARG, WORKDIR, USER, LABEL, EXPOSE, CMD, ENTRYPOINT,
STOPSIGNAL; shell and exec forms, line continuations, comments, .dockerignore; stages (FROM
IMAGE AS NAME: the last one is the image, or the one --target names; FROM NAME builds on it). Anything else is refused
with one line before the first step runs.
"""
import contextlib
import fnmatch
import hashlib
import io
import json
import os
import re
import shlex
import signal
import stat
import sys
import tarfile
from pathlib import Path

from lab import LabError, NotFound, container, folders, health, image_commands, images, process, store
from lab.cgroups import parse_bytes
from lab.container_network import parse_extra_hosts
from lab.image_commands import pairs
from lab.images import NoSuchImage, find, load
from lab.layers import locked, save_image, with_history
from lab.names import parse_reference
from lab.store import read_json, write_json

INSTRUCTIONS = ("FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "LABEL", "EXPOSE", "CMD",
                "ENTRYPOINT", "STOPSIGNAL", "HEALTHCHECK")


# Reading the Dockerfile.

def parse(text: str, target: str | None = None) -> list[tuple[int, str, str]]:
    """The Dockerfile's instructions: (line number, INSTRUCTION, its arguments), continuations
    joined and comments dropped; an instruction lab does not know is a LabError. With a target
    (--target), only those up to the end of the stage it names (FROM IMAGE AS target)."""
    steps, pending, start, reached = [], "", 0, False
    for number, line in enumerate(text.splitlines(), 1):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):          # a comment inside a continuation
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        instruction, _, args = (pending + line).strip().partition(" ")
        pending = ""
        if instruction.upper() == "FROM" and target is not None:
            if reached:
                break                                          # (the next stage: not built)
            reached = stage_name(args) == target.lower()
        if instruction.upper() not in INSTRUCTIONS:
            raise LabError(f"Dockerfile line {start}: lab build does not support {instruction.upper()} "
                           f"(it reads {', '.join(INSTRUCTIONS)})")
        steps.append((start, instruction.upper(), args.strip()))
    if pending:
        steps.append((start, *pending.strip().partition(" ")[::2]))
    if target is not None and not reached:
        raise LabError(f"failed to reach build target {target} in Dockerfile: name a stage (FROM IMAGE AS {target})")
    if not steps or steps[0][1] not in ("FROM", "ARG") or not any(s[1] == "FROM" for s in steps):
        raise LabError("the Dockerfile has no FROM: its first instruction must be FROM IMAGE")
    return steps


def substitute(text: str, variables: dict) -> str:
    """$NAME, ${NAME}, ${NAME:-default} and ${NAME:+alternative}, as the Dockerfile reference
    says; \\$ is a dollar sign."""
    def value(m):
        if m.group(0) == "\\$":
            return "$"
        name, op, word = m.group("name") or m.group("plain"), m.group("op"), m.group("word") or ""
        if op == ":-":
            return variables.get(name) or word
        if op == ":+":
            return word if variables.get(name) else ""
        return variables.get(name, "")
    return re.sub(r"\\\$|\$\{(?P<name>\w+)(?:(?P<op>:[-+])(?P<word>[^}]*))?\}|\$(?P<plain>\w+)", value, text)


def stage_name(from_args: str) -> str | None:
    """FROM IMAGE AS NAME: NAME (in lower case, as docker compares it); None without AS."""
    named = re.fullmatch(r"\S+\s+as\s+(\S+)", from_args.strip(), re.IGNORECASE)
    return named.group(1).lower() if named else None


def json_or_shell(args: str) -> list[str]:
    """RUN, CMD, ENTRYPOINT: a JSON array (exec form) or a command for /bin/sh -c (shell form)."""
    if args.startswith("["):
        try:
            argv = json.loads(args)
            if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
                return argv
        except ValueError:
            pass
    return ["/bin/sh", "-c", args]


# The build context: the folder whose files COPY and ADD may read.

class Context:
    def __init__(self, folder: str):
        self.root = Path(folder).resolve()
        if not self.root.is_dir():
            raise LabError(f"the build context {folder} is not a folder")
        try:
            text = self.read(".dockerignore")
        except FileNotFoundError:
            text = ""
        self.patterns = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]

    def read(self, name: str) -> str:
        """The context's Dockerfile or .dockerignore: a file in the context (a symlink out of it
        would have lab read the host's files, docker's client sends none), and a regular one (a
        pipe would be waited on for ever)."""
        path = self.root / name
        if not (path.resolve() == self.root or self.root in path.resolve().parents):
            raise LabError(f"the {name} of the build context {self.root} leads outside it")
        return folders.read_regular(path, f"the {name} {path}")

    def ignored(self, relative: str) -> bool:
        """.dockerignore: the last pattern that matches decides; !PATTERN takes a path back."""
        result = False
        for pattern in self.patterns:
            negate = pattern.startswith("!")
            pattern = os.path.normpath(pattern.lstrip("!").strip().strip("/"))
            parts = relative.split("/")
            if any(fnmatch.fnmatchcase("/".join(parts[:n]), pattern) for n in range(1, len(parts) + 1)):
                result = not negate
        return result

    def source(self, name: str) -> Path:
        """A COPY source inside the context; ../ or a symlink that leads outside is refused."""
        path = Path(os.path.normpath(self.root / name.lstrip("/")))
        real = path.resolve()
        if not (real == self.root or self.root in real.parents) or not (path == self.root or self.root in path.parents):
            raise LabError(f"COPY {name}: forbidden path outside the build context {self.root}")
        if not path.exists() or self.ignored(str(path.relative_to(self.root))):
            raise LabError(f"COPY {name}: no such file in the build context (or .dockerignore leaves it out)")
        return path

    def files(self, path: Path):
        """path and everything under it that .dockerignore keeps, sorted."""
        yield path
        if path.is_dir() and not path.is_symlink():
            for full in map(Path, folders.below(path)):
                if not self.ignored(str(full.relative_to(self.root))):
                    yield full


def copy_layer(context: Context, sources: list[str], dest: str, workdir: str, unpack: bool,
               is_folder) -> tuple[bytes, str]:
    """The layer of a COPY/ADD step, as a tar (in memory: build contexts are small), and a
    digest of what it copies (for the cache key). A file goes into dest when dest says it is
    a folder (a/, ., a/.), when there are several sources, or when is_folder(dest) (a folder
    in the image already: COPY a.txt /tmp); else it becomes dest."""
    into_folder = dest.endswith(("/", "/.")) or dest == "." or len(sources) > 1
    dest = os.path.normpath(dest if dest.startswith("/") else os.path.join(workdir, dest))
    into_folder = into_folder or is_folder(dest)
    out = io.BytesIO()
    content = hashlib.sha256()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sources:
            path = context.source(name)
            if unpack and path.is_file() and tarfile.is_tarfile(path):         # ADD x.tar: unpacked
                with tarfile.open(path) as archive:
                    for member in archive.getmembers():
                        member.name = os.path.join(dest, member.name).lstrip("/")
                        data = archive.extractfile(member) if member.isfile() else None
                        tar.addfile(member, data)
                content.update(path.read_bytes())
                continue
            for full in context.files(path):
                relative = full.relative_to(path)
                if path.is_dir():
                    target = os.path.join(dest, str(relative)) if str(relative) != "." else dest
                else:
                    target = os.path.join(dest, path.name) if into_folder else dest
                info = tar.gettarinfo(str(full), target.strip("/") or ".")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                content.update(f"{target}\0{info.mode}\0{info.type}\0{info.linkname}\0".encode())
                if info.isfile():
                    with open(full, "rb") as f:
                        data = f.read()
                    content.update(data)
                    tar.addfile(info, io.BytesIO(data))
                else:
                    tar.addfile(info)
    return out.getvalue(), "sha256:" + content.hexdigest()


def has_folder(image: dict, path: str) -> bool:
    """Whether path is a folder in the image's files (a whiteout there says it was deleted)."""
    found = images.in_layers(image, path)
    return found is not None and stat.S_ISDIR(found[1].st_mode)


def unpack_context(upload, folder: str) -> None:
    """The engine's build context (a tar, maybe compressed) into folder: files, folders and
    symlinks only, none of them written through a symlink or outside folder."""
    folder = os.path.realpath(folder)
    try:
        with tarfile.open(fileobj=upload, mode="r:*") as tar:
            for member in members(tar):
                target = os.path.normpath(os.path.join(folder, member.name))
                if target == folder and member.isdir():    # ./ itself (tar -c . | docker build -)
                    continue
                parent = os.path.realpath(os.path.dirname(target))
                if not target.startswith(folder + os.sep) or not (parent == folder or parent.startswith(folder + os.sep)):
                    raise LabError(f"the build context has {member.name!r}, outside the context: refused")
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                elif member.issym() or member.isfile():    # a later entry replaces an earlier one
                    os.makedirs(parent, exist_ok=True)     # (a client may leave out a folder's own
                    if member.isfile():                    # entry: .dockerignore's exceptions)
                        with open(folders.new_file(target), "wb") as f:
                            f.write(tar.extractfile(member).read())
                            os.fchmod(f.fileno(), member.mode & 0o777)
                        continue
                    if os.path.lexists(target):            # (never writes through it)
                        os.unlink(target)
                    os.symlink(member.linkname, target)
    except tarfile.TarError as e:
        raise LabError(f"the build context is not a tar archive ({e})") from None
    except IsADirectoryError as e:
        raise LabError(f"the build context has a folder and a file both named {e.filename!r}") from None


def members(tar):
    """The tar's members. The docker CLI's context for -f - (or for a Dockerfile from outside the
    context, which it adds as .dockerfile.<random>) ends right after that file's data, without
    the padding to 512 bytes and the two empty blocks that end a tar: Go's reader takes that as
    the end, and so does this. (tarfile says so when it moves past the last member's data; data
    cut short in a member is an error of its own, from extractfile.)"""
    found = iter(tar)
    while True:
        try:
            yield next(found)
        except StopIteration:
            return
        except tarfile.ReadError as e:
            if str(e) != "unexpected end of data":
                raise
            return


# The cache: step key -> the image that step made.

def cache_path() -> Path:
    return store.lab_root() / "build-cache.json"


def cached(key: str, usable: set | None) -> str | None:
    """The image the step with this key made, if it is still there (and among usable, if given)."""
    try:
        image_id = read_json(cache_path()).get(key)
    except (FileNotFoundError, ValueError):
        return None
    if usable is not None and image_id not in usable:
        return None
    return image_id if image_id and store.image_path(image_id).is_file() else None


def cache_sources(refs) -> set[str]:
    """--cache-from: each image named, and every image it was built on (its Parent, and so on).
    A name the store does not have adds nothing, as in docker."""
    found = set()
    for ref in refs:
        try:
            image = find(ref)
            while image["Id"] not in found:
                found.add(image["Id"])
                image = load(image["Parent"]) if image.get("Parent") else image
        except (NoSuchImage, FileNotFoundError):
            continue
    return found


def remember(key: str, image_id: str) -> None:
    with locked():
        try:
            cache = read_json(cache_path())
        except (FileNotFoundError, ValueError):
            cache = {}
        write_json(cache_path(), {**cache, key: image_id})


# The build.

def check_options(tags=(), extra_hosts=(), shm_size=None) -> tuple[list[str], list[str]]:
    """The image's names and the RUN steps' /etc/hosts lines, the options checked before any
    step (the engine checks them before it answers: a 400, as docker's)."""
    if shm_size is not None:
        parse_bytes(shm_size, "--shm-size", "--shm-size 128m")
    return [f"{name}:{version}" for name, version in map(parse_reference, tags)], parse_extra_hosts(extra_hosts)


def build(context_dir: str, dockerfile: str | None = None, tags=(), build_args=(), no_cache: bool = False,
          network: str | None = None, iidfile: str | None = None, out=sys.stdout, labels=(), cache_from=None,
          extra_hosts=(), target=None, shm_size=None) -> str:
    """Build the image, named by each of tags; return its id. Each step's output goes to out; a
    failed step raises. labels (KEY=VALUE) are set on the image last, as `docker build --label`.
    network, extra_hosts (HOST:IP) and shm_size are the RUN steps' --network, --add-host and
    --shm-size; target (--target) names the stage to end with."""
    names, hosts = check_options(tags, extra_hosts, shm_size)
    context = Context(context_dir)
    path = Path(dockerfile) if dockerfile else context.root / "Dockerfile"
    try:
        steps = parse(folders.read_regular(path, f"the Dockerfile {path}") if dockerfile else context.read("Dockerfile"), target)
    except FileNotFoundError:
        raise LabError(f"no Dockerfile at {path} (-f names another)") from None
    run_options = {"network_mode": network, "extra_hosts": hosts, "shm_size": shm_size}
    usable = set() if no_cache else cache_sources(cache_from) if cache_from is not None else None
    given = dict(arg.split("=", 1) if "=" in arg else (arg, os.environ.get(arg, "")) for arg in build_args)
    args: dict = {}                       # the ARGs declared so far, with their values
    before_from: dict = {}                # those declared before the first FROM
    image, config = None, {}
    cmd_set = False                       # by a CMD of this stage
    stages, named = {}, None              # FROM IMAGE AS NAME: NAME -> the image its stage made

    def say(message: str) -> None:
        print(message, file=out, flush=True)

    for n, (line, instruction, text) in enumerate(steps, 1):
        say(f"Step {n}/{len(steps)} : {instruction} {text}")
        variables = {**args, **env_dict(config)}
        if instruction == "ARG":              # a value given, else its default, else (in a stage)
            key, has_default, default = text.partition("=")       # the one declared before FROM
            args[key] = given.get(key, substitute(default, variables) if has_default else before_from.get(key, ""))
            continue
        if instruction == "FROM":
            if image is not None and named:
                stages[named] = image
            before_from, args = {**args, **before_from} if image is None else before_from, {}
            ref = substitute(text.split()[0], before_from)
            named = stage_name(text)
            base = stages[ref.lower()] if ref.lower() in stages else base_image(ref, out)
            image, config, cmd_set = base, dict(base["Config"]), False
            say(f" ---> {short(image['Id'])}")
            continue
        if image is None:
            raise LabError(f"Dockerfile line {line}: {instruction} before FROM")
        if instruction in ("RUN", "COPY", "ADD"):
            image = layer_step(instruction, text, image, config, args, context, usable, run_options, say)
            config = dict(image["Config"])
            continue
        config = change_config(instruction, text, config, variables)
        if instruction == "ENTRYPOINT" and not cmd_set:      # docker's rule: a new ENTRYPOINT resets
            config.pop("Cmd", None)                          # the base image's CMD, not this stage's
        cmd_set = cmd_set or instruction == "CMD"
        image = commit_config(image, config, instruction, text, usable, say)
        say(f" ---> {short(image['Id'])}")
    if image is None:
        raise LabError("the Dockerfile has no FROM")
    if labels:                            # (docker build --label: a last step of its own)
        text = " ".join(shlex.quote(label if "=" in label else label + "=") for label in labels)
        config = change_config("LABEL", text, config, {})
        image = commit_config(image, config, "LABEL", text, usable, lambda message: None)
    if not image["Id"]:
        raise LabError("no image was made: the Dockerfile has nothing after FROM scratch")
    if names:
        with locked():
            write_json(store.tags_path(), {**store.tags(), **{name: image["Id"] for name in names}})
        for name in names:
            store.record_image_event("tag", image["Id"], name, image["Config"].get("Labels"))
    if iidfile:
        Path(iidfile).write_text(image["Id"])
    print(f"Successfully built {short(image['Id'])}", file=out)
    for name in names:
        print(f"Successfully tagged {name}", file=out)
    return image["Id"]


def base_image(ref: str, out) -> dict:
    """FROM's image; one the store lacks is pulled first, as docker build does. `scratch` is
    no image at all: no layers, an empty config (what FROM scratch builds on)."""
    if ref == "scratch":
        return {"Id": "", "Layers": [], "Config": {}}
    try:
        return find(ref)
    except NoSuchImage:
        from lab import pull
        pull.pull(ref, out=out)
        return find(ref)


def short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def env_dict(config: dict) -> dict:
    return dict(e.split("=", 1) for e in config.get("Env", []) if "=" in e)


def change_config(instruction: str, text: str, config: dict, variables: dict) -> dict:
    """ENV, WORKDIR, USER, LABEL, EXPOSE, CMD, ENTRYPOINT, STOPSIGNAL, HEALTHCHECK: a new config, no layer."""
    config = dict(config)
    if instruction == "ENV":
        env = env_dict(config)
        for key, value in pairs(text, "ENV"):
            env[key] = substitute(value, {**variables, **env})
        config["Env"] = [f"{k}={v}" for k, v in env.items()]
    elif instruction == "LABEL":
        config["Labels"] = {**(config.get("Labels") or {}), **{k: substitute(v, variables) for k, v in pairs(text, "LABEL")}}
    elif instruction == "WORKDIR":
        config["WorkingDir"] = os.path.join(config.get("WorkingDir") or "/", substitute(text, variables))
    elif instruction in ("USER", "STOPSIGNAL"):
        config["User" if instruction == "USER" else "StopSignal"] = substitute(text, variables)
    elif instruction == "EXPOSE":
        ports = substitute(text, variables).split()
        config["ExposedPorts"] = {**(config.get("ExposedPorts") or {}), **{p if "/" in p else f"{p}/tcp": {} for p in ports}}
    elif instruction == "CMD":
        config["Cmd"] = json_or_shell(text)
    elif instruction == "ENTRYPOINT":
        config["Entrypoint"] = json_or_shell(text)
    elif instruction == "HEALTHCHECK":
        config["Healthcheck"] = healthcheck(text)
    return config


def healthcheck(text: str) -> dict:
    """HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D] [--retries=N] CMD COMMAND, or
    HEALTHCHECK NONE (no check, not even the base image's): the image's Healthcheck."""
    if text.upper() == "NONE":
        return {"Test": ["NONE"]}
    options, rest = {}, text
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, _, value = option[2:].partition("=")
        if key not in ("interval", "timeout", "start-period", "retries") or not value:
            raise LabError(f"HEALTHCHECK {text}: {option!r}? use --interval=, --timeout=, --start-period=, --retries=")
        options[key.replace("-", "_")] = value
        rest = rest.lstrip()
    word, _, command = rest.partition(" ")
    if word.upper() != "CMD" or not command.strip():
        raise LabError(f"HEALTHCHECK {text}: use HEALTHCHECK [OPTIONS] CMD COMMAND, or HEALTHCHECK NONE")
    argv = json_or_shell(command.strip())
    test = ["CMD-SHELL", argv[2]] if argv[:2] == ["/bin/sh", "-c"] else ["CMD", *argv]
    return health.checked({**health.config(cmd="", **options), "Test": test})


def commit_config(image: dict, config: dict, instruction: str, text: str, usable: set | None, say) -> dict:
    """An image with the same layers and a new config (cached like any step)."""
    key = step_key(image, f"{instruction} {text}", json.dumps(config, sort_keys=True))
    found = cached(key, usable)
    if found:
        say(" ---> Using cache")
        return load(found)
    with locked():
        made = with_history({"Layers": image["Layers"], "Config": config, "Parent": image["Id"], "Intermediate": True},
                            image, f"/bin/sh -c #(nop)  {instruction} {text}", empty_layer=True)
        image_id = save_image(made, None, "latest")
    remember(key, image_id)
    return load(image_id)


def step_key(image: dict, instruction: str, content: str) -> str:
    return hashlib.sha256(json.dumps([image["Id"], instruction, content]).encode()).hexdigest()


def layer_step(instruction: str, text: str, image: dict, config: dict, args: dict, context: Context,
               usable: set | None, run_options: dict, say) -> dict:
    """RUN, COPY, ADD: a new layer on top of image. usable: the images a cached step may give
    (None: any, empty: none, as --no-cache); run_options: the RUN container's network and hosts."""
    variables = {**args, **env_dict(config)}
    if instruction == "RUN":
        if text.startswith("--"):            # (--mount, --network: BuildKit's)
            raise LabError(f"RUN {text}: lab build does not support RUN's options (--mount=type=cache, "
                           "--network, ...); docker's own builder neither: the --mount option requires BuildKit")
        argv = json_or_shell(text)
        key = step_key(image, f"RUN {json.dumps(argv)}", json.dumps(sorted(args.items())))
    else:
        words = json.loads(text) if text.startswith("[") else shlex.split(substitute(text, variables))
        if any(re.match(r"[a-z]+://", w) for w in words):
            raise LabError(f"{instruction} {text}: lab build adds files of the build context only, not URLs")
        if any(w.startswith("--") for w in words):
            raise LabError(f"{instruction} {text}: lab build does not support {instruction}'s options (--chown, --from, ...)")
        if len(words) < 2:
            raise LabError(f"{instruction} {text}: use {instruction} SOURCE... DEST")
        tar, content = copy_layer(context, words[:-1], words[-1], config.get("WorkingDir") or "/",
                                  unpack=instruction == "ADD", is_folder=lambda path: has_folder(image, path))
        key = step_key(image, f"{instruction} {json.dumps(words)}", content)
    found = cached(key, usable)
    if found:
        say(" ---> Using cache")
        say(f" ---> {short(found)}")
        return load(found)
    if instruction == "RUN":
        image_id = run_step(image, argv, args, run_options, say)
    else:
        added: list[str] = []
        with locked():
            digest = image_commands.add_layer(lambda: io.BytesIO(tar), None, added)
            made = with_history({"Layers": image["Layers"] + [digest], "Config": config, "Parent": image["Id"],
                                 "Intermediate": True}, image, f"/bin/sh -c #(nop) {instruction} {text}")
            image_id = save_image(made, None, "latest")
    remember(key, image_id)
    say(f" ---> {short(image_id)}")
    return load(image_id)


def run_step(image: dict, argv: list[str], args: dict, run_options: dict, say) -> str:
    """A container from image runs argv (the build's ARGs in its environment); its changes
    become the new layer. A failed command stops the build, and nothing of the step stays."""
    name = f"build-{os.urandom(6).hex()}"
    say(f" ---> Running in {name}")
    env = [f"{k}={v}" for k, v in args.items()]
    sys.stdout.flush()
    try:
        status = container.run(image["Id"], argv, name=name, env=env, entrypoint=[""], sig_proxy=False, **run_options)
        if status != 0:
            raise LabError(f"The command '{' '.join(argv)}' returned a non-zero code: {status}")
        return image_commands.commit(store.find_container(name), None, build_step=True)
    finally:
        process.hold_signals()                       # (a Ctrl-C now waits until it is removed)
        try:
            with contextlib.suppress(NotFound):      # (none: it was never made)
                container.remove(store.find_container(name), force=True)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, process.FORWARDED)


def stop_on_signals() -> None:
    """Ctrl-C, Ctrl-\\, a kill, or the engine's SIGTERM when docker build's client leaves: docker
    cancels the build then, and so does lab. Each signal `lab run` would pass on to its container
    raises KeyboardInterrupt wherever the build is; a step's container is killed and removed on
    the way out (run_step), and nothing is tagged."""
    def stop(sig, frame):
        for each in stopping:
            signal.signal(each, signal.SIG_IGN)       # once: the cleanup is not cut short
        raise KeyboardInterrupt
    stopping = [sig for sig in process.FORWARDED
                if signal.getsignal(sig) != signal.SIG_IGN]  # (one ignored stays so: nohup lab build)
    for sig in stopping:
        signal.signal(sig, stop)

