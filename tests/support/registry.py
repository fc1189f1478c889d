"""A real registry (Debian's docker-registry on loopback) and small HTTP servers in front of it, for the tests
that push and pull."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootfs_forge.image.oci import ImageRef


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def docker_registry(directory: Path, *, delete: bool = False) -> Iterator[str]:
    """docker-registry on 127.0.0.1:<free port>, storage and log in ``directory`` (deleting manifests allowed
    when ``delete``); stopped, and waited for, at the end. Yields ``127.0.0.1:PORT``."""
    import requests

    port = free_port()
    config = directory / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'registry-data'}\n"
        + ("  delete:\n    enabled: true\n" if delete else "")
        + f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    with open(directory / "registry.log", "wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("docker-registry did not start: " + (directory / "registry.log").read_text())
                time.sleep(0.05)
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1:<free port> answering with ``handler``, in a thread; shut down at the end.
    Yields ``127.0.0.1:PORT``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def two_arch_layout(tmp_path: Path, layout: Path, epoch: int) -> list[tuple[ImageRef, dict[str, str]]]:
    """Write an amd64 and an arm64 image (each with /etc/arch naming its architecture) into ``layout``; their
    manifests and platforms, for ``write_index``."""
    from rootfs_forge.image.layer import write_layer
    from rootfs_forge.image.oci import ImageConfig, write_image

    refs = []
    for arch in ("amd64", "arm64"):
        tree = tmp_path / arch
        (tree / "etc").mkdir(parents=True)
        (tree / "etc" / "arch").write_text(arch)
        blob = write_layer(tree, layout, epoch=epoch)
        cfg = ImageConfig(architecture=arch, created=epoch)
        refs.append((write_image(layout, [blob], cfg, ref_name=None), cfg.platform()))
    return refs
