#!/usr/bin/env python3
"""Checks that every dependency's licence is compatible with tandem's
MIT OR Apache-2.0 (no copyleft-only crate). Uses `cargo deny` when it is
installed; otherwise reads `cargo metadata` and checks each SPDX expression:
an expression passes if one of its OR-alternatives is made only of
permissive licences."""
import json
import re
import shutil
import subprocess
import sys

PERMISSIVE = {
    "MIT", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "BSD-2-Clause",
    "BSD-3-Clause", "ISC", "Zlib", "0BSD", "Unicode-3.0", "Unicode-DFS-2016",
    "CC0-1.0", "Unlicense", "BSL-1.0", "MIT-0",
}


def alternatives(expr: str):
    expr = expr.replace("/", " OR ").replace("(", " ").replace(")", " ")
    for alt in re.split(r"\s+OR\s+", expr):
        yield [p.strip() for p in re.split(r"\s+AND\s+", alt) if p.strip()]


def ok(expr: str) -> bool:
    return any(all(p in PERMISSIVE for p in alt) for alt in alternatives(expr))


def main() -> int:
    if shutil.which("cargo-deny"):
        return subprocess.call(["cargo", "deny", "check", "licenses", "bans", "sources"])
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--locked"]
        if "--locked" in sys.argv else ["cargo", "metadata", "--format-version", "1"]))
    bad = []
    for p in meta["packages"]:
        if p["source"] is None:  # our own crates
            if p.get("license") != "MIT OR Apache-2.0":
                bad.append(f"{p['name']}: workspace crate licence must be 'MIT OR Apache-2.0', is {p.get('license')!r}")
            continue
        lic = p.get("license")
        if not lic:
            bad.append(f"{p['name']} {p['version']}: no SPDX licence field")
        elif not ok(lic):
            bad.append(f"{p['name']} {p['version']}: {lic}")
        if not p["source"].startswith("registry+"):
            bad.append(f"{p['name']}: source {p['source']} is not crates.io")
    for b in bad:
        print("licence check:", b, file=sys.stderr)
    print(f"licence check: {len(meta['packages'])} packages, {len(bad)} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
