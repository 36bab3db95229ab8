import sys

from msgf.cli import main

sys.exit(main())
