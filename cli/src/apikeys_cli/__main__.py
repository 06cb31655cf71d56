import sys

from apikeys_cli.main import main

sys.exit(main())
