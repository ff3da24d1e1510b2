#!/usr/bin/env python3
"""Every value of a chart's values.yaml is described in its README.md's values table.

  values_documented.py CHART

A table row's first cell names values in backticks: `a.b.c`, and `.d` after it means `a.b.d`. A value
counts as described when its key path or one of its ancestors (e.g. `gateway.resources` for
`gateway.resources.requests.cpu`) is named. Exit status 1 lists the undescribed values.
"""

import re
import sys

import yaml


def leaves(node, prefix=""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def documented(readme):
    names = set()
    for line in readme.splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        base = None
        for name in re.findall(r"`([^`]+)`", first):
            if name.startswith(".") and base:
                names.add(base + name)
            else:
                names.add(name)
                base = name.rsplit(".", 1)[0]
    return names


def main():
    chart = sys.argv[1]
    with open(f"{chart}/values.yaml", encoding="utf-8") as f:
        values = yaml.safe_load(f)
    with open(f"{chart}/README.md", encoding="utf-8") as f:
        names = documented(f.read())
    missing = []
    for path in leaves(values):
        parts = path.split(".")
        if not any(".".join(parts[:i]) in names for i in range(1, len(parts) + 1)):
            missing.append(path)
    for path in missing:
        print(f"not described in {chart}/README.md: {path}")
    print(f"{len(list(leaves(values)))} values, {len(missing)} undescribed")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
