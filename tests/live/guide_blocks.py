"""The shell blocks of docs/install.md, as the real-zone runner executes them (standard library only).

The runner installs the project into a real iRODS by running the guide's own blocks, so the guide cannot
drift from what the live suite tests. Every ```sh block of the guide carries a marker comment on the line
before its fence, saying what the runner does with it on a Debian 12 host:

    <!-- real-zone: run -->                 run it, in order, in one bash
    <!-- real-zone: restart -->             the server restart: the runner restarts with the test bundle's
                                            stop.sh/start.sh instead (these machines' PID 1 does not reap)
    <!-- real-zone: upgrade -->             run only by `real_zone.sh --reinstall` (swap in new code)
    <!-- real-zone: skip: <reason> -->      not run; the reason says why (another platform, a placeholder,
                                            a destructive example, the OMERO host)

An unmarked block is an error: a new command in the guide must say whether the tests run it.

    python3 tests/live/guide_blocks.py [--mode install|upgrade] [--repo DIR]   prints the script it builds
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from typing import List, NamedTuple, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GUIDE = os.path.join(ROOT, "docs", "install.md")

MARKER = re.compile(r"^\s*<!--\s*real-zone:\s*(run|restart|upgrade|skip)\s*(?::\s*(.*?))?\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
HEADING = re.compile(r"^#{2,3}\s+(.*)$")
KINDS = ("run", "restart", "upgrade", "skip")


class GuideError(Exception):
    """The guide breaks the marker convention; the message names the line and the fix."""


class Block(NamedTuple):
    line: int          # 1-based line of the opening fence
    section: str       # the heading the block is under
    kind: str          # run | restart | upgrade | skip
    reason: str        # for skip
    code: str


def parse(text: str) -> List[Block]:
    """Every ```sh block with its marker; GuideError on an unmarked block or a marker with no block."""
    blocks: List[Block] = []
    lines = text.splitlines()
    section = ""
    pending: Optional[re.Match] = None
    pending_line = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = HEADING.match(line)
        if heading:
            section = heading.group(1).strip()
        marker = MARKER.match(line)
        if marker:
            if pending is not None:
                raise GuideError("docs/install.md:{}: real-zone marker not followed by a ```sh block".format(
                    pending_line))
            pending, pending_line = marker, i + 1
            i += 1
            continue
        fence = FENCE.match(line)
        if fence:
            indent, lang = fence.group(1), fence.group(2)
            body: List[str] = []
            j = i + 1
            while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
                body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
                j += 1
            if j >= len(lines):
                raise GuideError("docs/install.md:{}: code block never closed".format(i + 1))
            if lang == "sh":
                if pending is None:
                    raise GuideError(
                        "docs/install.md:{}: ```sh block without a marker: put '<!-- real-zone: run -->' "
                        "(or restart / upgrade / skip: <reason>) on the line before it".format(i + 1))
                blocks.append(Block(i + 1, section, pending.group(1), (pending.group(2) or "").strip(),
                                    "\n".join(body) + "\n"))
                if pending.group(1) == "skip" and not blocks[-1].reason:
                    raise GuideError("docs/install.md:{}: 'skip' needs a reason ('<!-- real-zone: skip: "
                                     "why -->')".format(pending_line))
            elif pending is not None:
                raise GuideError("docs/install.md:{}: real-zone marker before a ```{} block (only sh blocks "
                                 "are run)".format(pending_line, lang))
            pending = None
            i = j + 1
            continue
        if pending is not None and line.strip():
            raise GuideError("docs/install.md:{}: real-zone marker not directly before a ```sh block".format(
                pending_line))
        i += 1
    if pending is not None:
        raise GuideError("docs/install.md:{}: real-zone marker at the end of the file".format(pending_line))
    return blocks


def set_variable(code: str, name: str, value: str) -> str:
    """Give step 0's `NAME=...` line this machine's value, as the guide asks the reader to."""
    pattern = re.compile(r"^{}=\S+".format(re.escape(name)), re.M)
    if not pattern.search(code):
        raise GuideError("no '{}=' line in the block that should set it".format(name))
    return pattern.sub(lambda _m: "{}={}".format(name, shlex.quote(value)), code, count=1)


def script(blocks: List[Block], mode: str, repo: str, restart: str) -> str:
    """One bash script: the blocks of `mode` in the guide's order, each announced, failing on any error.

    `set -e` with an ERR trap that names the block: a person pasting the guide sees each error; the runner
    must stop at the first one, or a broken step would pass for installed."""
    want = {"install": ("run", "restart"), "upgrade": ("upgrade", "restart")}[mode]
    out = ["set -eE", "trap 'echo \"guide: FAILED in the block at docs/install.md:$GUIDE_LINE ($GUIDE_SECTION): "
           "$BASH_COMMAND\" >&2' ERR"]
    variables_set = False
    if mode == "upgrade":  # step 11 ends "then restart (step 5)": the restart block goes after the upgrade's
        blocks = [b for b in blocks if b.kind != "restart"] + [b for b in blocks if b.kind == "restart"]
    for b in blocks:
        is_vars = re.search(r"^REPO=", b.code, re.M) is not None
        if b.kind not in want and not is_vars:
            continue
        code = b.code
        if is_vars:
            code = set_variable(code, "REPO", repo)
            variables_set = True
        if b.kind == "restart":
            code = restart + "\n"
        out.append("GUIDE_LINE={}; GUIDE_SECTION={}".format(b.line, shlex.quote(b.section)))
        out.append("echo {} >&2".format(shlex.quote("guide: [{}] docs/install.md:{} ({}){}".format(
            b.kind, b.line, b.section, " -> test bundle's stop.sh/start.sh" if b.kind == "restart" else ""))))
        out.append(code)
    if not variables_set:
        raise GuideError("docs/install.md has no block setting REPO= (step 0)")
    out.append("echo 'guide: all blocks ran' >&2")
    return "\n".join(out) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("install", "upgrade"), default="install")
    p.add_argument("--repo", default=ROOT)
    p.add_argument("--restart", default="/usr/local/lib/irods-real/stop.sh && /usr/local/lib/irods-real/start.sh")
    p.add_argument("--guide", default=GUIDE)
    a = p.parse_args(argv)
    try:
        with open(a.guide, encoding="utf-8") as f:
            blocks = parse(f.read())
        sys.stdout.write(script(blocks, a.mode, os.path.abspath(a.repo), a.restart))
    except GuideError as e:
        sys.stderr.write("guide_blocks: {}\n".format(e))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
