#!/usr/bin/env python3
"""Checks the layout rules of ARCHITECTURE.md on the source tree:

  - no source file under src/ is over 600 lines;
  - no import cycle between files: a file that uses an item of another file (through `use`,
    `crate::`, `super::` or `self::` paths, re-exports included) depends on it, and no chain
    of such dependencies leads back to where it started;
  - at most six integration-test binaries under tests/.

`mod child;` declarations and re-exports (`pub use`) are not uses: a path through a
re-export is followed to the file that defines the item. Unit tests (`#[cfg(test)] mod tests` and files
named tests.rs or under a tests/ folder) may use their parent. Prints what breaks a rule and
exits 1, or prints a one-line summary and exits 0.

Usage: scripts/check-layout.py [--graph]   (--graph also prints every file's dependencies)
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "src")
MAX_LINES = 600
MAX_TEST_BINARIES = 6

PATH_RE = re.compile(r"\b(crate|super|self)((?:::\w+)+)")
USE_RE = re.compile(r"(\bpub(?:\([\w:\s]+\))?\s+)?\buse\s+([^;]+);", re.S)
TEST_TAIL_RE = re.compile(r"^#\[cfg\(test\)\]\s*\n\s*mod\s+\w+\s*\{", re.M)
COMMENT_RE = re.compile(r"//[^\n]*")


def module_of(path):
    """The module path (list of names) of a file under src/, and whether it is a mod.rs-like
    file (its children live in its own folder)."""
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel in (["lib"], ["main"]):
        return [], True
    if rel[0] == "bin":
        return None, False
    if rel[-1] == "mod":
        return rel[:-1], True
    return rel, False


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, text):
        depth, start, parts = 0, 0, []
        for i, ch in enumerate(text):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(text[start:i])
                start = i + 1
        parts.append(text[start:])
        for part in parts:
            if not part:
                continue
            brace = part.find("{")
            if brace >= 0 and part.endswith("}"):
                walk(prefix + part[:brace], part[brace + 1 : -1])
            else:
                out.append(prefix + part.split("as")[0] if "::" in part or prefix else part)

    walk("", tree)
    return out


def is_test_file(path):
    rel = os.path.relpath(path, SRC).split(os.sep)
    return rel[-1] == "tests.rs" or "tests" in rel[:-1]


def main():
    files = {}
    for dirpath, _, names in os.walk(SRC):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(dirpath, name)
                module, is_dir = module_of(path)
                if module is not None:
                    files[path] = (module, is_dir)
    by_module = {tuple(m): p for p, (m, _) in files.items() if os.path.basename(p) != "main.rs"}

    problems = []
    for path in sorted(files):
        with open(path, encoding="utf-8") as f:
            lines = sum(1 for _ in f)
        if lines > MAX_LINES:
            problems.append(f"{os.path.relpath(path, ROOT)}: {lines} lines (at most {MAX_LINES})")

    texts = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        tail = TEST_TAIL_RE.search(text)
        if tail:
            text = text[: tail.start()]
        texts[path] = COMMENT_RE.sub("", text)

    def absolute(path, p):
        """The absolute module path of `p` as written in file `path`, or None."""
        module, is_dir = files[path]
        parts = [x for x in p.split("::") if x]
        if not parts:
            return None
        if parts[0] == "crate":
            return parts[1:]
        if parts[0] == "self":
            return list(module) + parts[1:]
        if parts[0] == "super":
            base = list(module)
            while parts and parts[0] == "super":
                base = base[:-1]
                parts = parts[1:]
            return base + parts
        target = list(module) + parts
        if tuple(target[: len(module) + 1]) not in by_module:
            return None  # an extern crate or a local item
        return target

    # name -> absolute target of every re-export, per file
    reexports = {p: {} for p in files}
    for path, text in texts.items():
        for m in USE_RE.finditer(text):
            if not m.group(1):
                continue
            for p in expand_use(m.group(2)):
                target = absolute(path, p)
                if target:
                    reexports[path][target[-1]] = target

    def owner_of(target, depth=0):
        for n in range(len(target), -1, -1):
            owner = by_module.get(tuple(target[:n]))
            if owner is not None:
                rest = target[n:]
                if rest and depth < 8 and rest[0] in reexports[owner]:
                    return owner_of(reexports[owner][rest[0]] + rest[1:], depth + 1)
                return owner
        return None

    deps = {p: set() for p in files}
    for path, text in texts.items():
        if is_test_file(path) or os.path.basename(path) == "main.rs":
            continue
        paths = []
        for m in USE_RE.finditer(text):
            if not m.group(1):
                paths.extend(expand_use(m.group(2)))
        body = USE_RE.sub("", text)
        paths.extend(m.group(0) for m in PATH_RE.finditer(body))
        for p in paths:
            target = absolute(path, p)
            if target is None:
                continue
            owner = owner_of(target)
            if owner is not None and owner != path:
                deps[path].add(owner)

    # Cycles: strongly connected components with more than one file.
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in deps[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(deps):
        if v not in index:
            strong(v)
    for comp in comps:
        names = sorted(os.path.relpath(p, ROOT) for p in comp)
        edges = [
            f"{os.path.relpath(a, ROOT)} -> {os.path.relpath(b, ROOT)}"
            for a in sorted(comp)
            for b in sorted(deps[a])
            if b in comp
        ]
        problems.append("import cycle between " + ", ".join(names) + ":\n    " + "\n    ".join(edges))

    tests = os.path.join(ROOT, "tests")
    binaries = sorted(
        n
        for n in os.listdir(tests)
        if (n.endswith(".rs") and os.path.isfile(os.path.join(tests, n)))
        or os.path.isfile(os.path.join(tests, n, "main.rs"))
    )
    if len(binaries) > MAX_TEST_BINARIES:
        problems.append(
            f"{len(binaries)} integration-test binaries (at most {MAX_TEST_BINARIES}): " + ", ".join(binaries)
        )

    if "--graph" in sys.argv:
        for p in sorted(deps):
            print(os.path.relpath(p, ROOT), "->", ", ".join(sorted(os.path.relpath(d, ROOT) for d in deps[p])))
    if problems:
        print("check-layout: " + "\n".join(problems), file=sys.stderr)
        return 1
    print(f"check-layout: {len(files)} files, none over {MAX_LINES} lines, no import cycle, {len(binaries)} test binaries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
