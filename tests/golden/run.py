#!/usr/bin/env python3
"""Golden replay tests: committed captures in, committed JSON records out.

    python3 tests/golden/run.py [--update] [NAME...]

For each case of manifest.txt (NAME CAPTURE [OPTION...]) this runs, in this
directory, `connscope replay captures/CAPTURE -o json OPTION...` (TZ=UTC,
LC_ALL=C), normalizes the records (normalize() below says what it changes and
why) and compares them, one JSON object a line with sorted keys, with
expected/NAME.jsonl; what replay printed on stderr is compared with
expected/NAME.stderr (no such file: stderr must be empty). A difference prints a
unified diff, then the changed fields record by record, and fails. Replay must
exit 0.

--update (or GOLDEN_UPDATE=1) writes the expected files from this run instead:
review the diff (git diff tests/golden/expected) before committing it.

Needs no root and nothing but python3 and the connscope binary (./connscope at
the top of the repository, or CONNSCOPE_BIN). Exit status 0 when every case
matches, 1 otherwise, 2 for a bad command line or manifest.
"""

import difflib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
EXPECTED = HERE / "expected"
BINARY = os.environ.get("CONNSCOPE_BIN", str(REPO / "connscope"))
TIMEOUT = 60

# Fields whose value differs from run to run on the same capture, by record
# type, and what stands in for them. Checked by replaying every capture twice,
# and in another time zone and locale: only the replay's own CPU time changed.
# Everything else (packet-time stamps, connect_ms, durations, counts, the
# capture's file name, which is relative to this directory) is the capture's
# and stays. A new field that varies makes the test fail: add it here only
# once it is known to be the machine's and not the capture's.
VARYING = {"stats": ("cpu_ms",)}
PLACEHOLDER = "<varies>"


def read_manifest():
    cases = []
    for n, line in enumerate((HERE / "manifest.txt").read_text().splitlines(), 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if len(words) < 2:
            sys.exit(f"manifest.txt:{n}: want NAME CAPTURE [OPTION...]: {line!r}")
        name, capture, opts = words[0], words[1], words[2:]
        if any(c["name"] == name for c in cases):
            sys.exit(f"manifest.txt:{n}: case {name} twice")
        cases.append({"name": name, "capture": capture, "opts": opts})
    return cases


def normalize(rec):
    """The record with what varies between runs replaced by PLACEHOLDER (the key
    stays, so a field that disappears is still a difference)."""
    for key in VARYING.get(rec.get("type"), ()):
        if key in rec:
            rec[key] = PLACEHOLDER
    return rec


def replay(case):
    """Run one case. Returns (lines, stderr, problems): the normalized records as
    sorted-key JSON lines, stderr's text, and what is wrong with the run itself."""
    argv = [BINARY, "replay", f"captures/{case['capture']}", "-o", "json", *case["opts"]]
    env = dict(os.environ, TZ="UTC", LC_ALL="C")
    problems = []
    try:
        cp = subprocess.run(argv, cwd=HERE, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return [], "", [f"timed out after {TIMEOUT}s: {shlex.join(argv)}"]
    if cp.returncode != 0:
        problems.append(f"exit status {cp.returncode}: {shlex.join(argv)}")
    lines = []
    for ln in cp.stdout.splitlines():
        try:
            rec = json.loads(ln)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError:
            problems.append(f"not a JSON object on stdout: {ln[:200]!r}")
            continue
        lines.append(json.dumps(normalize(rec), sort_keys=True))
    return sort_summaries(lines), cp.stderr, problems


def summary_key(line):
    rec = json.loads(line)
    pod = rec.get("pod") or {}
    return (pod.get("namespace") or "", pod.get("name") or "", rec.get("ip") or "", line)


def sort_summaries(lines):
    """The summaries of one interval, in pod order: connscope prints them in the
    order of its pod table, which is not part of the contract."""
    out, run = [], []
    for ln in lines + [None]:
        if ln is not None and json.loads(ln).get("type") == "summary":
            run.append(ln)
            continue
        out += sorted(run, key=summary_key)
        run = []
        if ln is not None:
            out.append(ln)
    return out


def flatten(obj, prefix=""):
    """{"a.b[0].c": value} of a JSON value, for naming what changed."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = obj
    return out


def field_changes(want, got):
    """Per record line that differs (when both have as many lines): the fields
    that changed, as 'line N (type): path: expected -> got'."""
    out = []
    if len(want) != len(got):
        return [f"{len(want)} records expected, {len(got)} replayed"]
    for i, (w, g) in enumerate(zip(want, got), 1):
        if w == g:
            continue
        fw, fg = flatten(json.loads(w)), flatten(json.loads(g))
        typ = fg.get("type", "?")
        for path in sorted(fw.keys() | fg.keys()):
            a, b = fw.get(path, "(absent)"), fg.get(path, "(absent)")
            if a != b:
                out.append(f"line {i} ({typ}): {path}: {json.dumps(a)} -> {json.dumps(b)}")
    return out


def compare(name, kind, want_text, got_text):
    """A readable account of how got_text differs from want_text, or None."""
    if want_text == got_text:
        return None
    want, got = want_text.splitlines(), got_text.splitlines()
    diff = difflib.unified_diff(want, got, f"expected/{name}.{kind}", f"replayed/{name}.{kind}",
                                lineterm="", n=1)
    out = "\n".join(diff)
    if kind == "jsonl":
        out += "\n  changed fields:\n" + "\n".join(
            "    " + c for c in field_changes(want, got)[:40])
    return out


def main(argv):
    update = os.environ.get("GOLDEN_UPDATE") == "1"
    names = []
    for a in argv:
        if a == "--update":
            update = True
        elif a in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        elif a.startswith("-"):
            print(f"run.py: unknown option {a}", file=sys.stderr)
            return 2
        else:
            names.append(a)
    if not os.access(BINARY, os.X_OK):
        print(f"golden: {BINARY} is missing: run make (or set CONNSCOPE_BIN)", file=sys.stderr)
        return 1
    cases = read_manifest()
    unknown = set(names) - {c["name"] for c in cases}
    if unknown:
        print(f"golden: no such case(s): {' '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    failed = []
    t0 = time.monotonic()
    if not names:
        # expected output that no case produces any more is a mistake too
        known = {c["name"] for c in cases}
        stale = sorted(p.name for p in EXPECTED.glob("*")
                       if p.name.rsplit(".", 1)[0] not in known)
        if stale and update:
            for s in stale:
                (EXPECTED / s).unlink()
                print(f"golden: removed stale expected/{s}")
        elif stale:
            print(f"golden: expected files of no case in manifest.txt: {' '.join(stale)}")
            failed.append("(stale)")
    for case in cases:
        if names and case["name"] not in names:
            continue
        name = case["name"]
        lines, stderr, problems = replay(case)
        got = {"jsonl": "".join(ln + "\n" for ln in lines), "stderr": stderr}
        if problems:
            print(f"FAIL {name}:\n  " + "\n  ".join(problems[:10]))
            if stderr:
                print("  stderr:\n    " + "\n    ".join(stderr.splitlines()[:10]))
            failed.append(name)
            continue
        if update:
            EXPECTED.mkdir(exist_ok=True)
            for kind, text in got.items():
                path = EXPECTED / f"{name}.{kind}"
                if text or kind == "jsonl":
                    if not path.exists() or path.read_text() != text:
                        path.write_text(text)
                        print(f"golden: wrote expected/{path.name}")
                elif path.exists():
                    path.unlink()
                    print(f"golden: removed expected/{path.name}")
            continue
        diffs = []
        for kind, text in got.items():
            path = EXPECTED / f"{name}.{kind}"
            if not path.exists() and kind == "jsonl":
                diffs.append(f"expected/{path.name} is missing (run.py --update makes it)")
                continue
            d = compare(name, kind, path.read_text() if path.exists() else "", text)
            if d:
                diffs.append(d)
        if diffs:
            print(f"FAIL {name}: replay of captures/{case['capture']} "
                  f"{shlex.join(case['opts'])} differs from the expected output")
            print("\n".join(diffs))
            failed.append(name)
        else:
            print(f"ok   {name}")
    took = time.monotonic() - t0
    if update:
        print(f"golden: expected output updated ({took:.1f}s); review: git diff {EXPECTED}")
        return 1 if failed else 0
    if failed:
        print(f"golden: {len(failed)} failed: {' '.join(failed)} ({took:.1f}s)")
        return 1
    print(f"golden: all {len(names) or len(cases)} cases match ({took:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
