"""A layer's tar, made again byte for byte from its folder: what docker calls tar-split.

A layer is stored unpacked, a folder for overlay to stack. Its name, the diff_id, is the SHA-256
of the tar it came as. Packing the folder again gives the same files but not the same bytes
(other header fields, order, padding), so another diff_id: the image pushed would not be the
image pulled. So while a layer is unpacked, Recorder keeps every byte of its tar that is not a
file's content (headers, padding, the end: under 1 KiB a file, 296 KB gzipped for a Debian
layer of 6768), in LAB_ROOT/tar-split/; join() writes the tar again, the contents read back
from the folder.

    stream --> Recorder --> the unpacking          records: raw bytes | (file name, size) | ...
"""
import gzip
import hashlib
import os
import stat
import struct
from pathlib import Path

from lab import LabError, overlay
from lab.store import lab_root, layer_path

RAW, FILE = b"R", b"F"


def split_path(digest: str) -> Path:
    return lab_root() / "tar-split" / digest.split(":")[1]


class Recorder:
    """A binary stream's wrapper that keeps what it reads, except the contents of the files that
    note() is told of: [start, end) of each is left out, replaced by its name and size."""

    def __init__(self, f):
        self.f, self.pos = f, 0
        self.start, self.kept = 0, bytearray()     # kept: the bytes read from start on
        self.skip_end = 0                          # the end of the content being left out
        self.records: list[tuple] = []

    def read(self, size=-1):
        data = self.f.read(size)
        begin, self.pos = self.pos, self.pos + len(data)
        if self.pos > self.skip_end:
            self.kept += data[max(0, self.skip_end - begin):]
        return data

    def note(self, member) -> None:
        """Called with each tar member once its header is read, before its content."""
        if not member.isreg() or member.size == 0:
            return                                 # its header stays among the raw bytes
        ahead = self.kept[member.offset_data - self.start:]       # content read already
        self.records.append((RAW, bytes(self.kept[:member.offset_data - self.start])))
        self.records.append((FILE, member.name, member.size))
        self.start = self.skip_end = member.offset_data + member.size
        self.kept = bytearray(ahead[member.size:])

    def save(self, digest: str) -> None:
        """Write the records (and what was read after the last file) for the layer digest."""
        path = split_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        with gzip.open(temporary, "wb", compresslevel=1) as out:
            for record in self.records + [(RAW, bytes(self.kept))]:
                if record[0] == RAW:
                    out.write(RAW + struct.pack(">Q", len(record[1])) + record[1])
                else:
                    name = record[1].encode("utf-8", "surrogateescape")
                    out.write(FILE + struct.pack(">QI", record[2], len(name)) + name)
        temporary.rename(path)


def record(stream) -> Recorder:
    """The records of the tar read from stream, without unpacking it (a layer lab made itself)."""
    import tarfile
    recorder = Recorder(stream)
    with tarfile.open(fileobj=recorder, mode="r|") as tar:
        for member in tar:
            recorder.note(member)
    while recorder.read(1 << 20):          # the end of the archive, as the digest counted it
        pass
    return recorder


def join(digest: str, out) -> None:
    """Write the layer's tar again to out, from its records and its folder."""
    folder = layer_path(digest)
    with gzip.open(split_path(digest), "rb") as records:
        while kind := records.read(1):
            if kind == RAW:
                (size,) = struct.unpack(">Q", records.read(8))
                out.write(records.read(size))
                continue
            size, length = struct.unpack(">QI", records.read(12))
            name = records.read(length).decode("utf-8", "surrogateescape")
            # never out of the layer, nor waiting on a pipe a later member of the same name made
            fd = os.open(overlay.member_path(folder, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as content:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise LabError(f"{name} is no longer a file of layer {digest[7:19]}")
                out.write(content.read(size))      # (a shorter file: the digest will tell)


class Hashing:
    """A binary file to write to that hashes and counts what goes through it."""

    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()

    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def write_tar(digest: str, path: Path, compress: bool) -> tuple[str, str, int]:
    """The layer's tar into the file path, gzipped if compress (reproducibly: no time in it):
    its records joined when that gives the tar its digest names; else (a layer lab kept no
    records of, or whose folder changed) its folder packed: another tar, another digest.
    Returns (the tar's digest, the file's digest, the file's size)."""
    if split_path(digest).is_file():
        try:
            written = write_to(path, compress, lambda tar: join(digest, tar))
            if written[0] == digest:
                return written
        except (OSError, LabError):       # a file of the layer gone or changed
            pass
    return write_to(path, compress, lambda tar: overlay.pack_layer(layer_path(digest), tar))


def write_to(path: Path, compress: bool, write) -> tuple[str, str, int]:
    """write(tar) into the file path, gzipped if compress: (the tar's digest, the file's, its size)."""
    with open(path, "wb") as raw:
        blob = Hashing(raw)
        stream = gzip.GzipFile(fileobj=blob, mode="wb", mtime=0) if compress else blob
        tar = Hashing(stream)
        write(tar)
        if compress:
            stream.close()
    return tar.digest(), blob.digest(), blob.size
