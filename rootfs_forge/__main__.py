from rootfs_forge.cli import entry

entry()
