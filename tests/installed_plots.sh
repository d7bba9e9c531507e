#!/bin/sh
# The plots of an installed minidl (ctest case installed_plots): `cmake --install` of BUILD into a
# temporary prefix, then, from another folder, the installed binary
#   1. draws accuracy.png and loss.png of a tiny train run at its end and again with `minidl plot
#      RUN_DIR`, with the script of <prefix>/share/minidl (not the source tree's);
#   2. draws the plots of a tiny `experiment bn-only` run;
#   3. with matplotlib made unimportable (a PYTHONPATH folder whose matplotlib raises
#      ModuleNotFoundError, as a missing package does), fails `minidl plot` with a message naming
#      matplotlib and `apt-get install python3-matplotlib`.
# Without matplotlib on this machine, only the message is checked (exit 77: skipped).
# Usage: sh tests/installed_plots.sh BUILD_DIR CIFAR10_DIR
set -u
build=$1
data=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; fail "cmake --install"; }
minidl=$tmp/prefix/bin/minidl
mkdir "$tmp/work" && cd "$tmp/work" || fail "cd"
unset MINIDL_SCRIPTS MINIDL_PYTHON
if ! /usr/bin/python3 -c "import matplotlib" 2> /dev/null; then
  # No matplotlib here: only the message can be checked.
  printf 'epoch,train_loss,train_accuracy\n1,2.0,0.2\n' > metrics.csv
  "$minidl" plot . 2> err.txt && fail "minidl plot succeeded without matplotlib"
  cat err.txt
  grep -q "apt-get install python3-matplotlib" err.txt || fail "no apt-get command"
  echo "/usr/bin/python3 has no matplotlib (apt-get install python3-matplotlib): PNGs not checked"
  exit 77
fi

"$minidl" train --model cnn --epochs 2 --limit-train 256 --limit-test 100 --data "$data" \
  --out run > train.log 2>&1 || { cat train.log; fail "train"; }
# train draws its curves at its end; `minidl plot` draws them again.
grep -qx "plots: run/accuracy.png, run/loss.png" train.log || { cat train.log; fail "train drew no plots"; }
for f in accuracy.png loss.png; do [ -s "run/$f" ] || fail "train did not draw run/$f"; done
rm run/accuracy.png run/loss.png
"$minidl" plot run > plot.log 2>&1 || { cat plot.log; fail "minidl plot run"; }
cat plot.log
grep -q "drawn by $tmp/prefix/share/minidl/plot_run.py" plot.log ||
  fail "minidl plot did not use the installed script"
for f in accuracy.png loss.png; do [ -s "run/$f" ] || fail "run/$f not drawn"; done

"$minidl" experiment bn-only --model resnet8 --epochs 1 --limit-train 128 --limit-test 100 \
  --variants all bn --data "$data" --out bn-only > bn-only.log 2>&1 ||
  { cat bn-only.log; fail "experiment bn-only"; }
for f in accuracy.png gammas.png gammas_by_layer.png gammas_per_layer.png; do
  [ -s "bn-only/$f" ] || { cat bn-only.log; fail "bn-only/$f not drawn"; }
done

mkdir -p nompl/matplotlib
echo 'raise ModuleNotFoundError("No module named '"'matplotlib'"'", name="matplotlib")' \
  > nompl/matplotlib/__init__.py
rm run/accuracy.png
if PYTHONPATH=$PWD/nompl "$minidl" plot run > nompl.out 2> nompl.err; then
  fail "minidl plot succeeded without matplotlib"
fi
cat nompl.err
grep -q "has no matplotlib" nompl.err || fail "the message does not name matplotlib"
grep -q "apt-get install python3-matplotlib" nompl.err || fail "no apt-get command"
[ ! -e run/accuracy.png ] || fail "accuracy.png drawn without matplotlib"

echo "installed plots: ok"
