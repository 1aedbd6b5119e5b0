# The same harness as the chapters: LAB_IMPL, a private LAB_ROOT, root check, short failures.
from chapters.conftest import *  # noqa: F401,F403
