"""oras-cache sync service and CLI: sources, rendering to files, apply, status."""
