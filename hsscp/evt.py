"""``from hsscp import evt`` as in pynetdicom: the events and :class:`Event`.

The same objects as :mod:`hsscp.events`, under pynetdicom's module name.
"""

from hsscp.events import *  # noqa: F403
from hsscp.events import __all__  # noqa: F401
