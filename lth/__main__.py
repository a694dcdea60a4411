"""`python -m lth` -> the Typer CLI."""

from lth.cli import main

if __name__ == "__main__":
    main()
