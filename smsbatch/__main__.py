import sys

from smsbatch.cli import main

sys.exit(main())
