#!/usr/bin/env python3
"""The soak: a long headless run of a tiny model, sampled every few seconds.

    cargo build --release
    python3 bench/soak.py --steps 1000000            # about 20 minutes on 2 cores

Prints one row per sample: steps done, the trainer's resident memory, threads and open file
descriptors, the size of metrics.jsonl and of last.h5, and the size of the snapshot a watcher
gets when it attaches (read from the run's socket, as `candletop attach` does). At the end it
says how each grew over the second half of the run, where a leak would show.
Only the standard library is used.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def proc_status(pid):
    rss = threads = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, threads, fds


def snapshot_bytes(sock_path):
    """Attach as a watcher: read the server's hello, answer it, and measure the snapshot line."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(sock_path)
        f = s.makefile("rb")
        hello = json.loads(f.readline())
        s.sendall(json.dumps({"type": "hello", "protocol": hello["protocol"]}).encode() + b"\n")
        line = f.readline()
        return len(line) if json.loads(line).get("type") == "snapshot" else None
    except (OSError, ValueError):
        return None
    finally:
        s.close()


def last_step(metrics):
    """The step of the last step record, read from the end of metrics.jsonl."""
    try:
        with open(metrics, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 65536))
            lines = f.read().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("type") == "step":
            return r.get("step", 0)
    return 0


def size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--binary", default=None, help="the candletop binary [target/release]")
    ap.add_argument("--run-dir", default=None, help="[a temporary directory, removed after]")
    a = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    binary = a.binary or os.path.join(target, "release", "candletop")
    tmp = None
    run_dir = a.run_dir
    if run_dir is None:
        tmp = tempfile.mkdtemp(prefix="candletop-soak-")
        run_dir = os.path.join(tmp, "run")
    args = [
        binary, "train", "--headless", "--arch", "c4/avg", "--batch-size", "16",
        "--threads", "1", "--epochs", "100000", "--max-steps", str(a.steps),
        "--save-every-steps", "5000", "--run-dir", run_dir,
    ]
    print("# " + " ".join(args[1:]), flush=True)
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start = time.time()
    rows = []
    print(f"{'min':>6} {'step':>9} {'RSS MB':>7} {'threads':>7} {'fds':>4} "
          f"{'metrics MB':>10} {'last.h5 kB':>10} {'snapshot kB':>11}", flush=True)
    while child.poll() is None:
        time.sleep(a.every)
        try:
            rss, threads, fds = proc_status(child.pid)
        except OSError:
            break
        if rss is None or threads is None:
            break
        row = (
            (time.time() - start) / 60,
            last_step(os.path.join(run_dir, "metrics.jsonl")),
            rss, threads, fds,
            size(os.path.join(run_dir, "metrics.jsonl")) / 1e6,
            size(os.path.join(run_dir, "checkpoints", "last.h5")) / 1e3,
            (snapshot_bytes(os.path.join(run_dir, "candletop.sock")) or 0) / 1e3,
        )
        rows.append(row)
        print(f"{row[0]:6.1f} {row[1]:9d} {row[2]:7.1f} {row[3]:7d} {row[4]:4d} "
              f"{row[5]:10.2f} {row[6]:10.1f} {row[7]:11.1f}", flush=True)
    err = child.stderr.read().decode(errors="replace").strip()
    code = child.wait()
    print(f"# exit {code} after {(time.time() - start) / 60:.1f} min"
          + (f": {err.splitlines()[-1]}" if code and err else ""))
    if len(rows) >= 4:
        half, last = rows[len(rows) // 2], rows[-1]
        steps = max(1, last[1] - half[1])
        print(f"# over the second half ({half[1]} -> {last[1]} steps):")
        print(f"#   RSS {half[2]:.1f} -> {last[2]:.1f} MB, threads {half[3]} -> {last[3]}, "
              f"fds {half[4]} -> {last[4]}")
        print(f"#   metrics.jsonl {1e6 * (last[5] - half[5]) / steps:.1f} bytes a step, "
              f"last.h5 {half[6]:.0f} -> {last[6]:.0f} kB, "
              f"snapshot {half[7]:.0f} -> {last[7]:.0f} kB")
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
