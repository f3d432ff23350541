"""`python -m pipelines` runs the sixtyfour-sync command line."""

from pipelines.cli import main

main()
