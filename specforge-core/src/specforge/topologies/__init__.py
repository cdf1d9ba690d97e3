"""Built-in topologies: how capture and training are wired into processes."""
