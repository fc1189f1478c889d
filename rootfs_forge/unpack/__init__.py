"""Reading .debs and writing the tree: the unpacked-.deb cache, path filters, the one in-root writer and its record."""
