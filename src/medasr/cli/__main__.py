import sys

from medasr.cli import main

sys.exit(main())
