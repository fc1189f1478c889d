"""Trees to images: deterministic layers, layering, OCI documents and archives, the writer, the registry."""

# the environment every image's config starts with (``[config] env`` adds to it); here, not in ``oci``, so that
# checking a recipe's [config] against a tree (``configcheck``, every compose) does not import the image writer
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
