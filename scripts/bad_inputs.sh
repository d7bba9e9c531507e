#!/usr/bin/env bash
# Tries minidl on bad input, the way a new user meets it, and prints a markdown table: input,
# exit status, first line of the message. Every row should say exit 1 and name the file or flag.
#
# Usage: scripts/bad_inputs.sh [BUILD_DIR] [CIFAR_DIR]   (defaults: build, $MINIDL_DATA or
#        ../shared/data/cifar-10-batches-bin). Writes scratch files under a temporary folder.
# Needs /usr/bin/python3 (for crafting files; no packages).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DATA=${2:-${MINIDL_DATA:-../shared/data/cifar-10-batches-bin}}
DATA=$(realpath "$DATA")
M="$BUILD/minidl"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
PY=/usr/bin/python3

echo "| input | exit | message |"
echo "|---|---:|---|"
row() {  # row "description" args...
  local what=$1
  shift
  "$M" "$@" > "$T/out.txt" 2>&1
  local status=$?
  local out
  out=$(grep -m1 'error' "$T/out.txt" || head -1 "$T/out.txt")
  out=${out//|/\\|}
  out=${out//$T/TMP}
  out=${out//$DATA/DATA}
  [ ${#out} -gt 230 ] && out="${out:0:230}..."
  echo "| $what | $status | \`$out\` |"
}

# A small trained run to corrupt.
"$M" train --model resnet8 --epochs 1 --limit-train 256 --limit-test 100 --batch-size 64 \
  --threads 1 --data "$DATA" --out "$T/run" >/dev/null 2>&1
CK="$T/run/model.safetensors"

# --- checkpoints --------------------------------------------------------------------------
st() {  # st FILE HEADER_JSON [DATA_BYTES]: a safetensors file with this header
  $PY - "$1" "$2" "${3:-0}" <<'EOF'
import struct, sys
h = sys.argv[2].encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"\0" * int(sys.argv[3]))
EOF
}
: > "$T/empty.safetensors"
row "checkpoint: 0-byte file" eval --checkpoint "$T/empty.safetensors" --data "$DATA"
head -c 5000 "$CK" > "$T/cut.safetensors"
row "checkpoint: cut after 5,000 bytes" eval --checkpoint "$T/cut.safetensors" --data "$DATA"
head -c 300000 "$CK" > "$T/cut2.safetensors"
row "checkpoint: cut after 300,000 bytes (inside the tensors)" eval --checkpoint "$T/cut2.safetensors" --data "$DATA"
st "$T/notjson.safetensors" '{"w": {"dtype": "F32",' 4
row "checkpoint: header not JSON" eval --checkpoint "$T/notjson.safetensors" --data "$DATA"
st "$T/offs.safetensors" '{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}' 4
row "checkpoint: data_offsets [0] (short)" eval --checkpoint "$T/offs.safetensors" --data "$DATA"
st "$T/offs2.safetensors" '{"w": {"dtype": "F32", "shape": [1], "data_offsets": []}}' 4
row "checkpoint: data_offsets [] (empty)" eval --checkpoint "$T/offs2.safetensors" --data "$DATA"
$PY - "$T/deep.safetensors" <<'EOF'
import struct, sys
h = b'{"__metadata__": ' + b"[" * 100000 + b"]" * 100000 + b"}"
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h)
EOF
row "checkpoint: __metadata__ nested 100,000 deep" eval --checkpoint "$T/deep.safetensors" --data "$DATA"
st "$T/big.safetensors" '{"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4], "data_offsets": [0, 4]}}' 4
row "checkpoint: shape whose product overflows" eval --checkpoint "$T/big.safetensors" --data "$DATA"
st "$T/f16.safetensors" '{"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}' 4
row "checkpoint: F16 tensor" eval --checkpoint "$T/f16.safetensors" --data "$DATA"
st "$T/nomodel.safetensors" '{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}' 4
row "checkpoint: no model name in __metadata__" eval --checkpoint "$T/nomodel.safetensors" --data "$DATA"
$PY - "$CK" "$T/nan.safetensors" <<'EOF'
import json, math, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
begin = h["fc.weight"]["data_offsets"][0]
data = bytearray(raw[8 + n:])
data[begin + 12:begin + 16] = struct.pack("<f", math.nan)
open(sys.argv[2], "wb").write(raw[:8 + n] + bytes(data))
EOF
row "checkpoint: NaN in fc.weight" eval --checkpoint "$T/nan.safetensors" --data "$DATA"
row "checkpoint: NaN in fc.weight, --allow-nonfinite" eval --checkpoint "$T/nan.safetensors" --allow-nonfinite --limit-test 100 --data "$DATA"
row "checkpoint: a folder" eval --checkpoint "$T" --data "$DATA"
row "checkpoint: missing" eval --checkpoint "$T/nope.safetensors" --data "$DATA"

# --- data files ---------------------------------------------------------------------------
mkd() {  # mkd NAME: a copy of the data folder made of symlinks
  mkdir -p "$T/$1"
  for f in "$DATA"/*.bin; do ln -sf "$f" "$T/$1/"; done
}
mkd zero_test; rm "$T/zero_test/test_batch.bin"; : > "$T/zero_test/test_batch.bin"
row "data: 0-byte test_batch.bin (eval)" eval --checkpoint "$CK" --data "$T/zero_test"
mkd zero_train; rm "$T/zero_train/data_batch_3.bin"; : > "$T/zero_train/data_batch_3.bin"
row "data: 0-byte data_batch_3.bin (train)" train --epochs 1 --data "$T/zero_train" --out "$T/x"
mkd cut; rm "$T/cut/data_batch_1.bin"; head -c 1000000 "$DATA/data_batch_1.bin" > "$T/cut/data_batch_1.bin"
row "data: data_batch_1.bin cut to 1,000,000 bytes" train --epochs 1 --data "$T/cut" --out "$T/x"
mkd label; rm "$T/label/test_batch.bin"; cp "$DATA/test_batch.bin" "$T/label/"
printf '\x0b' | dd of="$T/label/test_batch.bin" bs=1 seek=3073 conv=notrunc status=none
row "data: label 11 in test record 1" eval --checkpoint "$CK" --data "$T/label"
mkd missing; rm "$T/missing/data_batch_5.bin"
row "data: data_batch_5.bin missing" train --epochs 1 --limit-train 100 --data "$T/missing" --out "$T/x"
row "data: folder missing" train --epochs 1 --data "$T/nowhere" --out "$T/x"

# --- images -------------------------------------------------------------------------------
$PY - "$T/huge.png" <<'EOF'
import struct, sys, zlib
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
ihdr = struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
EOF
row "image: PNG header claiming 12000x12000" predict --checkpoint "$CK" "$T/huge.png"
echo "hello" > "$T/text.png"
row "image: a text file named .png" predict --checkpoint "$CK" "$T/text.png"
row "image: missing" predict --checkpoint "$CK" "$T/none.jpg"

# --- flags --------------------------------------------------------------------------------
row "flag: --threads 0" train --threads 0
row "flag: --momentum nan" train --momentum nan
row "flag: --gamma nan" train --gamma nan
row "flag: --lr inf" train --lr inf
row "flag: --epochs 1e30" train --epochs 1e30
row "flag: --epochs 300 digits" train --epochs "$($PY -c 'print("9"*300)')"
row "flag: --seed -1" train --seed -1
row "flag: --batch-size 1" train --batch-size 1
row "flag: --milestones 10 nan" train --milestones 10 nan
row "flag: --optimizer rmsprop" train --optimizer rmsprop
row "flag: --model resnet999999999999" train --model resnet999999999999 --data "$DATA"
row "flag: --model resnet20_100000" train --model resnet20_100000 --data "$DATA"
row "flag: --model resnet21" train --model resnet21 --data "$DATA"
row "flag: eval --batch-size 0" eval --checkpoint "$CK" --batch-size 0
row "flag: bench --steps 2.5" bench --steps 2.5

# --- resume state -------------------------------------------------------------------------
cp -r "$T/run" "$T/r1"; rm "$T/r1/train_state.safetensors"
row "resume: no train_state.safetensors" train --resume "$T/r1" --data "$DATA"
cp -r "$T/run" "$T/r2"; echo '{"lr": "fast"}' > "$T/r2/config.json"
row "resume: config.json with \"lr\": \"fast\"" train --resume "$T/r2" --data "$DATA"
cp -r "$T/run" "$T/r3"; echo '{"lr": 0.1,' > "$T/r3/config.json"
row "resume: config.json cut short" train --resume "$T/r3" --data "$DATA"
cp -r "$T/run" "$T/r4"; sed -i 's/"sgd"/"adam"/' "$T/r4/config.json"
row "resume: config.json says adam, state is SGD's" train --resume "$T/r4" --data "$DATA"
cp -r "$T/run" "$T/r5"; sed -i 's/"resnet8"/"resnet14"/' "$T/r5/config.json"
row "resume: config.json names another model" train --resume "$T/r5" --data "$DATA"
cp -r "$T/run" "$T/r6"; cp "$T/cut.safetensors" "$T/r6/train_state.safetensors"
row "resume: train_state.safetensors cut short" train --resume "$T/r6" --data "$DATA"
row "resume: folder missing" train --resume "$T/nothing" --data "$DATA"

# --- divergence ---------------------------------------------------------------------------
row "train: --lr 1000 (diverges)" train --model resnet8 --epochs 2 --limit-train 256 --limit-test 100 \
  --lr 1000 --warmup 0 --schedule constant --threads 1 --data "$DATA" --out "$T/div"
