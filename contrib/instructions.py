"""Count the machine instructions dugong's hot paths execute per exchange.

Timing a change of a few percent on a loaded machine takes many interleaved runs;
counting instructions does not: cachegrind (valgrind) counts those a process
executes. This tool runs one pattern under cachegrind twice, with two numbers of
exchanges, and divides the difference by the difference in exchanges, so that
start-up and set-up cancel out. Each child runs with a given hash seed
(PYTHONHASHSEED), which makes its count the same from run to run (with a random
seed per process it varied by about 1.5 %); as one seed's layout of dicts and sets
may favour one tree, the tool counts several seeds and gives the median.
Each DIR given is a source tree holding a ``dugong/`` package (this checkout, an
older one, a copy with a change to try), counted in turn:

    python contrib/instructions.py [--pattern lone|batch|seq] [--seeds 3] [DIR ...]

Patterns (against a peer socket in the same process, which answers each request
with nginx's answer to the benchmark's GET of 1 KiB; the peer's own Python calls
are counted too, the same for every DIR):

  lone   W5's exchange: co_send_request, co_read_response (which waits first, as
         it does in a loop of many connections), co_readall
  batch  W2's batch: 16 send_request, then 16 read_response and readall
  seq    W1's exchange: send_request, read_response (its blocking receive finds the
         answer there), readall

Only instructions outside the kernel count: the system calls' own work (the
larger part of a request's CPU on the loopback) is not in these figures, so a
cut of N % here is a smaller cut in time. Needs valgrind.
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys

ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 07 Dec 2026 15:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n"
    b'Last-Modified: Mon, 07 Dec 2026 14:00:00 GMT\r\nConnection: keep-alive\r\nETag: "x"\r\n'
    b"Accept-Ranges: bytes\r\n\r\n" + bytes(1024)
)
DEPTH = 16  # the batch pattern's requests per batch


def exchanges(pattern, count):
    """Run *count* exchanges of *pattern* with the dugong on sys.path; check each."""
    import dugong
    import dugong._connection

    # A lone read waits for the answer first, as in a loop of many connections (there,
    # its answer cannot have come yet); here the answer is already there.
    dugong._connection._ANSWER_TIME = 1e9
    with socket.create_server(("127.0.0.1", 0)) as listener:
        conn = dugong.HTTPConnection("127.0.0.1", listener.getsockname()[1])
        conn.connect()
        peer = listener.accept()[0]
    peer.setblocking(False)
    got = []

    def lone():
        for _ in range(count):
            yield from conn.co_send_request("GET", "/1k")
            peer.send(ANSWER)
            resp = yield from conn.co_read_response()
            got.append((resp.status, len((yield from conn.co_readall()))))
            peer.recv(1 << 16)

    if pattern == "lone":
        for _ in lone():  # each wait is over at once: the answer is in the socket
            pass
    elif pattern == "seq":
        for _ in range(count):
            conn.send_request("GET", "/1k")
            peer.send(ANSWER)
            got.append((conn.read_response().status, len(conn.readall())))
            peer.recv(1 << 16)
    else:
        for _ in range(count // DEPTH):
            for _ in range(DEPTH):
                conn.send_request("GET", "/1k")
            peer.send(ANSWER * DEPTH)
            got.extend((conn.read_response().status, len(conn.readall())) for _ in range(DEPTH))
            while len(peer.recv(1 << 20)) == 1 << 20:
                pass
    if got != [(200, 1024)] * (count // DEPTH * DEPTH if pattern == "batch" else count):
        raise RuntimeError(f"wrong answers: {sorted(set(got))}")
    conn.disconnect()
    peer.close()


def child(tree, pattern, count, counted=True, seed=0):
    """Run *count* exchanges in a child process importing dugong from *tree*, with hash
    seed *seed*: under cachegrind, the instructions it executed; else None (the run is
    only checked)."""
    command = [sys.executable, os.path.abspath(__file__), "--child", tree, pattern, str(count)]
    env = dict(os.environ, PYTHONHASHSEED=str(seed))
    if counted:
        command[:0] = ["valgrind", "--tool=cachegrind", "--cache-sim=no"]
        command.insert(3, "--cachegrind-out-file=/dev/null")
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stderr
    if not counted:
        return None
    found = re.search(r"I\s+refs:\s+([\d,]+)", out)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out}")
    return int(found[1].replace(",", ""))


def main():
    if sys.argv[1:2] == ["--child"]:
        tree, pattern, count = sys.argv[2:5]
        sys.path.insert(0, tree)
        exchanges(pattern, int(count))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="*", metavar="DIR", help="default: this checkout")
    ap.add_argument("--pattern", choices=("lone", "batch", "seq"), default="lone")
    ap.add_argument("--exchanges", type=int, default=2000, help="the difference counted")
    ap.add_argument("--seeds", type=int, default=3, help="hash seeds counted (the median)")
    ap.add_argument("--check", action="store_true", help="run the pattern once, uncounted")
    args = ap.parse_args()
    trees = args.trees or [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    if args.check:
        for tree in trees:
            child(tree, args.pattern, DEPTH * 4, counted=False)
        print("ok")
        return
    if shutil.which("valgrind") is None:
        sys.exit("this needs valgrind (e.g. apt-get install valgrind)")
    base = None
    for tree in trees:
        counts = []
        for seed in range(args.seeds):
            few = child(tree, args.pattern, 1000, seed=seed)
            many = child(tree, args.pattern, 1000 + args.exchanges, seed=seed)
            counts.append((many - few) / args.exchanges)
        each = statistics.median(counts)
        base = base or each
        print(f"{each:9,.0f} instructions per exchange  {each / base:6.3f}x  {tree}")


if __name__ == "__main__":
    main()
