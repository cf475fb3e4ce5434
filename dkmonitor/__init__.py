"""dkmonitor: audit shared, multi-user storage."""

__version__ = "0.1.0"

import logging

# Library code only logs; the CLI decides where records go (logsetup).
logging.getLogger("dkmonitor").addHandler(logging.NullHandler())
