"""`python -m pipelines` runs the sixtyfour-sync command line."""

from pipelines.entry import main

main()
