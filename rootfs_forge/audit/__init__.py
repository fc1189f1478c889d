"""``forge audit``, ``forge sbom`` and ``forge diff``: look inside any Debian rootfs or image.

Modules: ``view`` (read-only tree access + in-root symlink resolution), ``target`` (open a directory, a
tarball, an OCI layout or archive), ``dpkgreader`` (the dpkg database), ``forgemeta`` (forge's own manifest),
``inventory`` (ownership and bytes), ``elf`` (dynamic-linking closure), ``sizes``, ``why``, ``licenses``,
``osinfo``, ``sbom`` (SPDX / CycloneDX), ``diff``, ``slim`` (the keep-set for automatic slimming) and
``report`` (puts an audit together). Nothing here prints.
"""
