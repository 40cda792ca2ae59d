"""Load test for ``perceptiq serve``: many concurrent clients on loopback against a real server process.

Starts the service in a subprocess (this same file with ``--serve``), waits for ``/healthz``, sends one
warm-up request, then lets ``--clients`` concurrent keep-alive clients (asyncio streams) send ``--requests``
scoring requests in total — or stop at ``--time-limit`` seconds, whichever comes first. Reports
requests/s, images/s, p50/p99 latency, failures, the server's forward passes (mean batch size), and
the server's resident memory (VmRSS from /proc/<pid>/status) before and after the load.

    python benchmarks/serve_load.py --backbone test-tiny --weights random
    python benchmarks/serve_load.py --backbone ViT-B-16 --weights openai --requests 500 --json out.json

Client and server share the machine, so on a small CPU the figures include the load generator's cost.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="zero-shot")
    parser.add_argument("--backbone", default="test-tiny")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=2000, help="requests in total")
    parser.add_argument("--time-limit", type=float, default=300.0, help="stop sending after this many seconds")
    parser.add_argument("--images-per-request", type=int, default=1)
    parser.add_argument("--image-side", type=int, default=256, help="uploads are JPEGs of side x side*3/4")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=0, help="0: pick a free loopback port")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the load this many times on the same server (RSS after each: a leak grows)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # child: run the server
    return parser.parse_args(argv)


# server side ---------------------------------------------------------------------------------------
def serve(args: argparse.Namespace) -> None:
    from perceptiq.inference import load_model
    from perceptiq.serving import create_app, run_server

    assessor = load_model(args.model, backbone=args.backbone, weights=args.weights, device=args.device)
    app = create_app(assessor, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                     max_files=max(32, args.images_per_request))
    run_server(app, host="127.0.0.1", port=args.port, log_level="warning")


def start_server(args: argparse.Namespace) -> subprocess.Popen:
    command = [sys.executable, __file__, "--serve", "--model", args.model, "--backbone", args.backbone,
               "--weights", args.weights, "--device", args.device, "--port", str(args.port),
               "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
               "--images-per-request", str(args.images_per_request)]
    return subprocess.Popen(command)


def rss_mib(pid: int) -> dict:
    """Current and peak resident memory of a process, in MiB, from /proc/<pid>/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)  # the kernel reports kB
    return fields


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# client side ---------------------------------------------------------------------------------------
def make_jpeg(seed: int, side: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    height = side * 3 // 4
    yy, xx = np.mgrid[0:height, 0:side].astype(np.float32)
    pixels = np.stack([xx / side * 255, yy / height * 255, 128 + 90 * np.sin(xx / 9)], axis=-1)
    pixels += rng.normal(0, 15, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


BOUNDARY = "perceptiq-load-test-boundary"


def encode_multipart(files: list[tuple[str, bytes]]) -> bytes:
    """A multipart/form-data body with each file in the field ``files`` (RFC 7578)."""
    parts = []
    for name, data in files:
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                     f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


async def wait_ready(base: str, process: subprocess.Popen, timeout: float = 300.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with status {process.returncode}")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer /healthz in time")
            await asyncio.sleep(0.2)


class KeepAliveConnection:
    """One HTTP/1.1 keep-alive connection that POSTs pre-encoded bodies and reads the answers.

    Hand-written on asyncio streams because a general client costs more CPU per request than the
    server spends on a small image (httpx measured ~13 ms/request here), which would make the load
    generator, not the server, what the figures measure.
    """

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, content_type: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        await self.reader.readexactly(length)
        if close:
            await self.close()
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except ConnectionError:
                pass
            self.reader = self.writer = None


async def run_load(base: str, args: argparse.Namespace, images: list[bytes]) -> dict:
    import httpx

    # multipart bodies encoded once, so the client spends its CPU on sending, not on encoding
    bodies = [encode_multipart([(f"img{i}-{k}.jpg", images[(i + k) % len(images)])
                                for k in range(args.images_per_request)]) for i in range(len(images))]
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    latencies: list[float] = []
    failures: dict[str, int] = {}
    issued = 0
    stop_at = time.monotonic() + args.time_limit

    async def one_client() -> None:
        nonlocal issued
        connection = KeepAliveConnection("127.0.0.1", args.port)
        try:
            while issued < args.requests and time.monotonic() < stop_at:
                body = bodies[issued % len(bodies)]
                issued += 1
                started = time.perf_counter()
                try:
                    status = await connection.post("/v1/score", body, content_type)
                    outcome = None if status == 200 else f"HTTP {status}"
                except (OSError, asyncio.IncompleteReadError, ValueError) as err:
                    outcome = type(err).__name__
                    await connection.close()
                if outcome is None:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures[outcome] = failures.get(outcome, 0) + 1
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(args.clients)))
    elapsed = time.perf_counter() - started
    async with httpx.AsyncClient(base_url=base) as client:
        models = (await client.get("/v1/models")).json()
    ok = len(latencies)
    latency_ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    passes = sum(v["forward_passes"] for v in models["loaded_variants"])
    scored = sum(v["images_scored"] for v in models["loaded_variants"])
    return {
        "requests_ok": ok,
        "requests_failed": failures,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(ok / elapsed, 1),
        "images_per_s": round(ok * args.images_per_request / elapsed, 1),
        "latency_p50_ms": round(float(np.percentile(latency_ms, 50)), 1),
        "latency_p99_ms": round(float(np.percentile(latency_ms, 99)), 1),
        "forward_passes": passes,
        "mean_batch": round(scored / passes, 1) if passes else None,
    }


async def benchmark(args: argparse.Namespace) -> dict:
    import httpx

    args.port = args.port or free_port()
    base = f"http://127.0.0.1:{args.port}"
    process = start_server(args)
    try:
        await wait_ready(base, process)
        images = [make_jpeg(seed, args.image_side) for seed in range(16)]
        async with httpx.AsyncClient(base_url=base) as client:  # warm-up: first forward, allocator
            (await client.post("/v1/score", files=[("files", ("warm.jpg", images[0], "image/jpeg"))])).raise_for_status()
        before = rss_mib(process.pid)
        server_cpu, client_cpu = cpu_seconds(process.pid), time.process_time()
        load = await run_load(base, args, images)
        server_cpu, client_cpu = cpu_seconds(process.pid) - server_cpu, time.process_time() - client_cpu
        after = rss_mib(process.pid)
        rss_after_rounds = [after.get("VmRSS")]
        for _ in range(args.rounds - 1):
            await run_load(base, args, images)
            rss_after_rounds.append(rss_mib(process.pid).get("VmRSS"))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    return {
        "setup": {"model": args.model, "backbone": args.backbone, "weights": args.weights,
                  "clients": args.clients, "requests": args.requests,
                  "images_per_request": args.images_per_request,
                  "image": f"JPEG {args.image_side}x{args.image_side * 3 // 4}",
                  "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
                  "cpus": os.cpu_count()},
        **load,
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(load["requests_ok"], 1), 2),
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(load["requests_ok"], 1), 2),
        "server_rss_mib_before": before.get("VmRSS"),
        "server_rss_mib_after": after.get("VmRSS"),
        "server_peak_rss_mib": after.get("VmHWM"),
        "server_rss_mib_after_each_round": rss_after_rounds,
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.serve:
        serve(args)
        return
    report = asyncio.run(benchmark(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
