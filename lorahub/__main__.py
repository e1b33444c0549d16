"""`python -m lorahub` runs the CLI."""

from lorahub.cli import main

if __name__ == "__main__":
    main()
