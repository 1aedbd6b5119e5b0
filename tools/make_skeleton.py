#!/usr/bin/env python3
"""Write the learner's lab/ from the reference solutions/lab/.

In the reference, the part of an exercise the learner writes sits between
`# BEGIN SOLUTION NN` and `# END SOLUTION` (NN is the chapter). Each such block becomes

    raise NotImplementedError("chapter NN: write f() in lab/m.py: <first docstring line> ...")

and the `# HINT:` lines above it stay: the nudge every gap must have. Deeper hints, written
`# HINT 2:`, `# HINT 3:` ..., stay out of the skeleton: `lab hint` shows them one level at a
time (gaps() reads them for course.py). Files without blocks are copied as they are.

    python3 tools/make_skeleton.py                # rewrite lab/ (what `make skeleton` does)
    python3 tools/make_skeleton.py --out DIR      # write the package to DIR instead
    python3 tools/make_skeleton.py --out DIR --chapters 01
                                                  # blank only chapter 01 (the others solved)
    python3 tools/make_skeleton.py --check        # does lab/ match? (CI runs this)
"""
import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION (\d\d)\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
DEF = re.compile(r"^\s*(?:async\s+)?def (\w+)\(")
CLASS = re.compile(r"^class (\w+)")
HINT = re.compile(r"^\s*# HINT(?: ([2-9]))?:(.*)$")
UNWRITTEN = re.compile(r"^\s*raise NotImplementedError\(['\"]chapter (\d\d): write ")   # (not a comment)


def lesson(chapter: str) -> str:
    found = sorted(ROOT.glob(f"chapters/{chapter}_*/README.md"))
    return found[0].relative_to(ROOT).as_posix() if found else f"chapters/{chapter}_*/README.md"


# Where a docstring's first sentence ends: a full stop after a word (not "e.g."), then a space.
SENTENCE_END = re.compile(r'(?<=[\w)\]"\'`])(?<!e\.g)(?<!i\.e)\.(?=\s|$)')


def docstring_line(lines: list[str], def_index: int) -> str:
    """The first sentence of the docstring of the function defined at lines[def_index], over
    as many lines as it takes (cut at a line's end, a message would stop mid-sentence)."""
    for start in range(def_index + 1, min(def_index + 8, len(lines))):
        if lines[start].strip().startswith('"""'):
            text = " ".join(line.strip() for line in lines[start:start + 12])
            return SENTENCE_END.split(text.removeprefix('"""').split('"""')[0])[0].strip().rstrip(".")
    return ""


def blank(source: str, name: str, chapters: set[str] | None) -> str:
    """Return `source` with its solution blocks (of `chapters`, or all) replaced."""
    lines = source.splitlines(keepends=True)
    out, i, function, def_index = [], 0, None, None
    while i < len(lines):
        line = lines[i]
        if m := DEF.match(line):
            function, def_index = m.group(1), i
        if END.match(line):
            raise SystemExit(f"{name}:{i + 1}: END SOLUTION without BEGIN SOLUTION")
        m = BEGIN.match(line)
        if not m:
            if not ((h := HINT.match(line)) and h.group(1)):      # deeper hints: for `lab hint` only
                out.append(line)
            i += 1
            continue
        indent, chapter = m.groups()
        end = next((j for j in range(i + 1, len(lines)) if END.match(lines[j])), None)
        if end is None or any(BEGIN.match(x) for x in lines[i + 1:end]):
            raise SystemExit(f"{name}:{i + 1}: BEGIN SOLUTION {chapter} has no END SOLUTION")
        if function is None:
            raise SystemExit(f"{name}:{i + 1}: a solution block must sit inside a function")
        if any(HINT.match(x) for x in lines[i + 1:end]):
            raise SystemExit(f"{name}:{i + 1}: a # HINT: line inside BEGIN SOLUTION {chapter}: the skeleton "
                             "drops the block, hint and all; put the hint above the block")
        if not any((h := HINT.match(x)) and not h.group(1) for x in lines[def_index:i]):
            raise SystemExit(f"{name}:{i + 1}: {function}() has no # HINT: line above BEGIN SOLUTION "
                             f"{chapter}: every gap needs a nudge the skeleton keeps")
        if chapters is None or chapter in chapters:
            what = docstring_line(lines, def_index)
            message = (f"chapter {chapter}: write {function}() in lab/{name}"
                       f"{': ' + what if what else ''} (see {lesson(chapter)}, 'Your turn')")
            out.append(f"{indent}raise NotImplementedError({message!r})\n")
        else:
            out.extend(lines[i + 1:end])
        i = end + 1
    return "".join(out)


class Gap(NamedTuple):
    """One exercise: where it is, and its hints by level (1 is the nudge the skeleton keeps)."""
    chapter: str
    module: str          # e.g. "cgroups.py"
    name: str            # the function, with its class when it has one: "CgroupV2.set_limits"
    hints: dict[int, list[str]]


def functions(path: Path):
    """Each line of the Python file at path, with the function it is in ("Class.method" for a
    method; None before the first def)."""
    cls = function = None
    for line in path.read_text().splitlines():
        if m := CLASS.match(line):
            cls = m.group(1)
        elif m := DEF.match(line):
            cls = cls if line.startswith(" ") else None           # a method, or a function
            function = f"{cls}.{m.group(1)}" if cls else m.group(1)
        yield function, line


def gaps(src: Path = ROOT / "solutions" / "lab") -> list[Gap]:
    """The solution blocks of src, in chapter order (then file and line), with their hints."""
    found = []
    for path in sorted(src.rglob("*.py")):
        last, hints = None, {}
        for function, line in functions(path):
            if function != last:
                last, hints = function, {}
            if m := HINT.match(line):
                hints.setdefault(int(m.group(1) or 1), []).append(m.group(2).strip())
            elif m := BEGIN.match(line):
                found.append(Gap(m.group(2), path.relative_to(src).as_posix(), function, hints))
    return sorted(found, key=lambda g: g.chapter)


def unwritten(package: Path) -> list[tuple[str, str, str]]:
    """The gaps of a learner's package that still raise the skeleton's NotImplementedError:
    (chapter, module, function), in chapter order."""
    found = [(m.group(1), path.relative_to(package).as_posix(), function)
             for path in sorted(package.rglob("*.py")) if "__pycache__" not in path.parts
             for function, line in functions(path) if (m := UNWRITTEN.search(line))]
    return sorted(found, key=lambda g: g[0])


def chapters_in(src: Path = ROOT / "solutions" / "lab") -> list[str]:
    """The chapters that have solution blocks in src, in order."""
    found = {m.group(2) for path in src.rglob("*.py") for line in path.read_text().splitlines()
             if (m := BEGIN.match(line))}
    return sorted(found)


def make_skeleton(out: Path, chapters: set[str] | None = None, src: Path = ROOT / "solutions" / "lab"):
    """Write the skeleton package to `out` (replacing what is there)."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for path in sorted(src.rglob("*")):
        if "__pycache__" in path.parts or path.is_dir():
            continue
        target = tmp / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".py":
            target.write_text(blank(path.read_text(), path.relative_to(src).as_posix(), chapters))
        else:
            shutil.copyfile(path, target)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def drift(package: Path) -> list[str]:
    """The files in which `package` differs from a freshly generated skeleton."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "lab"
        make_skeleton(fresh)
        names = {p.relative_to(root).as_posix() for root in (fresh, package) for p in root.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}
        return sorted(n for n in names if not ((fresh / n).is_file() and (package / n).is_file()
                                               and filecmp.cmp(fresh / n, package / n, shallow=False)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "lab", help="where to write the package (default: lab/)")
    parser.add_argument("--chapters", nargs="+", metavar="NN", help="blank only these chapters' blocks")
    parser.add_argument("--check", action="store_true", help="only check that --out is the generated skeleton")
    args = parser.parse_args(argv)
    if args.check:
        if differ := drift(args.out.resolve()):
            print(f"{args.out} is not what tools/make_skeleton.py generates: {', '.join(differ)}\n"
                  "Maintainers: run `make skeleton` and commit lab/ (it overwrites lab/).", file=sys.stderr)
            return 1
        print(f"{args.out} matches the generated skeleton")
        return 0
    make_skeleton(args.out.resolve(), set(args.chapters) if args.chapters else None)


if __name__ == "__main__":
    sys.exit(main())
