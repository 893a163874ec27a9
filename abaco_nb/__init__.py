"""abaco-nb: Abaco actors and executors in Jupyter."""
