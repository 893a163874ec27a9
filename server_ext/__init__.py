"""Server side of abaco-nb: the Jupyter server extension and the embedded Abaco service."""
