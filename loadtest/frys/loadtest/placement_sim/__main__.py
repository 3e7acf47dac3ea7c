import sys

from frys.loadtest.placement_sim import main

sys.exit(main())
