"""`python -m ml_app ...`: the command line (see ml_app.ops.cli)."""

from ml_app.ops.cli import main

if __name__ == "__main__":
    main(prog_name="python -m ml_app")
