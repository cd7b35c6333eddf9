import sys

from nasfuse.cli import main

sys.exit(main())
