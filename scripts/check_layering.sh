#!/bin/sh
# Checks minidl's layering: a file may include only headers of its own folder and of the
# folders below it (the libraries of CMakeLists.txt link the same way):
#   apps -> experiments -> train -> optim -> layers -> dist -> core,   train -> data -> core
# Usage: scripts/check_layering.sh [SOURCE_DIR]. Prints every violation as
# "file:line: <folder> may not include <header>" and exits 1 if there is any (a ctest case).
cd "${1:-$(dirname "$0")/..}" || exit 2
status=0
check() {  # check FOLDER ALLOWED...: every #include "x/..." in FOLDER must have x in ALLOWED
  folder=$1
  shift
  for f in $(find "$folder" -name '*.hpp' -o -name '*.cpp'); do
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[a-z_]*/' "$f" | while IFS= read -r hit; do
      line=${hit%%:*}
      header=$(printf '%s\n' "$hit" | sed 's/^[^"]*"\([^"]*\)".*/\1/')
      top=${header%%/*}
      ok=0
      for a in "$@"; do [ "$top" = "$a" ] && ok=1; done
      if [ $ok = 0 ]; then
        echo "$f:$line: $folder/ may not include $header (allowed: $*)"
        echo x >> "$tmp"
      fi
    done
  done
}
tmp=$(mktemp)
check core core
check data data core
check dist dist core
check layers layers dist core
check optim optim layers dist core
check train train optim layers dist data core
check experiments experiments train optim layers dist data core
check apps apps experiments train optim layers dist data core
[ -s "$tmp" ] && status=1
rm -f "$tmp"
exit $status
