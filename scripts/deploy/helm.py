#!/usr/bin/env python3
"""`helm lint` and `helm template` for scripts/check-deploy, through Helm 4's Go SDK (the PyPI package
helm-python-sdk binds it; it ships no `helm` binary).

  helm.py lint CHART [--strict] [--kube-version vX.Y.Z] [-f VALUES]...
  helm.py template CHART --name NAME --namespace NS [-f VALUES]... [--set-file KEY=PATH]... [--notes FILE]

`template` validates the values against values.schema.json first (as install and template do), prints
every rendered manifest (hooks and test hooks included, like `helm template`) as one YAML stream with
`# Source:` lines, and writes the rendered NOTES.txt to --notes. Exit status 1 on any lint finding of
warning or error severity under --strict, on a schema violation and on a render error.
"""

import argparse
import sys

import helm_python as helm


def deep_merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def set_path(values, dotted, value):
    keys = dotted.split(".")
    for key in keys[:-1]:
        values = values.setdefault(key, {})
    values[keys[-1]] = value


def load_values(files, set_files):
    values = {}
    for path in files or []:
        with open(path, encoding="utf-8") as f:
            deep_merge(values, helm.values_from_yaml(f.read()) or {})
    for item in set_files or []:
        key, _, path = item.partition("=")
        with open(path, encoding="utf-8") as f:
            set_path(values, key, f.read())
    return values


def lint(args):
    values = load_values(args.values, args.set_file)
    report = helm.lint(args.chart, values, strict=args.strict, kube_version=args.kube_version)
    names = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
    failed = False
    for message in report.get("messages") or []:
        severity = message.get("severity", 0)
        print(f"[{names.get(severity, severity)}] {message.get('path', '')}: {message.get('error', '')}")
        if severity >= 3 or (args.strict and severity >= 2):
            failed = True
    for error in report.get("errors") or []:
        print(f"[ERROR] {error}")
        failed = True
    linted = report.get("total_charts_linted", 0)
    print(f"{linted} chart(s) linted, {'failed' if failed else 'no failures'}")
    return 1 if failed or linted < 1 else 0


def template(args):
    values = load_values(args.values, args.set_file)
    with helm.Chart.load(args.chart) as chart:
        try:
            chart.validate_schema(values)
            rendered = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
        except helm.HelmError as error:
            print(f"Error: {error}", file=sys.stderr)
            return 1
    out = []
    for path in sorted(rendered):
        text = rendered[path]
        if path.endswith("NOTES.txt"):
            if args.notes:
                with open(args.notes, "w", encoding="utf-8") as f:
                    f.write(text)
            continue
        if not text.strip():
            continue
        for doc in text.split("\n---"):
            if doc.strip():
                out.append(f"---\n# Source: {path}\n{doc.strip()}\n")
    sys.stdout.write("".join(out))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lint")
    p.add_argument("chart")
    p.add_argument("--strict", action="store_true")
    p.add_argument("--kube-version")
    p.add_argument("-f", "--values", action="append")
    p.add_argument("--set-file", action="append")
    p.set_defaults(run=lint)
    p = sub.add_parser("template")
    p.add_argument("chart")
    p.add_argument("--name", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("-f", "--values", action="append")
    p.add_argument("--set-file", action="append")
    p.add_argument("--notes")
    p.set_defaults(run=template)
    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
