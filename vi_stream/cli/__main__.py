"""``python -m vi_stream.cli``: the same as the ``vi_stream`` command."""
import sys

from vi_stream.cli import main

sys.exit(main())
