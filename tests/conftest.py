"""Shared fixtures: a signed test repository served on 127.0.0.1, and the host's real mirror."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.debs import DebSpec, Dir, Lnk, Reg
from tests.support.repo import Repo, RepoServer, Signer, build_repo, serve

HOST_ARCH = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip() or "amd64"


def base_specs() -> list[DebSpec]:
    """A tiny distribution: enough relations to exercise the resolver and the compose pipeline."""
    return [
        DebSpec("libc6", "2.36-9", HOST_ARCH, {"Multi-Arch": "same", "Priority": "optional", "Section": "libs"},
                members=[Dir("usr"), Dir("usr/lib"), Reg("usr/lib/libc.so.6", b"\x7fELF fake libc"),
                         Dir("usr/share"), Dir("usr/share/doc"), Dir("usr/share/doc/libc6"),
                         Reg("usr/share/doc/libc6/copyright", "Format: https://www.debian.org/doc/packaging-"
                             "manuals/copyright-format/1.0/\n\nFiles: *\nLicense: LGPL-2.1\n"),
                         Reg("usr/share/doc/libc6/changelog.gz", b"x" * 100)]),
        DebSpec("base-files", "12.4", HOST_ARCH, {"Essential": "yes", "Priority": "required"},
                members=[Dir("etc"), Reg("etc/debian_version", "12.4\n"),
                         Reg("etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
                                                'VERSION_ID="12"\n'),
                         Dir("usr"), Dir("usr/share"), Dir("usr/share/man"), Dir("usr/share/man/man1"),
                         Reg("usr/share/man/man1/base.1.gz", b"m" * 50)]),
        DebSpec("mawk", "1.3.4", HOST_ARCH, {"Depends": "libc6 (>= 2.34)", "Provides": "awk",
                                            "Multi-Arch": "foreign", "Priority": "required"},
                members=[Dir("usr"), Dir("usr/bin"), Reg("usr/bin/mawk", "#!/bin/sh\necho mawk\n", 0o755)],
                scripts={"postinst": "#!/bin/sh\nset -e\nupdate-alternatives --install /usr/bin/awk awk "
                                     "/usr/bin/mawk 5\n"}),
        DebSpec("gawk", "5.2.1", HOST_ARCH, {"Depends": "libc6 (>= 2.36)", "Provides": "awk",
                                            "Priority": "optional"},
                members=[Dir("usr"), Dir("usr/bin"), Reg("usr/bin/gawk", "#!/bin/sh\necho gawk\n", 0o755)]),
        DebSpec("hello", "2.10-3", HOST_ARCH, {"Depends": "libc6 (>= 2.34), awk"},
                members=[Dir("usr"), Dir("usr/bin"), Reg("usr/bin/hello", "#!/bin/sh\necho hello\n", 0o755),
                         Lnk("usr/bin/hi", "/usr/bin/hello")]),
        DebSpec("hello", "2.9-1", HOST_ARCH, {"Depends": "libc6"},
                members=[Dir("usr"), Dir("usr/bin"), Reg("usr/bin/hello", "#!/bin/sh\necho old\n", 0o755)]),
        DebSpec("needs-new-libc", "1.0", HOST_ARCH, {"Depends": "libc6 (>= 2.40)"}),
        DebSpec("data-all", "1.0", "all", {"Multi-Arch": "foreign"},
                members=[Dir("usr"), Dir("usr/share"), Dir("usr/share/data-all"),
                         Reg("usr/share/data-all/data.txt", "data\n")]),
    ]


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return Signer.create(tmp_path_factory.mktemp("signer"))


@pytest.fixture(scope="session")
def other_signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return Signer.create(tmp_path_factory.mktemp("other-signer"), name="Someone Else")


@pytest.fixture(scope="session")
def test_repo(tmp_path_factory: pytest.TempPathFactory, signer: Signer) -> Repo:
    return build_repo(tmp_path_factory.mktemp("repo"), base_specs(), signer=signer)


@pytest.fixture()
def repo_server(test_repo: Repo) -> Iterator[RepoServer]:
    with serve(test_repo.root) as server:
        yield server


@pytest.fixture()
def cache_dir(tmp_path: Path) -> Path:
    d = tmp_path / "cache"
    d.mkdir()
    return d


def write_recipe(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def source_block(server: RepoServer, signer: Signer, suite: str = "testing") -> str:
    return (f'[[source]]\nurl = "{server.url}"\nsuites = ["{suite}"]\ncomponents = ["main"]\n'
            f'keyring = "{signer.keyring}"\n')


def host_mirror() -> str | None:
    """The first deb URI of the host's apt sources (never written anywhere: read at run time)."""
    from rootfs_forge.archive.sources import host_sources

    try:
        return host_sources()[0].url
    except Exception:
        return None


@pytest.fixture(scope="session")
def real_mirror() -> str:
    url = host_mirror()
    if url is None:
        pytest.fail("the host's apt sources name no mirror; network tests need one")
    return url


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


