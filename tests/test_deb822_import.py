"""python-debian's deb822 is imported through util/deb822.py, without the encoding detector it would load."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}).stdout


def test_parsing_stanzas_does_not_load_an_encoding_detector_and_requests_still_imports_it() -> None:
    out = _run(
        "import sys\n"
        "from rootfs_forge.index.packages import stanza_to_package\n"
        "from rootfs_forge.util.deb822 import Deb822\n"
        "print(dict(Deb822('Package: a\\nDescription: caf\\u00e9\\n')))\n"
        "print(sorted(m for m in ('charset_normalizer', 'chardet') if m in sys.modules))\n"
        "import requests, charset_normalizer\n"  # released after deb822's import: others load it as usual
        "print(requests.__name__, charset_normalizer.__name__)\n")
    assert out.splitlines() == ["{'Package': 'a', 'Description': 'caf\u00e9'}", "[]", "requests charset_normalizer"]


def test_no_module_imports_debian_deb822_directly() -> None:
    """An import of debian.deb822 (or debian.copyright) at a module's top, before util/deb822.py, would load the
    detector again: deb822's names come from rootfs_forge.util.deb822."""
    offenders = []
    for path in sorted((REPO / "rootfs_forge").rglob("*.py")):
        if path.name == "deb822.py" and path.parent.name == "util":
            continue
        for node in ast.parse(path.read_text()).body:  # module level only: a function's import runs later
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if any(n in ("debian.deb822", "debian.copyright") for n in names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []
