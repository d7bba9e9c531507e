#!/usr/bin/python3
"""The progress line of `minidl train` on a terminal, and Ctrl-C (a ctest case, progress_pty).

Usage: progress_pty.py MINIDL DATA_DIR

Runs a small `minidl train` (resnet8, 256 training images, the 10,000 test images, 3 epochs) on a
pseudo-terminal 100 columns wide, as a person at a terminal would, and checks:
  - the progress line is drawn through training (loss, accuracy, lr, images/s, ETA) and through
    the test pass (an "epoch N/3 test" bar with its own count of images), never wider than the
    terminal;
  - once epoch 2's test pass is on screen, Ctrl-C (the byte 0x03, which the terminal turns into
    SIGINT) ends the run by the signal, and the screen then ends with the one line that names the
    checkpoint kept, the epoch metrics.csv holds, with no remnant of the bar on any line;
  - the start-up lines fit in 100 columns;
  - without a terminal (pipes) no progress line is drawn: no carriage return, no escape.
Exit status 0 when every check passes, 1 otherwise (each failure printed), 77 without the data.
Standard library only (Debian's /usr/bin/python3).
"""
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

COLUMNS = 100
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL: " + what)


def screen(raw):
    """The lines a terminal shows after `raw`: '\\r' returns to column 0, '\\n' starts a line,
    ESC [ K erases to the end of the line, other escape sequences are ignored."""
    lines, col = [""], 0
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\x1b":
            m = re.match(r"\x1b\[[0-9;?]*([A-Za-z])", raw[i:])
            if m:
                if m.group(1) == "K":
                    lines[-1] = lines[-1][:col]
                i += len(m.group(0))
                continue
        elif c == "\r":
            col = 0
        elif c == "\n":
            lines.append("")
            col = 0
        else:
            line = lines[-1]
            lines[-1] = line[:col].ljust(col) + c + line[col + 1:]
            col += 1
        i += 1
    return lines


def run_on_terminal(argv, interrupt_when, timeout=600):
    """Runs argv on a pseudo-terminal; once its output matches `interrupt_when`, types Ctrl-C.
    Returns (output, wait status, whether Ctrl-C was typed)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal's size, then minidl
        import fcntl
        import struct
        import termios
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
        os.environ["TERM"] = "xterm"
        os.execv(argv[0], argv)
    out, typed, start = b"", False, time.time()
    while True:
        if time.time() - start > timeout:
            os.kill(pid, signal.SIGKILL)
            check(False, "no end within %d s" % timeout)
            break
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child is gone and the terminal closed
            break
        if not chunk:
            break
        out += chunk
        if not typed and re.search(interrupt_when, out.decode("utf-8", "replace")):
            os.write(fd, b"\x03")
            typed = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out.decode("utf-8", "replace"), status, typed


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    minidl, data = sys.argv[1], sys.argv[2]
    if not os.path.isfile(os.path.join(data, "test_batch.bin")):
        print("no CIFAR-10 in %s: skipped" % data)
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="minidl-pty-")
    try:
        run = os.path.join(tmp, "run")
        argv = [minidl, "train", "--model", "resnet8", "--epochs", "3", "--batch-size", "64",
                "--limit-train", "256", "--limit-test", "10000", "--threads", "2",
                "--data", data, "--out", run]
        raw, status, typed = run_on_terminal(argv, r"epoch 2/3 test +\[")
        lines = screen(raw)
        shown = "\n".join(lines)
        check(typed, "epoch 2's test pass never appeared on the terminal")
        check(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT,
              "Ctrl-C did not end minidl by SIGINT (wait status %d)" % status)
        # Every drawing of the progress line, as written (each begins with ESC [ K).
        # (The terminal echoes Ctrl-C as "^C" after the last one.)
        bars = [b.replace("^C", "") for b in re.split(r"\r\x1b\[K", raw) if "ETA" in b]
        train_bar = re.compile(r"^epoch [123]/3 train \[[=> ]+\] +\d+/4  loss \d+\.\d{4}  "
                               r"acc +\d+\.\d\d%  lr \d\.\d{3}e[-+]\d\d  [\d,]+ img/s  ETA ")
        test_bar = re.compile(r"^epoch [123]/3 test  \[[=> ]+\] +[\d,]+/10,000  "
                              r"loss \d+\.\d{4}  acc +\d+\.\d\d%  [\d,]+ img/s  ETA ")
        check(any(train_bar.match(b) for b in bars),
              "no training progress line with loss, acc, lr, img/s and ETA")
        check(any(test_bar.match(b) and b.startswith("epoch 2/3") for b in bars),
              "no test-pass progress line of epoch 2")
        check(all(len(b.rstrip("\r\n").split("\n")[0]) < COLUMNS for b in bars),
              "a progress line is as wide as the terminal or wider")
        # The screen: the last line names the checkpoint kept; no bar is left on any line.
        text = [l.rstrip() for l in lines if l.strip()]
        last = text[-1] if text else ""
        m = re.match(r"minidl: interrupted \(SIGINT\); kept: the checkpoint of epoch (\d) in "
                     + re.escape(run) + r"/model\.safetensors, every file whole \(continue with "
                     r"--resume " + re.escape(run) + r"\)$", last)
        check(m is not None, "the last line is not the kept-checkpoint line: %r" % last)
        if m:
            rows = open(os.path.join(run, "metrics.csv")).read().strip().split("\n")[1:]
            check(int(m.group(1)) == len(rows),
                  "the line names epoch %s, metrics.csv holds %d" % (m.group(1), len(rows)))
        check(not any(re.search(r"\[[=> ]{8,}\]|ETA|\^C", l) for l in text),
              "a remnant of the progress line (or ^C) is left on the screen")
        header = [l for l in text if not l.startswith("epoch ") and not l.startswith("minidl:")]
        check(1 <= len(header) <= 4 and all(len(l) <= COLUMNS for l in header),
              "the start-up lines are not 1 to 4 lines of at most %d columns" % COLUMNS)
        check(any(re.match(r"epoch 1/3  train loss", l) for l in text), "no line for epoch 1")

        # Without a terminal: plain lines only.
        plain = subprocess.run(
            [minidl, "train", "--model", "resnet8", "--epochs", "1", "--batch-size", "64",
             "--limit-train", "128", "--limit-test", "100", "--threads", "2", "--data", data,
             "--out", os.path.join(tmp, "plain")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        out = plain.stdout.decode("utf-8", "replace")
        check(plain.returncode == 0, "the run without a terminal failed:\n" + out)
        check("\r" not in out and "\x1b" not in out,
              "a progress line was drawn without a terminal")
        if failures:
            print("--- the terminal's screen at the end ---\n" + shown)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
