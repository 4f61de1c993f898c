"""Benchmarks: ml_app against a bare-WSGI ceiling under the same Gunicorn settings."""
