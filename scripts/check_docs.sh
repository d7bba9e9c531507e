#!/bin/sh
# Checks minidl's documentation: README.md is an entry of at most 300 lines, and every relative
# link in README.md and in the top-level pages docs/*.md points to a file that exists and, when
# it names a #anchor in a markdown file, to a heading that exists there (GitHub's slugs:
# lowercase, punctuation dropped but for hyphens and spaces, spaces to hyphens, -1, -2, ... for
# repeated headings). Links inside code (fenced blocks and `spans`) and absolute URLs are skipped.
# Usage: scripts/check_docs.sh [SOURCE_DIR]. Prints every problem as "file:line: <problem>" and
# exits 1 if there is any (a ctest case, docs_links).
cd "${1:-$(dirname "$0")/..}" || exit 2
python=/usr/bin/python3
[ -x "$python" ] || python=python3
exec "$python" - <<'EOF'
import glob, os, re, sys, urllib.parse

MAX_README_LINES = 300
problems = []


def strip_code(text, spans=True):
    """The text with fenced code blocks (and code spans) blanked, newlines kept for line numbers."""
    out, fence = [], None
    for line in text.split("\n"):
        m = re.match(r" {0,3}(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)
            out.append("")
        elif fence is not None:
            if re.match(r" {0,3}" + re.escape(fence[0]) + "{%d,}\\s*$" % len(fence), line):
                fence = None
            out.append("")
        else:
            out.append(line)
    if not spans:
        return "\n".join(out)
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))
    return re.sub(r"(`+)(?:(?!\1)(?!\n[ \t]*\n).)+?\1", blank, "\n".join(out), flags=re.S)


def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)                          # inline HTML
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)                         # \w: letters, digits, _
    return text.replace(" ", "-")


anchor_cache = {}


def anchors(path):
    """Every anchor GitHub makes in the markdown file at path."""
    if path not in anchor_cache:
        found, seen, prev = set(), {}, ""
        lines = strip_code(open(path, encoding="utf-8").read(), spans=False).split("\n")
        for line in lines:
            heading = None
            m = re.match(r" {0,3}#{1,6}(?:\s+(.*?))?\s*$", line)
            if m:
                heading = re.sub(r"(^|\s+)#+$", "", m.group(1) or "")
            elif re.match(r" {0,3}(=+|-+)\s*$", line) and prev.strip() and \
                    not re.match(r"\s*([-*+|>]|\d+[.)])", prev):
                heading = prev.strip()  # setext heading: the line above is its text
            if heading is not None:
                s = slug(heading)
                n = seen.get(s, 0)
                seen[s] = n + 1
                found.add(s if n == 0 else "%s-%d" % (s, n))
            prev = line
        for m in re.finditer(r"<a\s[^>]*(?:name|id)=\"([^\"]+)\"", "\n".join(lines)):
            found.add(m.group(1))
        anchor_cache[path] = found
    return anchor_cache[path]


LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"                         # [text], one level of nesting
    r"\(\s*(<[^>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)"       # (target
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"            #  "title")
    r"|^ {0,3}\[[^\]]+\]:\s*(<[^>\n]*>|\S+)"                     # [ref]: target
    r"|<(?:a|img)\s[^>]*?(?:href|src)=\"([^\"]*)\"",            # <a href="">, <img src="">
    re.M)

pages = ["README.md"] + sorted(glob.glob("docs/*.md"))
for page in pages:
    text = open(page, encoding="utf-8").read()
    if page == "README.md":
        count = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        if count > MAX_README_LINES:
            problems.append("README.md: %d lines, more than %d (move text to docs/)"
                            % (count, MAX_README_LINES))
    code_free = strip_code(text)
    for m in LINK.finditer(code_free):
        target = next(g for g in m.groups() if g is not None) if any(m.groups()) else ""
        target = target.strip("<>")
        where = "%s:%d:" % (page, code_free.count("\n", 0, m.start()) + 1)
        if not target:
            problems.append("%s empty link target" % where)
            continue
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:|//", target):
            continue  # https:, mailto:, ...: not a file of this repository
        path, _, anchor = target.partition("#")
        path, anchor = urllib.parse.unquote(path), urllib.parse.unquote(anchor)
        if path.startswith("/"):
            resolved = os.path.normpath(path.lstrip("/") or ".")
        elif path:
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), path))
        else:
            resolved = page
        if not os.path.exists(resolved):
            problems.append("%s link (%s): %s does not exist" % (where, target, resolved))
            continue
        if anchor and resolved.endswith(".md") and os.path.isfile(resolved) \
                and anchor not in anchors(resolved):
            problems.append("%s link (%s): no heading in %s has the anchor #%s"
                            % (where, target, resolved, anchor))

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
