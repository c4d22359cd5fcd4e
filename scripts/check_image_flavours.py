"""Check that the Dockerfile's cpu and gpu stages differ only in the lines its header lists.

Docker cannot give stages with different bases a common parent, so each image repeats the shared
stages; this check keeps those copies from drifting apart. Usage: check_image_flavours.py [Dockerfile]
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

# (cpu stage, gpu stage) pairs that must match once the allowed differences are masked.
PAIRS = (("cpu", "gpu"),)
# The allowed differences, as (pattern, placeholder); both flavours' spellings are masked alike.
ALLOWED = (
    (re.compile(r"\$\{(PYTHON|CUDA)_IMAGE\}"), "${BASE_IMAGE}"),
    (re.compile(r"^ARG TORCH_INDEX_URL=.*$"), "ARG TORCH_INDEX_URL=<index>"),
    (re.compile(r"\bAS (cpu|gpu)$"), "AS <flavour>"),
    (re.compile(r"configs/(default|gpu)\.yaml"), "<config>"),
    (re.compile(r"--start-period=\S+"), "--start-period=<period>"),
)


def stages(text: str) -> dict[str, list[str]]:
    """Instructions per named stage: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    result: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = re.match(r"FROM\s+\S+\s+AS\s+(\S+)$", line, re.IGNORECASE)
        if found:
            current = result.setdefault(found.group(1), [])
        if current is not None:
            current.append(" ".join(line.split()))
    return result


def masked(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        for pattern, placeholder in ALLOWED:
            line = pattern.sub(placeholder, line)
        out.append(line)
    return out


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "Dockerfile")
    found = stages(path.read_text())
    failed = False
    for cpu, gpu in PAIRS:
        if cpu not in found or gpu not in found:
            print(f"{path}: stage {cpu if cpu not in found else gpu!r} is missing")
            failed = True
            continue
        diff = list(difflib.unified_diff(masked(found[cpu]), masked(found[gpu]), cpu, gpu, lineterm="", n=1))
        if diff:
            print(f"{path}: stages {cpu} and {gpu} differ beyond the documented differences:")
            print("\n".join(diff))
            failed = True
    if not failed:
        print(f"{path}: cpu and gpu stages differ only as documented")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
