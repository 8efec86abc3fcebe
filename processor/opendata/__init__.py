"""Where the events come from: the release table, metadata and caches, filesets, downloads,
file formats, MC weights and the pre-flight file check."""
