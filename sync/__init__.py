"""oras-cache: the sync service and CLI, by stage: sources -> render -> apply -> report."""
