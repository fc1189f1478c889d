"""PathFilter verdicts as a table: profiles, dpkg-style rule order, kept locales, slices."""

from __future__ import annotations

import pytest

from rootfs_forge.unpack.filters import PathFilter, Rule, Verdict

K, D, P = Verdict.KEEP, Verdict.DROP, Verdict.PARENT

MINIMAL = PathFilter("minimal", keep_locales=["de", "pt_BR"])
RECIPE = PathFilter("full", exclude=["/usr/share/zoneinfo/*", "usr/lib/python3*/test/"],
                    include=["/usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/Europe/*"])
MIN_RECIPE = PathFilter("minimal", exclude=["/usr/share/doc/*/copyright", "/etc/cron.*"],
                        include=["/usr/share/man/man1/bash.1.gz"])
SLICED = PathFilter("minimal", slices={"libc6": ["/usr/lib/*/libc.so.6", "/etc/ld.so.conf.d/"]})

CASES = [
    # filter, package, path, kind, verdict
    (PathFilter("full"), "p", "/usr/share/doc/p/changelog.gz", "file", K),
    (PathFilter("full"), "p", "/usr/share/man/man1/p.1.gz", "file", K),
    (MINIMAL, "p", "/", "dir", K),
    (MINIMAL, "p", "/usr/bin/p", "file", K),
    (MINIMAL, "p", "/usr/share", "dir", K),
    (MINIMAL, "p", "/usr/share/doc", "dir", P),
    (MINIMAL, "p", "/usr/share/doc/p", "dir", P),
    (MINIMAL, "p", "/usr/share/doc/p/copyright", "file", K),
    (MINIMAL, "p", "/usr/share/doc/p/changelog.Debian.gz", "file", D),
    (MINIMAL, "p", "/usr/share/doc/p/examples", "dir", P),  # dpkg keeps it too; the writer prunes it if empty
    (MINIMAL, "p", "/usr/share/doc/p/examples/x.c", "file", D),
    (MINIMAL, "libgcc-s1", "/usr/share/doc/libgcc-s1", "symlink", K),  # doc symlinks stay, like dpkg
    (MINIMAL, "p", "/usr/share/man", "dir", D),
    (MINIMAL, "p", "/usr/share/man/man1/p.1.gz", "file", D),
    (MINIMAL, "p", "/usr/share/info/p.info.gz", "file", D),
    (MINIMAL, "p", "/usr/share/lintian/overrides/p", "file", D),
    (MINIMAL, "p", "/usr/share/bug/p/control", "file", D),
    (MINIMAL, "p", "/usr/share/groff/site-tmac", "dir", D),
    (MINIMAL, "p", "/usr/share/linda/overrides/p", "file", D),
    (MINIMAL, "p", "/usr/share/locale", "dir", P),
    (MINIMAL, "p", "/usr/share/locale/locale.alias", "file", K),
    (MINIMAL, "p", "/usr/share/locale/de/LC_MESSAGES/p.mo", "file", K),
    (MINIMAL, "p", "/usr/share/locale/de", "dir", K),
    (MINIMAL, "p", "/usr/share/locale/de_AT/LC_MESSAGES/p.mo", "file", K),
    (MINIMAL, "p", "/usr/share/locale/pt_BR/LC_MESSAGES/p.mo", "file", K),
    (MINIMAL, "p", "/usr/share/locale/pt/LC_MESSAGES/p.mo", "file", D),
    (MINIMAL, "p", "/usr/share/locale/fr/LC_MESSAGES/p.mo", "file", D),
    (MINIMAL, "p", "/usr/share/locale/fr", "dir", D),
    (MINIMAL, "p", "/usr/share/locale-langpack/x", "file", K),
    (MINIMAL, "p", "/usr/share/docbook/x", "file", K),
    (RECIPE, "tzdata", "/usr/share/zoneinfo", "dir", K),
    (RECIPE, "tzdata", "/usr/share/zoneinfo/UTC", "file", K),
    (RECIPE, "tzdata", "/usr/share/zoneinfo/Europe/Paris", "file", K),
    (RECIPE, "tzdata", "/usr/share/zoneinfo/Europe", "dir", P),
    (RECIPE, "tzdata", "/usr/share/zoneinfo/America/New_York", "file", D),
    (RECIPE, "tzdata", "/usr/share/zoneinfo/America", "dir", D),
    (RECIPE, "python3.11", "/usr/lib/python3.11/test", "dir", D),
    (RECIPE, "python3.11", "/usr/lib/python3.11/test/x.py", "file", K),  # no trailing "*": only the dir
    (MIN_RECIPE, "p", "/usr/share/doc/p/copyright", "file", D),  # a later recipe exclude beats the profile
    (MIN_RECIPE, "bash", "/usr/share/man/man1/bash.1.gz", "file", K),  # recipe include re-adds
    (MIN_RECIPE, "bash", "/usr/share/man/man1", "dir", P),
    (MIN_RECIPE, "bash", "/usr/share/man", "dir", P),
    (MIN_RECIPE, "cron", "/etc/cron.daily/x", "file", D),
    (MIN_RECIPE, "cron", "/etc/cron.daily", "dir", D),
    (SLICED, "libc6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "file", K),
    (SLICED, "libc6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "file", D),
    (SLICED, "libc6", "/usr/lib/x86_64-linux-gnu", "dir", P),
    (SLICED, "libc6", "/usr/lib", "dir", P),
    (SLICED, "libc6", "/usr", "dir", P),
    (SLICED, "libc6", "/etc", "dir", P),
    (SLICED, "libc6", "/etc/ld.so.conf.d", "dir", K),
    (SLICED, "libc6", "/etc/ld.so.conf.d/x86_64-linux-gnu.conf", "file", D),
    (SLICED, "libc6", "/usr/share/doc/libc6/copyright", "file", D),  # a slice is the complete choice
    (SLICED, "libc6", "/usr/bin/ldd", "file", D),
    (SLICED, "libc6", "/var", "dir", D),
    (SLICED, "bash", "/usr/bin/bash", "file", K),  # other packages: the profile
    (SLICED, "bash", "/usr/share/doc/bash/copyright", "file", K),
    (SLICED, "bash", "/usr/share/man/man1/bash.1.gz", "file", D),
]


@pytest.mark.parametrize(("flt", "pkg", "path", "kind", "verdict"), CASES,
                         ids=[f"{c[0].profile}-{c[1]}-{c[2]}" for c in CASES])
def test_verdict(flt: PathFilter, pkg: str, path: str, kind: str, verdict: Verdict) -> None:
    assert flt.verdict(pkg, path, kind) is verdict
    assert flt.decide(pkg, path, kind) is (verdict is not Verdict.DROP)


def test_rules_apply_in_order_last_match_wins() -> None:
    f = PathFilter("minimal", exclude=["/opt/*"], include=["/opt/keep/*"])
    assert [r for r in f.rules if r.pattern.startswith("/opt")] == [Rule(False, "/opt/*"), Rule(True, "/opt/keep/*")]
    assert f.rules[-1] == Rule(True, "/opt/keep/*")
    assert f.rules[0] == Rule(False, "/usr/share/doc")


def test_star_matches_slashes_like_dpkg() -> None:
    f = PathFilter("full", exclude=["/usr/share/*.gz"])
    assert f.verdict("p", "/usr/share/doc/p/changelog.gz", "file") is Verdict.DROP
    assert f.verdict("p", "/usr/share/doc/p/README", "file") is Verdict.KEEP


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown profile 'tiny'"):
        PathFilter("tiny")
