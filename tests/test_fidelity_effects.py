"""The maintainer-script effects that make a forge image behave like one dpkg built: PAM, /etc/shells, trigger
interests, kept control files, /var/run links, first-install defaults, os-release, literal postinst commands.

Unit tests check the pure renderers against the algorithms they reproduce; the network tests compose real
packages from the mirror the host's apt sources name and use them (chroot, dpkg, apt, nginx under forge run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rootfs_forge.configure.effects import pam, shells, triggers
from rootfs_forge.configure.effects.base import EffectContext, EffectOptions, HostTools, PackageInfo
from rootfs_forge.configure.effects.identity import os_release
from rootfs_forge.configure.effects.literal import plan

UNIX = """Name: Unix authentication
Default: yes
Priority: 256
Auth-Type: Primary
Auth:
\t[success=end default=ignore]\tpam_unix.so nullok try_first_pass
Auth-Initial:
\t[success=end default=ignore]\tpam_unix.so nullok
Session-Type: Additional
Session:
\trequired\tpam_unix.so
Session-Initial:
\trequired\tpam_unix.so
"""
CAP = """Name: Inheritable Capabilities Management
Default: yes
Priority: 0
Auth-Type: Additional
Auth-Final:
\toptional\t\t\tpam_cap.so
"""
TEMPLATE = """# head
# here are the per-package modules (the "Primary" block)
$auth_primary
# here's the fallback if no module succeeds
auth\trequisite\t\t\tpam_deny.so
# and here are more per-package modules (the "Additional" block)
$auth_additional
# end of pam-auth-update config
"""


def test_pam_render_numbers_jumps_and_uses_initial_lines() -> None:
    profiles = {"unix": pam.parse_profile(UNIX), "capability": pam.parse_profile(CAP)}
    assert all(p is not None for p in profiles.values())
    ordered, enabled = pam.enabled_profiles({k: v for k, v in profiles.items() if v is not None})
    assert ordered == ["unix", "capability"] and enabled == ordered
    text = pam.render(TEMPLATE, {k: v for k, v in profiles.items() if v is not None}, enabled, "auth")
    assert text is not None
    body = text.splitlines()
    # "end" becomes the number of lines left in the block; the first module's Initial lines are used
    assert "auth\t[success=1 default=ignore]\tpam_unix.so nullok" in body
    assert "auth\toptional\t\t\tpam_cap.so " in body  # pam-auth-update leaves the space before no options
    assert "$auth_primary" not in text


def test_pam_profile_with_pam_tally_is_disabled() -> None:
    assert pam.parse_profile("Name: x\nAuth-Type: Primary\nAuth:\n\trequired pam_tally.so\n") is None


def test_pam_matches_pam_auth_update_on_host_profiles(tmp_path: Path) -> None:
    """pam-auth-update itself (libpam-runtime, installed on Debian hosts) on a copy of the host's profiles:
    the effect's output must be byte for byte the same."""
    tool = shutil.which("pam-auth-update")
    if tool is None or not Path("/usr/share/pam-configs").is_dir() or not Path("/usr/share/pam").is_dir():
        pytest.skip("needs libpam-runtime on the host")
    if os.geteuid() != 0:
        pytest.skip("pam-auth-update writes its debconf answers: root only")
    root = tmp_path / "r"
    for d in ("usr/share/pam-configs", "etc/pam.d", "var/lib/pam"):
        (root / d).mkdir(parents=True)
    for f in Path("/usr/share/pam-configs").iterdir():
        shutil.copy(f, root / "usr/share/pam-configs" / f.name)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "DEBCONF_NONINTERACTIVE_SEEN": "true",
           "DEBCONF_DB_OVERRIDE": "Pipe{infd:none outfd:none}"}
    done = subprocess.run([tool, "--root", str(root), "--package", "--force"], capture_output=True, text=True,
                          env=env)
    if done.returncode != 0 or not (root / "etc/pam.d/common-auth").exists():
        pytest.skip(f"pam-auth-update did not run here: {done.stderr.strip()[:200]}")
    profiles = {f.name: p for f in sorted((root / "usr/share/pam-configs").iterdir())
                if (p := pam.parse_profile(f.read_text())) is not None}
    _, enabled = pam.enabled_profiles(profiles)
    for ptype in pam.TYPES:
        template = Path(f"/usr/share/pam/common-{ptype}").read_text()
        assert pam.render(template, profiles, enabled, ptype) == (root / f"etc/pam.d/common-{ptype}").read_text()
        assert pam.saved_state(profiles, enabled, ptype) == (root / f"var/lib/pam/{ptype}").read_text()


def test_shells_lists_each_registered_shell_then_its_real_path() -> None:
    base = "# /etc/shells: valid login shells\n/bin/sh\n"
    regs = shells.registered([base, "/bin/bash\n/bin/rbash\n", "/bin/dash\n"])
    etc, state = shells.shells_file(base, regs, lambda d: "/usr/bin" if d == "/bin" else d)
    assert etc.splitlines() == ["# /etc/shells: valid login shells", "/bin/sh", "/usr/bin/sh", "/bin/bash",
                                "/usr/bin/bash", "/bin/rbash", "/usr/bin/rbash", "/bin/dash", "/usr/bin/dash"]
    assert state.splitlines()[:2] == ["/bin/sh", "/usr/bin/sh"]


def test_trigger_interests_in_dpkg_format() -> None:
    files, explicit = triggers.interests([
        ("debianutils", "interest-noawait /usr/share/debianutils/shells.d\n"),
        ("libc-bin", "# comment\ninterest-await ldconfig\n"),
        ("libfoo1:amd64", "activate-noawait ldconfig\n"),
        ("nginx", "interest-noawait nginx-reload\n"),
    ])
    assert triggers.render(files) == "/usr/share/debianutils/shells.d debianutils/noawait\n"
    assert explicit == {"ldconfig": ["libc-bin"], "nginx-reload": ["nginx/noawait"]}


def test_os_release_has_version_id_without_base_files() -> None:
    text = os_release("bookworm")
    assert 'VERSION_ID="12"' in text and "ID=debian" in text and "VERSION_CODENAME=bookworm" in text
    assert 'VERSION_ID="12"' in os_release("bookworm", "12.12")
    assert "VERSION_ID" not in os_release("sid")


NGINX_LIKE = """#!/bin/sh
set -e
case "$1" in
  configure)
    logdir="/var/log/nginx"
    if ! dpkg-statoverride --list "$logdir" >/dev/null; then
      chown root:adm $logdir
    fi
    for f in $(ls /etc); do
      rm -f /etc/$f.old
    done
    if [ -z $2 ] && [ ! -e /etc/nginx/sites-enabled/default ] &&
       [ -d /etc/nginx/sites-enabled ]; then
      ln -s /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default
    fi
    if [ ! -e /var/www/html/index.html ]; then
      mkdir -p /var/www/html
      cp /usr/share/nginx/html/index.html /var/www/html/index.html
    fi
    ls /etc | grep nginx && rm -f /etc/x
    ;;
  abort-upgrade)
    rm -f /etc/never
    ;;
esac
"""


def test_literal_plan_takes_first_install_branches_only() -> None:
    existing = {"/etc/nginx/sites-enabled"}
    steps = plan(NGINX_LIKE, lambda test, path: path in existing)
    applied = [" ".join(s.words) for s in steps if not s.reason]
    ignored = {" ".join(s.words): s.reason for s in steps if s.reason}
    assert applied[1:] == ["ln -s /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default",
                       "mkdir -p /var/www/html",
                       "cp /usr/share/nginx/html/index.html /var/www/html/index.html"]
    assert "dpkg-statoverride" not in " ".join(ignored.values())
    assert "chown root:adm /var/log/nginx" in applied  # a literal variable of the script is known
    assert not any("/etc/never" in k for k in ignored)  # abort-upgrade does not run on a first install
    assert any("pipe" in r for r in ignored.values())
    assert ignored["rm -f /etc/$f.old"] == "in a loop"


def test_postinst_commands_through_a_planted_link_cannot_reach_the_host(tmp_path: Path) -> None:
    """A postinst's `ln`/`cp`/`touch` through a link the image planted must land inside the root."""
    from rootfs_forge.configure.effects import literal

    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "etc").mkdir(parents=True)
    (root / "etc/evil").symlink_to(str(outside))
    (outside / "secret").write_text("host secret\n")
    script = ("#!/bin/sh\ntouch /etc/evil/pwned\nmkdir -p /etc/evil/dir\ncp /etc/evil/secret /etc/copy\n"
              "ln -sf /x /etc/evil/link\nchmod 777 /etc/evil/secret\nrm -f /etc/evil/secret\n")
    ctx = EffectContext(root, {"p": PackageInfo("p", {"Package": "p"}, {"postinst": script})}, "amd64",
                        HostTools(architecture="amd64"), 1_700_000_000, EffectOptions())
    mode = (outside / "secret").stat().st_mode
    result = literal.apply(ctx)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]  # nothing made, nothing removed
    assert (outside / "secret").stat().st_mode == mode
    assert not (root / "etc/copy").exists()  # the host file was not read: inside the root there is none
    # the link is read against the root: /etc/evil/dir is made under ROOT/<the link's target>
    assert (root / str(outside).lstrip("/") / "dir").is_dir()
    assert any(m.endswith("mkdir -p /etc/evil/dir") for m in result.messages)


# -- the real mirror ---------------------------------------------------------------------------------------

real = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fid-cache")


def _compose(tmp: Path, cache: Path, body: str, fmt: str = "rootfs") -> Path:
    recipe = tmp / "r.toml"
    recipe.write_text(body)
    out = tmp / ("root" if fmt == "rootfs" else "image")
    proc = subprocess.run([sys.executable, "-m", "rootfs_forge", "compose", str(recipe), "--format", fmt,
                           "-o", str(out), "--cache-dir", str(cache), "-q"],
                          capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def login_root(tmp_path_factory: pytest.TempPathFactory, real_cache: Path) -> Path:
    tmp = tmp_path_factory.mktemp("login")
    return _compose(tmp, real_cache, 'packages = ["login", "libpam-runtime", "apt"]\nessential = true\n'
                                     '[image]\narchitecture = "amd64"\n')


@pytest.mark.root
@pytest.mark.network
@pytest.mark.slow
def test_su_and_chpasswd_work_in_chroot(login_root: Path) -> None:
    su = subprocess.run(["chroot", str(login_root), "su", "-s", "/bin/sh", "-c", "id -u", "nobody"],
                        capture_output=True, text=True)
    assert su.returncode == 0 and su.stdout.strip() == "65534", su.stderr
    pw = subprocess.run(["chroot", str(login_root), "chpasswd"], input="root:forge-test\n", capture_output=True,
                        text=True)
    assert pw.returncode == 0, pw.stderr
    assert (login_root / "etc/shadow").read_text().startswith("root:$")


@pytest.mark.network
@pytest.mark.slow
def test_etc_shells_lists_the_installed_shells(login_root: Path) -> None:
    listed = (login_root / "etc/shells").read_text().splitlines()
    for shell in ("/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/bash", "/usr/bin/dash"):
        assert shell in listed
    assert (login_root / "var/run").is_symlink() and os.readlink(login_root / "var/run") == "/run"
    assert os.readlink(login_root / "var/lock") == "/run/lock"
    assert (login_root / "var/lib/dpkg/info/libc-bin.postinst").stat().st_mode & 0o777 == 0o755
    assert (login_root / "var/lib/dpkg/triggers/ldconfig").read_text() == "libc-bin\n"
    assert "/bin/sh\n/bin/sh.distrib\ndash\n" in (login_root / "var/lib/dpkg/diversions").read_text()
    config = (login_root / "var/cache/debconf/config.dat").read_text()
    assert "Name: libpam-runtime/profiles\nTemplate: libpam-runtime/profiles\nValue: unix\n" in config
    assert "Name: libpam-runtime/profiles\n" in (login_root / "var/cache/debconf/templates.dat").read_text()
    assert (login_root / "etc/nsswitch.conf").is_file() and (login_root / "etc/subuid").is_file()


@pytest.mark.root
@pytest.mark.network
@pytest.mark.slow
def test_apt_install_of_a_library_runs_ldconfig(login_root: Path, tmp_path: Path) -> None:
    got = subprocess.run(["apt-get", "download", "libyaml-0-2"], cwd=tmp_path, capture_output=True, text=True)
    if got.returncode != 0:
        pytest.skip(f"apt-get download failed on the host: {got.stderr.strip()[:200]}")
    deb = next(tmp_path.glob("libyaml-0-2_*.deb"))
    shutil.copy(deb, login_root / "tmp" / deb.name)
    before = subprocess.run(["chroot", str(login_root), "ldconfig", "-p"], capture_output=True, text=True)
    assert "libyaml-0.so.2" not in before.stdout
    done = subprocess.run(["chroot", str(login_root), "apt-get", "install", "-y", f"/tmp/{deb.name}"],
                          capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Processing triggers for libc-bin" in done.stdout
    after = subprocess.run(["chroot", str(login_root), "ldconfig", "-p"], capture_output=True, text=True)
    assert "libyaml-0.so.2" in after.stdout


@pytest.mark.network
@pytest.mark.slow
def test_os_release_has_version_id_for_python3_without_base_files(tmp_path: Path, real_cache: Path) -> None:
    root = _compose(tmp_path, real_cache, 'packages = ["python3"]\n[image]\narchitecture = "amd64"\n')
    fields = dict(line.split("=", 1) for line in (root / "etc/os-release").read_text().splitlines() if "=" in line)
    assert fields["ID"] == "debian" and fields["VERSION_ID"].strip('"') == "12"


@pytest.mark.network
@pytest.mark.slow
def test_nginx_light_without_base_passwd_names_it(tmp_path: Path, real_cache: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('packages = ["nginx-light"]\n[image]\narchitecture = "amd64"\n')
    proc = subprocess.run([sys.executable, "-m", "rootfs_forge", "compose", str(recipe), "--format", "rootfs",
                           "-o", str(tmp_path / "root"), "--cache-dir", str(real_cache), "-q", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    effects = json.loads(proc.stdout)["architectures"]["amd64"]["effects"]
    literal = next(e for e in effects if e["effect"] == "literal-scripts")
    assert any("www-data" in m and "add base-passwd" in m for m in literal["messages"])
    assert os.readlink(tmp_path / "root/etc/nginx/sites-enabled/default") == "/etc/nginx/sites-available/default"
    assert (tmp_path / "root/var/www/html/index.nginx-debian.html").is_file()


@pytest.mark.root
@pytest.mark.network
@pytest.mark.slow
def test_nginx_light_serves_its_default_page(tmp_path: Path, real_cache: Path) -> None:
    # nginx-light, base-passwd (named by the compose above: nginx runs as www-data) and busybox as the client
    image = _compose(tmp_path, real_cache, 'packages = ["nginx-light", "base-passwd", "busybox"]\n'
                                            '[image]\narchitecture = "amd64"\n', fmt="oci")
    script = ("nginx && for i in 1 2 3 4 5 6 7 8 9 10; do busybox wget -q -O- http://127.0.0.1/ && exit 0; "
              "sleep 0.3; done; exit 1")
    done = subprocess.run([sys.executable, "-m", "rootfs_forge", "run", str(image), "/bin/busybox", "sh", "-c",
                           script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Welcome to nginx!" in done.stdout


def _ctx(root: Path, pkgs: dict[str, PackageInfo], **options: object) -> EffectContext:
    return EffectContext(root, pkgs, "amd64", HostTools(architecture="amd64"), 1_700_000_000,
                         EffectOptions(**options))  # type: ignore[arg-type]


def test_control_files_switch_keeps_or_drops_scripts(tmp_path: Path) -> None:
    from rootfs_forge.configure.effects import apply_effects

    pkgs = {"dpkg": PackageInfo("dpkg", {"Package": "dpkg", "Architecture": "amd64"}, {"postinst": "true\n"}, (),
                                {"postinst": b"#!/bin/sh\ntrue\n", "control": b"Package: dpkg\n"}),
            "libc-bin": PackageInfo("libc-bin", {"Package": "libc-bin"}, {}, (),
                                    {"triggers": b"interest-await ldconfig\n"})}
    for choice, kept in (("auto", True), ("keep", True), ("drop", False)):
        root = tmp_path / choice
        root.mkdir()
        run = apply_effects(_ctx(root, pkgs, control_files=choice))
        info = root / "var/lib/dpkg/info"
        assert (info / "dpkg.postinst").is_file() == kept
        assert not (info / "dpkg.control").exists()
        if kept:
            assert (info / "dpkg.postinst").stat().st_mode & 0o777 == 0o755
            assert (root / "var/lib/dpkg/triggers/ldconfig").read_text() == "libc-bin\n"
        status = {o.effect.name: o.status for o in run.outcomes}
        assert status["dpkg-info"] == ("applied" if kept else "skipped")
    root = tmp_path / "nodpkg"
    root.mkdir()
    run = apply_effects(_ctx(root, {"libc-bin": pkgs["libc-bin"]}))
    assert "dpkg is not in the image" in next(o.result.skipped for o in run.outcomes if o.effect.name == "dpkg-info")


def test_literal_scripts_switch_turns_the_commands_off(tmp_path: Path) -> None:
    from rootfs_forge.configure.effects import literal

    script = "#!/bin/sh\nset -e\nmkdir -p /srv/www\n"
    pkgs = {"p": PackageInfo("p", {"Package": "p"}, {"postinst": script})}
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    assert literal.apply(_ctx(tmp_path / "on", pkgs)).messages == ("p/postinst: mkdir -p /srv/www",)
    assert (tmp_path / "on/srv/www").is_dir()
    assert literal.apply(_ctx(tmp_path / "off", pkgs, literal_scripts=False)).skipped == "literal_scripts = false"
    assert not (tmp_path / "off/srv").exists()


def test_recipe_effect_switches_parse_and_reject_bad_values(tmp_path: Path) -> None:
    from rootfs_forge.errors import ForgeError
    from rootfs_forge.recipe import load_recipe

    good = tmp_path / "good.toml"
    good.write_text('packages = ["hello"]\n[effects]\ncontrol_files = "drop"\nliteral_scripts = false\n')
    recipe = load_recipe(good, "amd64")
    assert (recipe.control_files, recipe.literal_scripts) == ("drop", False)
    options = EffectOptions.from_recipe(recipe)
    assert (options.control_files, options.literal_scripts) == ("drop", False)
    bad = tmp_path / "bad.toml"
    bad.write_text('packages = ["hello"]\n[effects]\ncontrol_files = "sometimes"\n')
    with pytest.raises(ForgeError, match="control_files"):
        load_recipe(bad, "amd64")


TEMPLATES = """Template: foo/ask
Type: boolean
Default: false
Description: Ask something?
 First paragraph
 goes on.
 .
 Second one.
Description-de.UTF-8: Etwas fragen?
 Erster Absatz.

Template: foo/note
Type: note
Description: A note
"""


def test_debconf_database_in_debconf_format() -> None:
    from rootfs_forge.configure.effects import debconf

    parsed = debconf.parse_templates(TEMPLATES)
    assert [t["template"] for t in parsed] == ["foo/ask", "foo/note"]
    assert parsed[0]["extended_description"] == "First paragraph goes on.\n\nSecond one."
    assert parsed[0]["description-de.utf-8"] == "Etwas fragen?"
    fields = {t.pop("template"): t for t in parsed}
    text = debconf.render_templates(fields)
    assert text.startswith("Name: foo/ask\nDefault: false\nDescription: Ask something?\n"
                           "Description-de.utf-8: Etwas fragen?\n"
                           "Extended_description: First paragraph goes on.\\n\\nSecond one.\n")
    assert "Type: boolean\nOwners: foo/ask\n\n" in text
    config = debconf.render_config({"foo/ask": ["foo"], "foo/note": ["foo:amd64", "foo"]}, {"foo/ask": "false"})
    assert config == ("Name: foo/ask\nTemplate: foo/ask\nValue: false\nOwners: foo\n\n"
                      "Name: foo/note\nTemplate: foo/note\nOwners: foo, foo:amd64\n\n")
    assert debconf.asked("db_input medium foo/ask || true\nif x; then\n  db_input high foo/note\nfi\n") == ["foo/ask"]
    confmodule = ". /usr/share/debconf/confmodule\n"
    assert debconf.owners_of("libc6", "libc6:amd64", {"preinst": confmodule, "postinst": confmodule}) == \
        ["libc6", "libc6:amd64"]
    assert debconf.owners_of("libpam0g", "libpam0g:amd64", {"postinst": confmodule}) == ["libpam0g:amd64"]


def test_literal_plan_one_line_compounds_and_umask() -> None:
    script = """#!/bin/sh
if [ -z "$2" ]; then mkdir -p /a; touch /a/b; fi
if [ -e /nope ]; then rm -f /x; fi
if foo; then mkdir /c; fi
for d in a b; do mkdir /d; done
umask 066
[ -d /etc/p ] || mkdir /etc/p
dir=/srv/data
mkdir -p $dir 2>/dev/null || true
"""
    steps = plan(script, lambda test, path: False)
    assert [(" ".join(s.words), s.reason.split(" `")[0]) for s in steps] == [
        ("mkdir -p /a", ""), ("touch /a/b", ""),
        ("mkdir /c", "under the condition"),
        ("mkdir /d", "in a loop or condition on one line"),
        ("umask 066", ""), ("mkdir /etc/p", ""), ("mkdir -p /srv/data", ""),
    ]


def test_literal_plan_elif_else_other_cases_loops_and_exit() -> None:
    script = """#!/bin/sh
case "$2" in
  1.*) rm -f /old-config ;;
esac
if [ -e /etc/a ]; then
  touch /a
elif [ -d /etc/b ]; then
  touch /b
else
  touch /c
fi
if [ -e /etc/b ]; then
  touch /d
else
  touch /e
fi
if [ "$1" = configure ]; then
  chmod 0644 /etc/x
fi
while read line; do
  rm /loop
done
exit 0
mkdir /after-exit
"""
    steps = plan(script, lambda test, path: path == "/etc/b")
    assert [(" ".join(s.words), s.reason) for s in steps] == [
        ("rm -f /old-config", "under a case on a value only known when the script runs"),
        ("touch /b", ""), ("touch /d", ""), ("chmod 0644 /etc/x", ""), ("rm /loop", "in a loop"),
    ]


@pytest.mark.parametrize("header", ["f() {", "f()\n{", "function f {", "function f() {"])
def test_literal_plan_leaves_a_function_body_alone_unless_called(header: str) -> None:
    """A function's body runs only where the script calls it: its commands are never applied as top-level ones
    (the planner used to lose the function's header line and apply the body)."""
    script = f"#!/bin/sh\nset -e\n{header}\n\tmkdir -p /only-if-called\n}}\nmkdir -p /always\n"
    steps = plan(script, lambda _test, _path: False)
    assert [(s.words, s.reason) for s in steps] == [(("mkdir", "-p", "/only-if-called"), "in a shell function"),
                                                    (("mkdir", "-p", "/always"), "")]
