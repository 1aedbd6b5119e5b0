"""The runtime's imports go down the floors ARCHITECTURE.md draws: no import circles, and
no module reaching up (say, the store importing images, or container importing supervisor).

Every import of a lab module counts, also one inside a function (it is still an arrow)."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "solutions" / "lab"


def floors() -> dict[str, int]:
    """module -> its floor (0 is the top), from the ```layers block of ARCHITECTURE.md."""
    block = re.search(r"```layers\n(.*?)```", (ROOT / "ARCHITECTURE.md").read_text(), re.S)
    assert block, "ARCHITECTURE.md has no ```layers block"
    return {name: number for number, line in enumerate(block.group(1).splitlines()) for name in line.split()}


def imports(path: Path, modules: set[str]) -> set[str]:
    """The lab modules that the file at path imports (`from lab import x`, `from lab.x import y`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "lab":
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lab."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("lab.")}
    return found - {path.stem}


def test_every_module_is_on_a_floor():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert sorted(modules - set(floors())) == [], "add these modules to ARCHITECTURE.md's layers block"
    assert sorted(set(floors()) - modules) == [], "ARCHITECTURE.md names modules that do not exist"


def test_imports_only_go_down():
    floor = floors()
    modules = set(floor)
    upward = [f"{path.stem} (floor {floor[path.stem]}) imports {other} (floor {floor[other]})"
              for path in sorted(PACKAGE.glob("*.py")) if path.stem in floor
              for other in sorted(imports(path, modules)) if floor[other] <= floor[path.stem]]
    assert upward == []


def test_the_course_tools_live_outside_the_package():
    """lab_impl.py and course.py decide which lab runs and check it: the runtime never imports them."""
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not names & {"lab_impl", "course"}, f"{path.name} imports a course tool"
