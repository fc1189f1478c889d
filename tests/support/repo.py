"""A small but real signed Debian repository, built from data and served over HTTP on 127.0.0.1.

``build_repo`` writes real ``.deb`` files (tests/support/debs.py), ``Packages`` (+ .gz, .xz, by-hash copies),
``Release`` and an ``InRelease`` clear-signed by a throwaway key made in a temporary GNUPGHOME. ``RepoServer``
serves a directory with optional injected faults, for the reliability tests.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import lzma
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from tests.support.debs import DebSpec, build_deb

FIXED_DATE = 1_700_000_000


@dataclass
class Signer:
    """A throwaway OpenPGP key; ``keyring`` is the public key in binary form, as apt's Signed-By wants it."""

    home: Path
    keyring: Path
    fingerprint: str

    @classmethod
    def create(cls, directory: Path, name: str = "Forge Test Archive") -> Signer:
        home = directory / "gnupg"
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = {**os.environ, "GNUPGHOME": str(home)}
        subprocess.run(
            ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "",
             "--quick-gen-key", f"{name} <archive@example.invalid>", "ed25519", "sign", "never"],
            check=True, env=env, capture_output=True,
        )
        out = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys"], check=True, env=env,
                             capture_output=True, text=True).stdout
        fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
        keyring = directory / f"{name.replace(' ', '-').lower()}.gpg"
        keyring.write_bytes(subprocess.run(["gpg", "--batch", "--export", fpr], check=True, env=env,
                                           capture_output=True).stdout)
        signer = cls(home, keyring, fpr)
        signer.stop_agent()
        return signer

    def stop_agent(self) -> None:
        """gpg starts an agent per GNUPGHOME; stop it so the test suite leaves no daemon behind."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], capture_output=True)

    def clearsign(self, data: bytes) -> bytes:
        return self._sign(data, ["--digest-algo", "SHA512", "--clearsign"])

    def detach_sign(self, data: bytes) -> bytes:
        return self._sign(data, ["--armor", "--detach-sign"])

    def _sign(self, data: bytes, how: list[str]) -> bytes:
        """gpg with a fresh agent each time (stopped afterwards). The agent the previous call stopped may still be
        going away when this one starts and answer nothing ("can't connect to the agent: End of file"): that
        attempt is repeated, with the agent stopped again, a few times."""
        env = {**os.environ, "GNUPGHOME": str(self.home)}
        argv = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "", "--local-user",
                self.fingerprint, *how]
        for attempt in range(5):
            try:
                proc = subprocess.run(argv, input=data, env=env, capture_output=True)
            finally:
                self.stop_agent()
            if proc.returncode == 0 or b"agent" not in proc.stderr or attempt == 4:
                break
            time.sleep(0.2 * (attempt + 1))
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc.stdout


@dataclass
class Repo:
    root: Path
    suite: str
    signer: Signer | None
    debs: dict[str, Path] = field(default_factory=dict)  # "name_version_arch" -> path

    def packages_path(self, component: str = "main", arch: str = "amd64") -> Path:
        return self.root / "dists" / self.suite / component / f"binary-{arch}" / "Packages"


def _stanza(spec: DebSpec, filename: str, data: bytes) -> str:
    lines = spec.control_text().rstrip("\n").splitlines()
    # Packages stanzas carry the control fields plus where the file is and its checksums; keep Description last
    desc_at = next(i for i, ln in enumerate(lines) if ln.startswith("Description:"))
    head, desc = lines[:desc_at], lines[desc_at:]
    head += [
        f"Filename: {filename}",
        f"Size: {len(data)}",
        f"MD5sum: {hashlib.md5(data).hexdigest()}",
        f"SHA256: {hashlib.sha256(data).hexdigest()}",
    ]
    return "\n".join(head + desc) + "\n"


def build_repo(
    root: Path,
    specs: Sequence[DebSpec],
    *,
    suite: str = "testing",
    codename: str | None = None,
    components: Sequence[str] = ("main",),
    architectures: Sequence[str] = ("amd64",),
    signer: Signer | None = None,
    valid_until: int | None = None,
    date: int = FIXED_DATE,
    by_hash: bool = True,
    extra_release: str = "",
    stanza_hook: Callable[[str, DebSpec], str] | None = None,
) -> Repo:
    """Write a repository with every spec in component ``components[0]`` (or ``Section: comp/…``)."""
    repo = Repo(root, suite, signer)
    pool = root / "pool" / "main"
    pool.mkdir(parents=True, exist_ok=True)
    stanzas: dict[tuple[str, str], list[str]] = {(c, a): [] for c in components for a in architectures}
    for spec in specs:
        data = build_deb(spec)
        fname = f"{spec.name}_{spec.version.replace(':', '%3a')}_{spec.architecture}.deb"
        path = pool / fname
        path.write_bytes(data)
        repo.debs[f"{spec.name}_{spec.version}_{spec.architecture}"] = path
        comp = components[0]
        text = _stanza(spec, f"pool/main/{fname}", data)
        if stanza_hook:
            text = stanza_hook(text, spec)
        for arch in architectures:
            if spec.architecture in (arch, "all"):
                stanzas[(comp, arch)].append(text)
    checksums: list[tuple[str, bytes]] = []
    dist = root / "dists" / suite
    for (comp, arch), items in sorted(stanzas.items()):
        d = dist / comp / f"binary-{arch}"
        d.mkdir(parents=True, exist_ok=True)
        plain = "\n".join(items).encode()
        variants = {
            "Packages": plain,
            "Packages.gz": gzip.compress(plain, mtime=0),
            "Packages.xz": lzma.compress(plain),
        }
        for name, content in variants.items():
            (d / name).write_bytes(content)
            rel = f"{comp}/binary-{arch}/{name}"
            checksums.append((rel, content))
            if by_hash:
                bh = d / "by-hash" / "SHA256"
                bh.mkdir(parents=True, exist_ok=True)
                (bh / hashlib.sha256(content).hexdigest()).write_bytes(content)
    release = [
        "Origin: Forge Tests",
        "Label: Forge Tests",
        f"Suite: {suite}",
        f"Codename: {codename or suite}",
        f"Date: {formatdate(date, usegmt=True)}",
    ]
    if valid_until is not None:
        release.append(f"Valid-Until: {formatdate(valid_until, usegmt=True)}")
    release += [
        f"Architectures: {' '.join(architectures)}",
        f"Components: {' '.join(components)}",
        "Description: rootfs_forge test archive",
    ]
    if by_hash:
        release.append("Acquire-By-Hash: yes")
    release.append("No-Support-for-Architecture-all: Packages")
    if extra_release:
        release.append(extra_release.rstrip("\n"))
    release.append("SHA256:")
    release += [f" {hashlib.sha256(c).hexdigest()} {len(c):>10} {rel}" for rel, c in checksums]
    text = ("\n".join(release) + "\n").encode()
    (dist / "Release").write_bytes(text)
    if signer is not None:
        (dist / "InRelease").write_bytes(signer.clearsign(text))
        (dist / "Release.gpg").write_bytes(signer.detach_sign(text))
    return repo


# --------------------------------------------------------------------------------------------- server

Fault = Callable[["_Handler", Path], bool]  # return True when the fault answered the request itself


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        fault = self.server.fault
        if fault is not None:
            local = Path(self.translate_path(self.path))
            if fault(self, local):
                return
        super().do_GET()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    fault: Fault | None = None
    requests: list[str]


@dataclass
class RepoServer:
    directory: Path
    httpd: _Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def set_fault(self, fault: Fault | None) -> None:
        self.httpd.fault = fault


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[RepoServer]:
    """Serve ``directory`` on 127.0.0.1 at a free port until the block ends."""

    def handler(*args: object, **kwargs: object) -> _Handler:
        return _Handler(*args, directory=str(directory), **kwargs)  # type: ignore[arg-type]

    httpd = _Server(("127.0.0.1", 0), handler)  # type: ignore[arg-type]
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield RepoServer(directory, httpd, thread)
    finally:
        httpd.shutdown()
        httpd.server_close()


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst
