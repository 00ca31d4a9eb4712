"""`python -m fastgw ...` is the same as the `fastgw` command."""
import sys

from fastgw.cli import main

sys.exit(main())
