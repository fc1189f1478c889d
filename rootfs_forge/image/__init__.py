"""Trees to images: deterministic layers, layering, OCI documents and archives, the writer, the registry."""
