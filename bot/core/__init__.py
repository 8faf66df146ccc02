"""Platform-neutral core: message types, router, pipeline, permissions. Imports no web framework."""
