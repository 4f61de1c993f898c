"""The server's version, reported by the protocols' metadata endpoints; equal to pyproject's."""

VERSION = "0.1.0"
