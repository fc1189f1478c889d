"""/etc/ssh/sshd_config, as openssh-server's postinst makes it on a first install (sshd will not start without it).

The postinst's ``create_sshdconfig`` copies /usr/share/openssh/sshd_config, turns ``PermitRootLogin`` to ``yes``
when debconf's ``openssh-server/permit-root-login`` is not true and ``PasswordAuthentication`` to ``no`` when
``openssh-server/password-authentication`` is not true (the noninteractive answers are the templates' defaults,
both true: the file is the shipped one), and hands it to ``ucf``, which installs it when absent and records it:
its md5 in /var/lib/ucf/hashfile, its owner in /var/lib/ucf/registry (``ucfr``) and a copy in
/var/lib/ucf/cache (``--three-way``). An sshd_config already in the tree is kept. Host keys are never made:
a key baked into an image would be shared by every container run from it (``ssh-keygen -A`` at start makes them).
Rendering is pure (:func:`sshd_config`).
"""

from __future__ import annotations

import hashlib
import re

from rootfs_forge.configure.effects.base import EffectContext, EffectResult, effect
from rootfs_forge.configure.effects.fcaps import template_default
from rootfs_forge.configure.effects.tree import Change

TEMPLATE = "/usr/share/openssh/sshd_config"
CONFIG = "/etc/ssh/sshd_config"
UCF = "/var/lib/ucf"
_ROOT_LOGIN = re.compile(r"^#*PermitRootLogin .*$", re.M)
_PASSWORD = re.compile(r"^#PasswordAuthentication .*$", re.M)


def sshd_config(template: str, permit_root_login: str, password_authentication: str) -> str:
    """The postinst's two ``sed -i`` edits of the shipped file for the debconf answers (pure)."""
    text = template
    if permit_root_login != "true":
        text = _ROOT_LOGIN.sub("PermitRootLogin yes", text)
    if password_authentication != "true":
        text = _PASSWORD.sub("PasswordAuthentication no", text)
    return text


def _append(existing: bytes, line: str) -> bytes:
    lines = [x for x in existing.decode("utf-8", "surrogateescape").splitlines() if x.strip()]
    return "".join(f"{x}\n" for x in (*lines, line)).encode("utf-8", "surrogateescape")


@effect("sshd-config", "/etc/ssh/sshd_config from openssh-server's template, registered with ucf; no host keys",
        packages=("openssh-server",))
def apply(ctx: EffectContext) -> EffectResult:
    tree = ctx.tree()
    if tree.lexists(CONFIG):
        return EffectResult(skipped=f"{CONFIG} is in the image already")
    if not tree.is_file(TEMPLATE):
        return EffectResult(skipped=f"no {TEMPLATE} in the image")
    templates = ctx.packages["openssh-server"].control_files.get("templates")
    answers = [template_default(templates, f"openssh-server/{q}")
               for q in ("permit-root-login", "password-authentication")]
    data = sshd_config(tree.read_bytes(TEMPLATE).decode("utf-8", "surrogateescape"), *answers).encode(
        "utf-8", "surrogateescape")
    changed: list[Change] = []
    if not tree.is_dir("/etc/ssh"):
        changed.append(tree.mkdir("/etc/ssh", 0o755))
    changed.append(tree.write_file(CONFIG, data, 0o644))
    if tree.is_dir(UCF):
        hashfile = tree.read_bytes(f"{UCF}/hashfile") if tree.is_file(f"{UCF}/hashfile") else b""
        registry = tree.read_bytes(f"{UCF}/registry") if tree.is_file(f"{UCF}/registry") else b""
        changed.append(tree.write_file(f"{UCF}/hashfile",
                                       _append(hashfile, f"{hashlib.md5(data).hexdigest()}  {CONFIG}"), 0o644))
        changed.append(tree.write_file(f"{UCF}/registry", _append(registry, f"openssh-server \t {CONFIG}"),
                                       0o644))
        if not tree.is_dir(f"{UCF}/cache"):
            changed.append(tree.mkdir(f"{UCF}/cache", 0o755))
        changed.append(tree.write_file(f"{UCF}/cache/{CONFIG.replace('/', ':')}", data, 0o644))
    return EffectResult(tuple(changed), (f"{CONFIG} from {TEMPLATE} (PermitRootLogin answer {answers[0]}, "
                                         f"PasswordAuthentication answer {answers[1]}), registered with ucf",))

