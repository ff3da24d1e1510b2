#!/usr/bin/env python3
"""The Docker build context as a reproducible tarball: the repository's tracked files minus what
.dockerignore excludes (the files `docker build .` would send from a clean checkout).

  build_context.py OUT.tar.gz [--list]

Exit status 1 when the context misses a file the Dockerfile needs or holds one .dockerignore excludes.
.dockerignore rules as Docker reads them: one pattern a line, `#` comments, Go filepath.Match syntax plus
`**` (any number of directories), a leading `!` re-includes, the last matching line wins, and a pattern
matching a directory excludes everything below it.
"""

import gzip
import json
import io
import os
import re
import subprocess
import sys
import tarfile


def pattern_regex(pattern):
    pattern = pattern.strip("/")
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i)
            if end < 0:
                out += re.escape(c)
            else:
                out += "[" + pattern[i + 1:end].replace("!", "^", 1) + "]"
                i = end
        else:
            out += re.escape(c)
        i += 1
    # A match of a directory covers everything below it.
    return re.compile(f"^{out}(?:/.*)?$")


def load_rules(path):
    rules = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            rules.append((negate, pattern_regex(os.path.normpath(line.lstrip("!")))))
    return rules


def excluded(path, rules):
    result = False
    for negate, regex in rules:
        if regex.match(path):
            result = not negate
    return result


def main():
    out = sys.argv[1]
    listing = "--list" in sys.argv[2:]
    rules = load_rules(".dockerignore")
    tracked = subprocess.run(["git", "ls-files", "-z"], check=True, capture_output=True).stdout.decode().split("\0")
    files = sorted(p for p in tracked if p and os.path.lexists(p) and not excluded(p, rules))
    # What the Dockerfile reads: the workspace (every member's manifest), the lock file and the healthcheck.
    needed = ["Dockerfile", "Cargo.toml", "Cargo.lock", "deploy/docker/healthcheck.sh", "rustfmt.toml"]
    members = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
                             check=True, capture_output=True, text=True).stdout
    root = os.getcwd()
    for package in json.loads(members)["packages"]:
        needed.append(os.path.relpath(package["manifest_path"], root))
    missing = [p for p in needed if p not in files]
    leaked = [p for p in files if p.split("/")[0] in (".git", "target", "docs") or p.startswith("deploy/helm/")]
    if missing or leaked:
        print(f"FAIL: build context misses {missing} or holds excluded files {leaked[:5]}", file=sys.stderr)
        return 1
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            info = tar.gettarinfo(path, arcname=path)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isreg():
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    with open(out, "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
            gz.write(buffer.getvalue())
    if listing:
        print("\n".join(files))
    print(f"{out}: {len(files)} files, {os.path.getsize(out) // 1024} KiB (tracked files minus .dockerignore)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
