import sys

from orthodiff_auto.cli import main

sys.exit(main())
