"""The module map (docs/architecture.md, "Where the code is") matches the tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mapped_modules() -> set[str]:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = page.split("## Where the code is", 1)[1].split("```", 2)[1]
    modules, package = set(), ""
    for line in block.splitlines():
        entry = re.match(r"^( *)(\S+)", line)
        if not entry or entry.group(2) == "smsbatch/":
            continue
        name = entry.group(2)
        if name.endswith("/"):
            package = name
        elif name.endswith(".py"):
            modules.add((package if len(entry.group(1)) > 2 else "") + name)
    return modules


def tree_modules() -> set[str]:
    package = ROOT / "smsbatch"
    return {
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }


def test_the_map_names_every_module_and_no_other():
    assert mapped_modules() == tree_modules()
