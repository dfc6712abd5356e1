"""voicekit: voice agents as compositions of async-generator stages."""

from . import events, ops, session
from ._errors import *  # noqa: F403
from ._errors import __all__ as _errors_all
from .events import *  # noqa: F403
from .events import __all__ as _events_all
from ._frozen import FrozenDict, freeze, thaw
from .ops import Flow, Stage, collect, failover, parallel, stage, switch_map, tap
from .session import Session, hash_caller, new_call_id

__version__ = "0.1.0"

__all__ = sorted(
    [
        *_errors_all,
        *_events_all,
        "Flow",
        "FrozenDict",
        "Session",
        "freeze",
        "hash_caller",
        "new_call_id",
        "session",
        "thaw",
        "Stage",
        "__version__",
        "collect",
        "events",
        "failover",
        "ops",
        "parallel",
        "stage",
        "switch_map",
        "tap",
    ]
)
