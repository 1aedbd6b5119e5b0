"""A container's log: what its supervisor writes, and what `lab logs` / `docker logs` read.

The output is stored as it was read, in records: the Engine API's 8-byte header (stream: 1
stdout, 2 stderr; 0 0 0; length), the time it was read (ns since the epoch, 8 more bytes),
then the data. Records keep stdout and stderr apart, and let `logs --since/--until/--timestamps`
ask for times.

Logging drivers, as docker names them (--log-driver, --log-opt):
  json-file  (the default) the log above; with max-size, the file is rotated before it would
             grow past it: container.log becomes container.log.1, .1 becomes .2, and so on up
             to max-file files in all, the oldest dropped. Readers go through the rotated files,
             oldest first. (Docker's json-file stores a JSON object per line; lab keeps its
             records, with json-file's options.)
  none       nothing is kept; `logs` says so.
"""
import os
import re
import struct
import sys
import time
from pathlib import Path

from lab import LabError, store

HEADER = struct.Struct(">BxxxLQ")
DRIVERS = ("json-file", "none")
SIZE_UNITS = {"": 1, "k": 1000, "m": 1000 ** 2, "g": 1000 ** 3}     # docker's max-size: 10m = 10,000,000


def config(driver: str | None, options=()) -> dict:
    """Check --log-driver and --log-opt KEY=VALUE; return docker's LogConfig:
    {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}."""
    driver = driver or "json-file"
    if driver not in DRIVERS:           # (docker's words: clients match on them)
        raise LabError(f"logger: no log driver named '{driver}' is registered")
    given = dict(options) if isinstance(options, dict) else dict(opt.partition("=")[::2] for opt in options)
    allowed = {"max-size", "max-file"} if driver == "json-file" else set()
    for key in given:
        if key not in allowed:
            raise LabError(f"unknown log opt {key!r} for the {driver} log driver"
                           + (": use max-size and max-file" if allowed else ""))
    log_config = {"Type": driver, "Config": given}
    rotation(log_config)                # (max-file without max-size: one file that grows, as docker's)
    return log_config


def rotation(log_config: dict) -> tuple[int | None, int]:
    """(max-size in bytes or None, max-file) of a LogConfig."""
    options = log_config.get("Config") or {}
    max_size = None
    if options.get("max-size") not in (None, "", "-1"):
        m = re.fullmatch(r"([0-9]+)([kmg]?)b?", options["max-size"].strip().lower())
        if not m or int(m.group(1)) * SIZE_UNITS[m.group(2)] < 1000:
            raise LabError(f"invalid max-size {options['max-size']!r}: use a size of 1k or more, e.g. 10m")
        max_size = int(m.group(1)) * SIZE_UNITS[m.group(2)]
    max_file = options.get("max-file") or "1"
    if not re.fullmatch(r"[0-9]+", str(max_file)) or not 1 <= int(max_file) <= 100:
        raise LabError(f"invalid max-file {max_file!r}: use a number of files from 1 to 100")
    return max_size, int(max_file) if max_size else 1      # (no max-size: one file, never rotated)


def rotated(log: Path, n: int) -> Path:
    """The n-th older file of a log: container.log.1 is the newest rotated one (n=0: the log)."""
    return log.with_name(f"{log.name}.{n}") if n else log


def files(container: store.Container) -> list[Path]:
    """The container's log files, oldest first."""
    older = sorted((p for p in container.path.glob(container.log.name + ".*") if p.suffix[1:].isdigit()),
                   key=lambda p: -int(p.suffix[1:]))
    return older + [container.log]


class Writer:
    """The log as the supervisor appends to it, rotated before it passes max-size (a record is
    split when needed, so no file ever passes it)."""

    def __init__(self, path: Path, log_config: dict):
        self.path = path
        self.max_size, self.max_file = rotation(log_config)
        self.file = open(path, "ab", buffering=0)
        self.size = self.file.tell()

    def write(self, stream: int, data: bytes) -> None:
        while data:
            room = (self.max_size - self.size - HEADER.size) if self.max_size else len(data)
            if room <= 0:
                self.rotate()
                continue
            piece, data = data[:room], data[room:]
            self.file.write(HEADER.pack(stream, len(piece), time.time_ns()) + piece)
            self.size += HEADER.size + len(piece)

    def rotate(self) -> None:
        self.file.close()
        for n in range(self.max_file - 1, 0, -1):     # .1 -> .2, ..., the log -> .1 (the oldest is overwritten)
            if rotated(self.path, n - 1).exists():
                os.replace(rotated(self.path, n - 1), rotated(self.path, n))
        self.file = open(self.path, "wb", buffering=0)    # (max-file 1: the log starts again, empty)
        self.size = 0

    def close(self) -> None:
        self.file.close()


def read_records(f):
    """(stream, data, when) for each record in the log file f, up to where it ends now."""
    while len(header := f.read(HEADER.size)) == HEADER.size:
        stream, size, when = HEADER.unpack(header)
        data = f.read(size)
        if len(data) < size:              # written half: the rest comes later
            f.seek(-HEADER.size - len(data), os.SEEK_CUR)
            return
        yield stream, data, when
    if header:
        f.seek(-len(header), os.SEEK_CUR)


def follow(container: store.Container, follow: bool):
    """(stream, data, when) for each record of the container's log, across its rotated files;
    with follow, until it has ended (its supervisor records the end once it has read all of the
    output). A log that cannot be read is a LabError now, before the first record. The files are
    opened now, not at the first record: the Docker SDK's run asks for the logs, waits, and
    removes the container before it reads them, and an open file can still be read."""
    if (container.config.get("LogConfig") or {}).get("Type") == "none":
        raise LabError(f"container {container.name} logs to the none driver: nothing was kept "
                       "(configured logging driver does not support reading)")
    older = [f for f in map(store.open_quietly, files(container)[:-1]) if f]   # (none: rotated away)
    log = store.open_quietly(container.log)
    if log is None:
        for f in older:
            f.close()
        raise LabError(f"container {container.name} has no log: only `lab run -d` keeps one")
    return records(container, older, log, follow)


def records(container: store.Container, older: list, log, follow: bool):
    """follow()'s records, from its open files. A container whose supervisor was killed runs
    on, but nothing logs its output any more: say so, and follow it to its end all the same. A
    removed container (docker run --rm's client may remove it before it has read the end)
    writes no more."""
    for f in older:
        with f:
            yield from read_records(f)
    said = False
    try:
        while True:
            yield from read_records(log)
            if store.rotated_since(log, container.log):     # the rest of the old file, then the new one
                yield from read_records(log)
                log.close()
                log = open(container.log, "rb")
                continue
            if not follow:
                return
            container.reload()
            ended = container.state.get("Status") != "running" or not container.path.exists()
            supervised = container.has_supervisor()
            # (its process gone, its supervisor may still be reading the last of its output)
            if ended or not (container.is_running() or supervised):
                yield from read_records(log)
                return
            if not supervised and not said:
                print(f"lab: the supervisor of {container.name} was killed: its output is no longer logged "
                      "(`lab rm -f` it and run it again)", file=sys.stderr, flush=True)
                said = True
            time.sleep(0.1)
    finally:
        log.close()

