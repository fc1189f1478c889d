"""What forge reads from the environment, parsed once: ``SOURCE_DATE_EPOCH``.

Light (os and the error type only): ``forge commit`` reads it on the launcher's command path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from rootfs_forge.errors import ForgeError


def source_date_epoch(environ: Mapping[str, str] | None = None) -> int | None:
    """``SOURCE_DATE_EPOCH`` as whole seconds, None when unset or empty; a bad value is a one-line error."""
    value = (environ if environ is not None else os.environ).get("SOURCE_DATE_EPOCH")
    if value is None or value.strip() == "":
        return None
    try:
        epoch = int(value.strip())
    except ValueError:
        raise ForgeError("use", "SOURCE_DATE_EPOCH", f"{value!r} is not a whole number of seconds") from None
    if epoch < 0:
        raise ForgeError("use", "SOURCE_DATE_EPOCH", "must not be negative")
    return epoch
