"""``forge run``: a small container launcher (namespaces, overlayfs, pivot_root, cgroups, a PID 1 reaper).

Modules: ``syscalls`` (ctypes layer for calls Python 3.11 lacks), ``spec`` (pure option parsing and image
defaults), ``image`` (OCI layout -> read-only layer dirs), ``mounts`` (the container's filesystem), ``cgroups``
(limits), ``init`` (PID 1), ``launcher`` (orchestration), ``state`` (named containers), ``commit`` (upper dir ->
layer entries). Imports stay lean: ``forge run ROOTFS`` must start in a few milliseconds.
"""
