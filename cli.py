"""`python cli.py ...` (and `torchrun ... cli.py ...`) from a source tree: the command line is
`kgqa.cli`, installed as `kgqa`."""
from kgqa.cli import main

if __name__ == "__main__":
    main()
