#!/usr/bin/python3
"""The documented command lines against `minidl --help` (a ctest case, usage_matches_help).

Usage: usage_matches_help.py MINIDL SOURCE_DIR

- docs/cli.md's usage block (the block of "Using it", which the README names as the list of every
  flag) has one entry per command and experiment, and each entry names exactly the flags of
  `minidl <command> --help`: none missing, none that the binary lacks.
- Every subcommand of `minidl --help` and every experiment of `minidl experiment --help` has an
  entry there.
- docs/recipes.md's airbench94 command names exactly the flags that `train --help` says
  --recipe airbench94 takes.
- Every `build/minidl ...` command in README.md and docs/*.md names only flags its command has.
An entry is a line that starts with `build/minidl` and the lines indented under it; its flags are
the `--words` before a `#` comment. Each problem is printed as "file:line: ..."; exit status 1
if there is any. Standard library only.
"""
import os
import re
import subprocess
import sys

problems = []
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def help_of(minidl, words):
    """The text of `minidl WORDS --help`."""
    r = subprocess.run([minidl] + words + ["--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    text = r.stdout.decode()
    if r.returncode != 0:
        problems.append("minidl %s --help: exit status %d: %s" % (" ".join(words), r.returncode,
                                                                  text.strip()))
    return text


def help_flags(text):
    """The flags the help lists (the first name of each, --help aside)."""
    flags = set()
    for line in text.split("\n"):
        m = re.match(r"  (?:-\w, )?(--[a-z][a-z0-9-]*)", line)
        if m and m.group(1) != "--help":
            flags.add(m.group(1))
    return flags


def help_list(text, heading):
    """The names listed under `heading:` (subcommands, experiments)."""
    names, inside = [], False
    for line in text.split("\n"):
        if line.strip() == heading + ":":
            inside = True
        elif inside and re.match(r"  [a-z]", line):
            names.append(line.split()[0])
        elif inside and line.strip() and not line.startswith("   "):
            inside = False
    return names


def commands_in(path):
    """(line number, command words, flags, block index, under mpirun) of every `build/minidl`
    command in the fenced code blocks of the markdown file `path`."""
    found, fence, block = [], None, -1
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r" {0,3}(`{3,}|~{3,})", line)
        if m and fence is None:
            fence, block = m.group(1), block + 1
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is not None and re.match(r"(mpirun .*)?build/minidl\b", line):
            start, text = i + 1, line.split("#")[0]
            continued = text.rstrip().endswith("\\")
            while i + 1 < len(lines) and (continued or re.match(r"\s+[\[-]", lines[i + 1])):
                i += 1
                text += " " + lines[i].split("#")[0]
                continued = lines[i].split("#")[0].rstrip().endswith("\\")
            rest = text[text.index("build/minidl") + len("build/minidl"):].split()
            words = []
            for w in rest:
                if w.startswith("-") or w.startswith("[") or not re.match(r"[a-z][a-z-]*$", w):
                    break
                words.append(w)
            found.append((start, words, set(FLAG.findall(text)), block,
                          line.startswith("mpirun")))
        i += 1
    return found


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    minidl, src = sys.argv[1], sys.argv[2]
    root = help_of(minidl, [])
    subcommands = help_list(root, "Subcommands")
    experiments = help_list(help_of(minidl, ["experiment"]), "Subcommands")
    if not subcommands or not experiments:
        problems.append("minidl --help lists no subcommands, or experiment --help no experiments")
    known = {(): root}

    def flags_of(words):
        words = tuple(w for w in words if w in subcommands or w in experiments)
        if words not in known:
            known[words] = help_of(minidl, list(words))
        return help_flags(known[words]) | ({"--version"} if not words else set())

    # 1. docs/cli.md's reference block: exact, both ways, one entry per command.
    cli = os.path.join(src, "docs", "cli.md")
    entries = commands_in(cli)
    block = next((e[3] for e in entries if e[1] == ["train"]), None)
    if block is None:
        problems.append("docs/cli.md: no usage block with `build/minidl train`")
    reference = [e for e in entries if e[3] == block and not e[4]]  # not the mpirun example
    covered = set()
    for line, words, flags, _, _ in reference:
        where = "docs/cli.md:%d: minidl %s" % (line, " ".join(words))
        helped = flags_of(words)
        for f in sorted(flags - helped):
            problems.append("%s names %s, which its --help does not list" % (where, f))
        for f in sorted(helped - flags):
            problems.append("%s leaves out %s, which its --help lists" % (where, f))
        covered.add(tuple(words))
    for s in subcommands:
        wanted = [("experiment", e) for e in experiments] if s == "experiment" else [(s,)]
        for w in wanted:
            if w not in covered:
                problems.append("docs/cli.md: the usage block has no entry for minidl %s"
                                % " ".join(w))
    if () not in covered:
        problems.append("docs/cli.md: the usage block has no entry for minidl --version")

    # 2. airbench94: the flags the recipe takes, as train --help states them.
    m = re.search(r"takes only ((?:--[a-z-]+,?\s+)+)", known.get(("train",), "") or
                  help_of(minidl, ["train"]))
    takes = set(FLAG.findall(m.group(1))) | {"--recipe"} if m else set()
    if not m:
        problems.append("train --help: the --recipe help does not say which flags airbench94 takes")
    recipes = os.path.join(src, "docs", "recipes.md")
    airbench = [e for e in commands_in(recipes) if "--recipe" in e[2] and e[1] == ["train"]]
    if not airbench:
        problems.append("docs/recipes.md: no `build/minidl train --recipe airbench94` command")
    for line, _, flags, _, _ in airbench[:1]:
        for f in sorted(flags - takes):
            problems.append("docs/recipes.md:%d: names %s, which --recipe airbench94 refuses"
                            % (line, f))
        for f in sorted(takes - flags):
            problems.append("docs/recipes.md:%d: leaves out %s, which --recipe airbench94 takes"
                            % (line, f))

    # 3. Every documented command names only flags its command has.
    pages = ["README.md"] + sorted("docs/" + p for p in os.listdir(os.path.join(src, "docs"))
                                   if p.endswith(".md"))
    for page in pages:
        for line, words, flags, _, _ in commands_in(os.path.join(src, page)):
            if words and words[0] not in subcommands:
                problems.append("%s:%d: minidl %s: no such subcommand" % (page, line, words[0]))
                continue
            if words == ["experiment"] or (words[:1] == ["experiment"] and
                                           words[1] not in experiments):
                problems.append("%s:%d: minidl %s: no such experiment" % (page, line,
                                                                         " ".join(words)))
                continue
            for f in sorted(flags - flags_of(words)):
                problems.append("%s:%d: minidl %s: no flag %s" % (page, line, " ".join(words), f))

    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
