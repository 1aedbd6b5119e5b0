"""The `lab` command, with docker's conventions.

Exit status: the command's own for `lab run`, 125 when lab itself fails, 126 when the
command cannot be executed, 127 when it does not exist. Errors are one line on stderr;
LAB_DEBUG=1 shows the traceback too.
"""
import errno
import os
import sys
import time
import types

# argparse passes each of its own words ("show this help message and exit", "options"...)
# through gettext, which looks on disk for a translation every time: a few stat()s each, about
# 10 of the 18 ms that building lab's parser took (cProfile shows it, -X importtime does not),
# and whose import compiles a regular expression (1.3 ms more). Python ships no translation of
# them, so while argparse loads, lab gives it a stand-in gettext that leaves them as they are
# (the two functions argparse takes from it), then takes it away: whoever imports gettext
# later gets the real one.
sys.modules["gettext"] = words = types.ModuleType("gettext")
words.gettext = str
words.ngettext = lambda singular, plural, n: singular if n == 1 else plural
import argparse  # noqa: E402
del sys.modules["gettext"]

from lab import LabError, StartError, store  # noqa: E402


def terminal_width() -> int:
    """What shutil.get_terminal_size() says, without importing shutil (it loads bz2 and lzma:
    2 ms of every lab command): COLUMNS if it is a number above 0, else the terminal's width,
    else 80 (no terminal, or one that says 0, as many do in CI and under docker exec -t)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class Formatter(argparse.HelpFormatter):
    """argparse makes a formatter for every option it adds (to check its metavar), and each asks
    the terminal how wide it is: about 160 times per lab command, 1.3 of the 4.8 ms that building
    the parser takes. Asked once here."""
    WIDTH = terminal_width() - 2                         # what argparse would use

    def __init__(self, prog):
        super().__init__(prog, width=self.WIDTH)


class Parser(argparse.ArgumentParser):
    """Options are spelled out, as docker's are: argparse would take `--priv` for `--privileged`."""
    def __init__(self, **kwargs):
        super().__init__(formatter_class=Formatter, allow_abbrev=False, **kwargs)

    def error(self, message):
        command = self.prog.removeprefix("lab").strip()          # (run, volume create; none for lab itself)
        raise LabError(f"{command + ': ' if command else ''}{message} (see `{self.prog} --help`)")


def build_parser(argv: list[str]) -> Parser:
    """The parser of lab's command line. Only the command being run gets its parser: all of them
    took 2.6 ms of every lab command, `lab run`'s alone 0.5 ms. `lab`, `lab --help` and a word
    that is no command get them all, to list them."""
    parser = Parser(prog="lab", description="A container runtime you write yourself.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    wanted = argv[0] if argv and argv[0] in COMMANDS else None       # None: every command
    for name, add in COMMANDS.items():
        if wanted in (None, name):
            add(commands)
    return parser


def add_run(commands) -> None:
    run = commands.add_parser("run", help="run a command in a new container")
    run.add_argument("--name", help="name the container")
    run.add_argument("--rm", action="store_true", help="remove the container when it exits")
    run.add_argument("-d", "--detach", action="store_true", help="run in the background, output to `lab logs`")
    run.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    run.add_argument("-t", "--tty", action="store_true", help="give the container a terminal")
    run.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    run.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    run.add_argument("--entrypoint", metavar="CMD", help="run CMD instead of the image's entrypoint and command")
    run.add_argument("-u", "--user", metavar="USER[:GROUP]", help="run as this user (a name of the image's, or a uid)")
    run.add_argument("--init", action="store_true", help="run an init (tini) as PID 1: it reaps orphans, passes signals on")
    run.add_argument("--hostname", metavar="H", help="the container's hostname (default: its short id)")
    run.add_argument("-m", "--memory", metavar="BYTES", help="memory limit, e.g. 64m or 1g")
    run.add_argument("--cpus", metavar="N", help="CPU limit, e.g. 0.5 for half a CPU")
    run.add_argument("--pids-limit", metavar="N", help="at most N processes")
    run.add_argument("--cpu-shares", metavar="N", help="CPU weight against other containers (default 1024)")
    run.add_argument("--cpuset-cpus", metavar="CPUS", help="the CPUs it may run on, e.g. 0-1 or 0,2")
    run.add_argument("--memory-swap", metavar="BYTES", help="memory and swap together (-1: unlimited swap)")
    run.add_argument("--memory-reservation", metavar="BYTES", help="a soft memory limit, below -m")
    run.add_argument("--oom-kill-disable", action="store_true", help="at the memory limit, wait instead of being killed (v1)")
    run.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:MODE]",
                     help="mount a host path or a named volume (MODE: ro, nocopy, ro,nocopy)")
    run.add_argument("--tmpfs", action="append", default=[], metavar="DST[:OPTS]", help="mount a tmpfs, e.g. /run:size=64m")
    run.add_argument("--read-only", action="store_true", help="mount the container's root read-only")
    run.add_argument("--network", "--net", metavar="NETWORK",
                     help="bridge (default), none, host, container:NAME, or a network of `lab network create`")
    run.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOST_PORT:PORT",
                     help="publish a port on the host, e.g. 8080:80 (or just 80: a free host port)")
    run.add_argument("-P", "--publish-all", action="store_true",
                     help="publish every port the image exposes, each on a free host port")
    run.add_argument("--link", action="append", default=[], metavar="NAME[:ALIAS]",
                     help="know container NAME as ALIAS (/etc/hosts, ALIAS_ENV_* variables): docker's legacy links")
    run.add_argument("--pid", choices=["host"], help="host: the host's PID namespace (it sees every process)")
    run.add_argument("--uts", choices=["host"], help="host: the host's hostname")
    run.add_argument("--network-alias", action="append", default=[], metavar="NAME",
                     help="another name the container has on its user network")
    run.add_argument("--mac-address", metavar="MAC", help="eth0's MAC address (default: 02:42 and its IPv4 address)")
    run.add_argument("--link-local-ip", action="append", default=[], metavar="ADDRESS",
                     help="one more address of eth0, link-local (169.254.x.y)")
    run.add_argument("--add-host", action="append", default=[], metavar="HOST:IP",
                     help="a line of the container's /etc/hosts: HOST is IP")
    run.add_argument("--dns", action="append", default=[], metavar="IP", help="a name server for its resolv.conf")
    run.add_argument("--dns-search", action="append", default=[], metavar="DOMAIN", help="a search domain for it")
    run.add_argument("--dns-option", action="append", default=[], metavar="OPTION", help="an option for it (ndots:2)")
    run.add_argument("--ip", metavar="ADDRESS", help="its address on its network (one of yours), instead of the next free one")
    run.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="add a capability (or ALL)")
    run.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="drop a capability (or ALL)")
    run.add_argument("--privileged", action="store_true",
                     help="no confinement: every capability and device, no seccomp, no masked paths")
    run.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                     help="no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json")
    run.add_argument("--device-cgroup-rule", action="append", default=[], metavar="'c MAJOR:MINOR rwm'",
                     help="allow the devices of this type and numbers too (chapter 08)")
    run.add_argument("--group-add", action="append", default=[], metavar="GROUP", help="add a group (name or gid)")
    run.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]", help="a resource limit, e.g. nofile=1024")
    run.add_argument("--shm-size", metavar="BYTES", help="the size of /dev/shm (default 64m)")
    run.add_argument("--health-cmd", metavar="CMD", help="a command whose exit status 0 means healthy (with -d)")
    run.add_argument("--health-interval", metavar="DURATION", help="time between checks (default 30s)")
    run.add_argument("--health-timeout", metavar="DURATION", help="a check taking longer fails (default 30s)")
    run.add_argument("--health-start-period", metavar="DURATION", help="failures in this time do not count")
    run.add_argument("--health-retries", metavar="N", help="failures in a row that make it unhealthy (default 3)")
    run.add_argument("--no-healthcheck", action="store_true", help="no healthcheck, not even the image's")
    run.add_argument("--log-driver", metavar="DRIVER", help="json-file (the default) or none")
    run.add_argument("--log-opt", action="append", default=[], metavar="K=V",
                     help="json-file's max-size=SIZE (e.g. 10m) and max-file=N: rotate the log")
    run.add_argument("image", metavar="IMAGE", nargs="?")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD [ARG...]")
    run.set_defaults(func=cmd_run)


def add_exec(commands) -> None:
    exec_ = commands.add_parser("exec", help="run a command in a running container")
    exec_.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    exec_.add_argument("-t", "--tty", action="store_true", help="give the command a terminal")
    exec_.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    exec_.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    exec_.add_argument("-u", "--user", metavar="USER[:GROUP]", help="run as this user (default: the container's)")
    exec_.add_argument("container", metavar="CONTAINER", nargs="?")
    exec_.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD [ARG...]")
    exec_.set_defaults(func=cmd_exec)


def add_ps(commands) -> None:
    ps = commands.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true", help="show stopped containers too")
    ps.add_argument("-q", "--quiet", action="store_true", help="only ids")
    ps.set_defaults(func=cmd_ps)


def add_logs(commands) -> None:
    logs = commands.add_parser("logs", help="show the output of a container started with -d")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    logs.add_argument("container", metavar="CONTAINER")
    logs.set_defaults(func=cmd_logs)


def add_stop(commands) -> None:
    stop = commands.add_parser("stop", help="stop containers: SIGTERM, then SIGKILL after a timeout")
    stop.add_argument("-t", "--time", type=float, default=10, metavar="S", help="seconds before SIGKILL (10)")
    stop.add_argument("containers", nargs="+", metavar="CONTAINER")
    stop.set_defaults(func=cmd_stop)


def add_kill(commands) -> None:
    kill = commands.add_parser("kill", help="send a signal to containers (default SIGKILL)")
    kill.add_argument("-s", "--signal", default="KILL", metavar="SIG", help="e.g. TERM, HUP, 15")
    kill.add_argument("containers", nargs="+", metavar="CONTAINER")
    kill.set_defaults(func=cmd_kill)


def add_rm(commands) -> None:
    rm = commands.add_parser("rm", help="remove containers")
    rm.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    rm.add_argument("containers", nargs="+", metavar="CONTAINER")
    rm.set_defaults(func=cmd_rm)


def add_inspect(commands) -> None:
    inspect = commands.add_parser("inspect", help="show containers or images as JSON")
    inspect.add_argument("-f", "--format", metavar="'{{.Field.Sub}}'", help="print one field, e.g. {{.State.Pid}}")
    inspect.add_argument("containers", nargs="+", metavar="CONTAINER|IMAGE")
    inspect.set_defaults(func=cmd_inspect)


def add_commit(commands) -> None:
    commit = commands.add_parser("commit", help="make a new image from a container's changes")
    commit.add_argument("container", metavar="CONTAINER")
    commit.add_argument("ref", metavar="NAME[:TAG]")
    commit.set_defaults(func=cmd_commit)


def add_images(commands) -> None:
    commands.add_parser("images", help="list images").set_defaults(func=cmd_images)


def add_pull(commands) -> None:
    pull = commands.add_parser("pull", help="download an image from a registry (chapter 10)")
    pull.add_argument("--platform", metavar="OS/ARCH", help="of a multi-platform image, this one (e.g. linux/arm64)")
    pull.add_argument("--insecure", action="store_true", help="plain HTTP (always so for 127.0.0.1 and localhost)")
    pull.add_argument("ref", metavar="NAME[:TAG|@DIGEST]")
    pull.set_defaults(func=cmd_pull)


def add_build(commands) -> None:
    build = commands.add_parser("build", help="build an image from a Dockerfile, one layer per step (chapter 10)")
    build.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]",
                       help="name the image (each -t one more name)")
    build.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="a label on the image")
    build.add_argument("-f", "--file", metavar="FILE", help="the Dockerfile (default: CONTEXT/Dockerfile)")
    build.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE")
    build.add_argument("--no-cache", action="store_true", help="run every step, cached or not")
    build.add_argument("--cache-from", action="append", metavar="IMAGE",
                       help="take cached steps only from this image's (each --cache-from one more)")
    build.add_argument("--shm-size", metavar="BYTES", help="the RUN steps' /dev/shm size (default 64m)")
    build.add_argument("--target", metavar="STAGE", help="build up to this stage (FROM IMAGE AS STAGE) and stop")
    build.add_argument("--add-host", action="append", default=[], metavar="HOST:IP",
                       help="a line of the RUN steps' /etc/hosts: HOST is IP")
    build.add_argument("--network", metavar="MODE", help="the RUN steps' network (bridge, none, host)")
    build.add_argument("--iidfile", metavar="FILE", help="write the image's id there")
    build.add_argument("context", metavar="CONTEXT", help="the folder COPY and ADD read from")
    build.set_defaults(func=cmd_build)


def add_push(commands) -> None:
    push = commands.add_parser("push", help="upload an image to a registry (chapter 10)")
    push.add_argument("--insecure", action="store_true", help="plain HTTP (always so for 127.0.0.1 and localhost)")
    push.add_argument("ref", metavar="NAME[:TAG]")
    push.set_defaults(func=cmd_push)


def add_login(commands) -> None:
    login = commands.add_parser("login", help="log in to a registry (stored in docker's config.json)")
    login.add_argument("-u", "--username", metavar="USER")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.add_argument("--insecure", action="store_true", help="plain HTTP (always so for 127.0.0.1 and localhost)")
    login.add_argument("server", nargs="?", default="docker.io", metavar="SERVER")
    login.set_defaults(func=cmd_login)


def add_logout(commands) -> None:
    logout = commands.add_parser("logout", help="forget the login to a registry")
    logout.add_argument("server", nargs="?", default="docker.io", metavar="SERVER")
    logout.set_defaults(func=cmd_login, username=None)


def add_tag(commands) -> None:
    tag = commands.add_parser("tag", help="give an image one more name")
    tag.add_argument("source", metavar="IMAGE")
    tag.add_argument("ref", metavar="NAME[:TAG]")
    tag.set_defaults(func=cmd_tag)


def add_rmi(commands) -> None:
    rmi = commands.add_parser("rmi", help="remove images (and the layers no other image uses)")
    rmi.add_argument("-f", "--force", action="store_true", help="an image named by its id, with tags of several repositories")
    rmi.add_argument("images", nargs="+", metavar="IMAGE")
    rmi.set_defaults(func=cmd_rmi)


def add_image(commands) -> None:
    image = commands.add_parser("image", help="manage images: import, ls, inspect, rm")
    image_commands = image.add_subparsers(dest="image_command", metavar="COMMAND", parser_class=Parser)
    image_commands.required = True
    load = image_commands.add_parser("import", help="import a rootfs tarball, a `docker save` archive "
                                     "or an OCI image layout (folder or tar)")
    load.add_argument("source", metavar="FILE|DIR")
    load.add_argument("ref", metavar="NAME[:TAG]")
    load.set_defaults(func=cmd_image_import)
    image_commands.add_parser("ls", help="list images").set_defaults(func=cmd_images)
    image_inspect = image_commands.add_parser("inspect", help="show images as JSON")
    image_inspect.add_argument("images", nargs="+", metavar="IMAGE")
    image_inspect.set_defaults(func=cmd_image_inspect)
    image_rm = image_commands.add_parser("rm", help="remove images")
    image_rm.add_argument("-f", "--force", action="store_true", help="an image named by its id, with tags of several repositories")
    image_rm.add_argument("images", nargs="+", metavar="IMAGE")
    image_rm.set_defaults(func=cmd_rmi)


def add_volume(commands) -> None:
    volume = commands.add_parser("volume", help="manage volumes: create, ls, inspect, rm")
    volume_commands = volume.add_subparsers(dest="volume_command", metavar="COMMAND", parser_class=Parser)
    volume_commands.required = True
    for verb, text in (("create", "create a volume"), ("inspect", "show volumes as JSON"), ("rm", "remove volumes")):
        sub = volume_commands.add_parser(verb, help=text)
        sub.add_argument("names", nargs="+", metavar="NAME")
        sub.set_defaults(func=cmd_volume, verb=verb)
    volume_commands.add_parser("ls", help="list volumes").set_defaults(func=cmd_volume, verb="ls", names=[])


def add_port(commands) -> None:
    port = commands.add_parser("port", help="show a container's published ports")
    port.add_argument("container", metavar="CONTAINER")
    port.set_defaults(func=cmd_port)


def add_network(commands) -> None:
    network = commands.add_parser("network", help="manage networks: create, ls, inspect, rm, connect, disconnect (chapter 09)")
    network_commands = network.add_subparsers(dest="network_command", metavar="COMMAND", parser_class=Parser)
    network_commands.required = True
    create = network_commands.add_parser("create", help="create a network: a bridge and a subnet of its own")
    create.add_argument("--subnet", metavar="CIDR", help="its addresses, e.g. 172.31.5.0/24 (default: a free /24)")
    create.add_argument("--internal", action="store_true", help="no way out: its containers reach each other and the host only")
    create.add_argument("--gateway", metavar="ADDRESS", help="the bridge's address in the subnet (default: its first)")
    create.add_argument("--ip-range", metavar="CIDR", help="the part of the subnet containers get addresses from")
    create.add_argument("--aux-address", action="append", default=[], metavar="NAME=ADDRESS",
                        help="an address of the subnet kept for another host")
    create.add_argument("names", nargs=1, metavar="NAME")
    create.set_defaults(func=cmd_network, verb="create")
    for verb, text in (("inspect", "show networks as JSON"), ("rm", "remove networks")):
        sub = network_commands.add_parser(verb, help=text)
        sub.add_argument("names", nargs="+", metavar="NETWORK")
        sub.set_defaults(func=cmd_network, verb=verb)
    for verb, text in (("connect", "connect a container to one more network (at once if it runs)"),
                       ("disconnect", "disconnect a container from a network")):
        sub = network_commands.add_parser(verb, help=text)
        if verb == "connect":
            sub.add_argument("--alias", action="append", default=[], metavar="NAME", help="one more name there")
            sub.add_argument("--ip", metavar="ADDRESS", help="its address there, instead of the next free one")
        sub.add_argument("names", nargs=1, metavar="NETWORK")
        sub.add_argument("container", metavar="CONTAINER")
        sub.set_defaults(func=cmd_network, verb=verb)
    network_commands.add_parser("ls", help="list networks").set_defaults(func=cmd_network, verb="ls", names=[])


def add_daemon(commands) -> None:
    daemon = commands.add_parser("daemon", help="serve the Docker Engine API on a Unix socket (chapter 07)")
    daemon.add_argument("--socket", default=store.SOCKET, metavar="PATH",
                        help="where to listen (default %(default)s); clients: DOCKER_HOST=unix://PATH")
    daemon.set_defaults(func=cmd_daemon)


def add_doctor(commands) -> None:
    commands.add_parser("doctor", help="check that this machine can run the course").set_defaults(func=cmd_doctor)


def add_progress(commands) -> None:
    commands.add_parser("progress", help="your progress through the chapters").set_defaults(func=cmd_progress)


def add_hint(commands) -> None:
    hint = commands.add_parser("hint", help="a hint for your next exercise, one level more each time")
    hint.add_argument("name", nargs="?", metavar="FUNCTION", help="that exercise's hints instead")
    hint.set_defaults(func=cmd_progress)


def add_watch(commands) -> None:
    watch = commands.add_parser("watch", help="run the current chapter's tests each time lab/ changes")
    watch.add_argument("chapter", nargs="?", metavar="NN", help="start at chapter NN")
    watch.set_defaults(func=cmd_progress)


# Each command's parser, in the order `lab --help` lists them.
COMMANDS = {
    "run": add_run, "exec": add_exec, "ps": add_ps, "logs": add_logs, "stop": add_stop,
    "kill": add_kill, "rm": add_rm, "inspect": add_inspect, "commit": add_commit,
    "images": add_images, "pull": add_pull, "build": add_build, "push": add_push,
    "login": add_login, "logout": add_logout, "tag": add_tag, "rmi": add_rmi, "image": add_image,
    "volume": add_volume, "port": add_port, "network": add_network, "daemon": add_daemon,
    "doctor": add_doctor, "progress": add_progress, "hint": add_hint, "watch": add_watch
}


def cmd_run(args) -> int:
    from lab import container, trace
    trace.mark("interpreter start and imports")
    if not args.image:
        raise LabError("run: requires at least 1 argument: IMAGE [CMD [ARG...]] (see `lab run --help`)")
    options = dict(name=args.name, env=args.env, workdir=args.workdir,
                   entrypoint=None if args.entrypoint is None else [args.entrypoint], user=args.user, interactive=args.interactive, tty=args.tty,
                   hostname=args.hostname, memory=args.memory, cpus=args.cpus, pids_limit=args.pids_limit,
                   mounts=args.volume, tmpfs=args.tmpfs, read_only=args.read_only, cap_add=args.cap_add, cap_drop=args.cap_drop, privileged=args.privileged,
                   security_opt=args.security_opt, log_driver=args.log_driver, log_opts=args.log_opt,
                   group_add=args.group_add, ulimits=args.ulimit, shm_size=args.shm_size, cpu_shares=args.cpu_shares,
                   memory_swap=args.memory_swap, memory_reservation=args.memory_reservation,
                   oom_kill_disable=args.oom_kill_disable, init=args.init, network_mode=args.network,
                   publish=args.publish, publish_all=args.publish_all, mac_address=args.mac_address, network_aliases=args.network_alias,
                   pid_mode=args.pid, uts_mode=args.uts, links=args.link, ip=args.ip,
                   extra_hosts=args.add_host, device_cgroup_rules=args.device_cgroup_rule, dns=args.dns,
                   dns_search=args.dns_search, dns_options=args.dns_option,
                   cpuset_cpus=args.cpuset_cpus, link_local_ips=args.link_local_ip)
    if args.health_cmd or args.no_healthcheck or args.health_interval or args.health_timeout or \
            args.health_start_period or args.health_retries:
        from lab import health
        options["healthcheck"] = health.config(args.health_cmd, args.health_interval, args.health_timeout,
                                               args.health_start_period, args.health_retries, args.no_healthcheck)
    try:
        if not args.detach:
            return container.run(args.image, args.cmd, remove=args.rm, **options)
        c = container.create(args.image, args.cmd, detach=True, auto_remove=args.rm, **options)
    except container.images.NoSuchImage as e:              # not here: pull it, then start again
        if getattr(args, "pulled", False):
            raise
        pull_missing(args.image, e)
        args.pulled = True
        return cmd_run(args)
    from lab import supervisor          # -d: a supervisor starts the container and stays with it
    supervisor.launch(c)
    print(c.id)
    return 0


def pull_missing(ref: str, missing: LabError) -> None:
    """docker run's first step for an image it lacks: "Unable to find image", then a pull
    (its progress on stderr: stdout is the container's)."""
    from lab import container, pull, registry
    registry.Reference(ref)             # a reference no registry has: refused as it is, before a pull
    print(f"Unable to find image '{ref}' locally", file=sys.stderr)
    try:
        pulled = container.step("10", pull.pull, ref, out=sys.stderr)
    except LabError as e:
        raise LabError(f"{missing}; pulling it failed: {e}") from None
    if pulled is container.NOT_WRITTEN:     # before chapter 10 a runtime cannot pull: not here, then
        raise missing


def cmd_port(args) -> int:
    c = store.find_container(args.container)
    for key, bindings in ((c.state.get("Network") or {}).get("Ports") or {}).items():
        for binding in bindings:
            print(f"{key} -> {binding['HostIp']}:{binding['HostPort']}")
    return 0


def cmd_network(args) -> int:
    import json
    from lab import container_network, network, views
    if args.verb == "create":
        aux = dict(item.partition("=")[::2] for item in args.aux_address)
        print(network.create(args.names[0], args.subnet, internal=args.internal, gateway=args.gateway,
                             ip_range=args.ip_range, aux=aux)["Id"])
        return 0
    if args.verb == "rm":
        return each(args.names, lambda ref: network.remove(ref) and ref)
    if args.verb == "connect":
        container_network.connect_container(store.find_container(args.container), args.names[0], args.alias, ip=args.ip)
        return 0
    if args.verb == "disconnect":
        container_network.disconnect_container(store.find_container(args.container), args.names[0])
        return 0
    if args.verb == "inspect":
        print(json.dumps([views.network(network.find(ref)) for ref in args.names], indent=4))
        return 0
    rows = [(n["Id"][:12], n["Name"], n["Driver"], n.get("Subnet") or "") for n in network.list_networks(listing=True)]
    print_table([("NETWORK ID", "NAME", "DRIVER", "SUBNET"), *rows])
    return 0


def cmd_exec(args) -> int:
    from lab import container
    if not args.container:
        raise LabError("exec: requires at least 2 arguments: CONTAINER CMD [ARG...] (see `lab exec --help`)")
    return container.exec_in(store.find_container(args.container), args.cmd, env=args.env,
                             workdir=args.workdir, user=args.user, interactive=args.interactive, tty=args.tty)


def cmd_ps(args) -> int:
    now = time.time()
    rows = []
    for c in store.list_containers():
        if not (args.all or c.is_running()):
            continue
        rows.append((c.id[:12], c.config["Image"], " ".join(c.config["Cmd"])[:20],
                     store.ago(now - c.config["Created"]) + " ago", c.status_text(), c.name))
    if args.quiet:
        for r in rows:
            print(r[0])
        return 0
    print_table([("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"), *rows])
    return 0


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell, three spaces apart, as docker prints them."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("   ".join(v.ljust(w) for v, w in zip(r, widths)) + "   " + r[-1])


def cmd_logs(args) -> int:
    from lab import logs
    from lab.relay import STDERR, STDOUT
    c = store.find_container(args.container)
    streams = {STDOUT: sys.stdout.buffer, STDERR: sys.stderr.buffer}
    for stream, data, _ in logs.follow(c, args.follow):  # stdout to stdout, stderr to stderr
        streams[stream].write(data)
        streams[stream].flush()
    return 0


def each(refs: list[str], action) -> int:
    """Do action(ref) for each argument and print the text it returns (else the ref itself), as
    docker does: a failure is one line, and the others still go ahead. 1 if any failed."""
    status = 0
    for ref in refs:
        try:
            done = action(ref)
            print(done if isinstance(done, str) else ref)
        except LabError as e:
            print(f"lab: error: {e}", file=sys.stderr)
            status = 1
    return status


def each_container(refs: list[str], action) -> int:
    """each() with action(container), the container found by name or id."""
    return each(refs, lambda ref: action(store.find_container(ref)))


def cmd_stop(args) -> int:
    from lab import container
    if not 0 <= args.time < float("inf"):          # (float() takes nan and inf too)
        raise LabError(f"stop: -t {args.time:g} is not a number of seconds: give the seconds to wait before SIGKILL")
    return each_container(args.containers, lambda c: container.stop(c, args.time))


def cmd_kill(args) -> int:
    from lab import container
    from lab.process import parse_signal
    sig = parse_signal(args.signal)
    return each_container(args.containers, lambda c: container.kill(c, sig))


def cmd_rm(args) -> int:
    from lab import container
    return each_container(args.containers, lambda c: container.remove(c, args.force))


def cmd_inspect(args) -> int:
    from lab import images, views
    import json
    found = []
    for ref in args.containers:
        try:
            found.append(views.container(store.find_container(ref)))
        except LabError as not_a_container:
            try:
                found.append(views.image(images.find(ref)))
            except LabError:
                raise not_a_container from None
    if args.format is None:
        print(json.dumps(found, indent=4))
    for item in found if args.format is not None else ():
        print(field(item, args.format))
    return 0


def field(item: dict, template: str) -> str:
    """docker inspect -f's simplest forms: '{{.State.Pid}}' picks one field, and
    '{{index .RootFS.Layers 0}}' one item of a list."""
    import json
    import re
    match = (re.fullmatch(r"\{\{\s*index\s+((?:\.\w+)+)\s+(\d+)\s*\}\}", template)
             or re.fullmatch(r"\{\{\s*((?:\.\w+)+)()\s*\}\}", template))
    if not match:
        raise LabError(f"inspect: lab understands only a format like '{{{{.State.Pid}}}}' or "
                       f"'{{{{index .RootFS.Layers 0}}}}', not {template!r}")
    path, index = match.groups()
    for key in path.split(".")[1:]:
        if not isinstance(item, dict) or key not in item:
            raise LabError(f"inspect: there is no field {key!r} in {path}")
        item = item[key]
    if index:
        if not isinstance(item, list) or int(index) >= len(item):
            raise LabError(f"inspect: {path} has no item {index}")
        item = item[int(index)]
    return item if isinstance(item, str) else json.dumps(item)


def cmd_image_inspect(args) -> int:
    from lab import images, views
    import json
    print(json.dumps([views.image(images.find(ref)) for ref in args.images], indent=4))
    return 0


def size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{n}B"
        n /= 1000
    return ""


def cmd_images(args) -> int:
    from lab import images
    now = time.time()
    rows = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "LAYERS", "SIZE")]
    for image in images.listed(images.list_images(listing=True)):
        for ref in image["RepoTags"] or ["<none>:<none>"]:
            name, tag = ref.rsplit(":", 1)
            rows.append((name, tag, image["Id"][7:19], store.ago(now - image["Created"]) + " ago",
                         str(len(image["Layers"])), size(image["Size"])))
    print_table(rows)
    return 0


def cmd_image_import(args) -> int:
    from lab import image_commands
    print(image_commands.import_image(args.source, args.ref))
    return 0


def cmd_commit(args) -> int:
    from lab import image_commands
    print(image_commands.commit(store.find_container(args.container), args.ref))
    return 0


def cmd_pull(args) -> int:
    from lab import pull
    ref = pull.Reference(args.ref)
    pull.pull(args.ref, args.platform, args.insecure)
    print(ref)
    return 0


def cmd_build(args) -> int:
    from lab import build
    build.stop_on_signals()
    build.build(args.context, args.file, args.tag, args.build_arg, args.no_cache, args.network, args.iidfile,
                labels=args.label, cache_from=args.cache_from, extra_hosts=args.add_host, target=args.target,
                shm_size=args.shm_size)
    return 0


def cmd_push(args) -> int:
    from lab import push
    push.push(args.ref, args.insecure)
    return 0


def cmd_login(args) -> int:
    from lab import registry
    server = registry.server_name(args.server or registry.DOCKER_HUB)     # (docker logout "": Docker Hub)
    if args.command == "logout":
        registry.save_credentials(server, None)
        print(f"Removing login credentials for {server}")
        return 0
    user = args.username or input("Username: ")
    if args.password_stdin:
        password = sys.stdin.read().rstrip("\n")
    else:
        import getpass
        password = getpass.getpass("Password: ")
    if not user or not password:
        raise LabError("login: a user name and a password are needed (-u USER --password-stdin)")
    registry.check_login(server, user, password, args.insecure)
    registry.save_credentials(server, (user, password))
    print("Login Succeeded")
    return 0


def cmd_tag(args) -> int:
    from lab import image_commands
    image_commands.tag(args.source, args.ref)
    return 0


def cmd_rmi(args) -> int:
    from lab import image_commands
    return each(args.images, lambda ref: "\n".join(image_commands.remove_image(ref, args.force)))


def cmd_volume(args) -> int:
    import json
    from lab import volumes
    if args.verb == "ls":
        print("DRIVER    VOLUME NAME")
        for name in volumes.list_volumes():
            print(f"local     {name}")
        return 0
    if args.verb == "inspect":
        print(json.dumps([volumes.inspect(name) for name in args.names], indent=4))
        return 0
    return each(args.names, volumes.create if args.verb == "create" else volumes.remove)


def cmd_daemon(args) -> int:
    if os.geteuid() != 0:
        raise LabError("daemon: run it as root (it creates namespaces, cgroups and mounts)")
    from lab import supervisor
    zygote = supervisor.start_zygote()  # before the engine loads: the supervisors it forks are small
    from lab import daemon
    daemon.serve(args.socket, zygote)
    return 0


def cmd_doctor(args) -> int:
    from lab import doctor
    return doctor.main()


def cmd_progress(args) -> int:
    raise LabError(f"{args.command} is the course's tool, not the runtime's: run it with the `lab` command "
                   f"(lab {args.command}, which lab_impl.py hands to course.py)")


def main(argv=None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else argv
        args, unknown = build_parser(argv).parse_known_args(argv)
        if unknown:
            command = " ".join(filter(None, [args.command, getattr(args, f"{args.command}_command", None)]))
            what = "unknown flag" if unknown[0].startswith("-") else "one argument too many:"
            raise LabError(f"{command}: {what} {unknown[0]} (see `lab {command} --help`)")
        store.private_root()
        status = args.func(args)
        # exit() keeps a status's last 8 bits: 768 (the wait status of `exit 3`) would be 0, a success
        if isinstance(status, int) and not 0 <= status <= 255:
            raise LabError(f"the exit status came out as {status}, and one goes from 0 to 255: exit_status() "
                           "in lab/process.py makes it (see chapters/00_process/README.md, 'Your turn')")
        return status
    except StartError as e:             # the command could not be run: 126, 127, or 125
        return fail(e, e.status)
    except (LabError, NotImplementedError) as e:
        return fail(e, 125)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:             # lab ps | head: the reader left; that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        if e.errno == errno.ENOSPC:
            return fail(store.no_space(), 125)
        return fail(bug(e), 125)
    except Exception as e:
        return fail(bug(e), 125)


def bug(e: Exception) -> str:
    """An error lab did not expect, in one line: its words, its kind, the function it came from."""
    from lab import process
    where = process.raised_in(e)
    return f"{e} ({type(e).__name__}{f' in {where}' if where else ''}; LAB_DEBUG=1 shows the traceback)"


def fail(message, status: int) -> int:
    if os.environ.get("LAB_DEBUG") == "1":
        import traceback
        traceback.print_exc()
    print(f"lab: error: {message}", file=sys.stderr)
    return status
