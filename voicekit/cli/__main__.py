"""``python -m voicekit.cli``: the ``voicekit`` command."""

import sys

from . import main

sys.exit(main())
