"""Which shaper carries out which fault state on a connection: the faults on answers (`answers`,
`tokens`, `modelswap`, `retrieval`, `embeddings`) and the transport faults on their bytes (`transport`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from bascule.targets.local.faultstate import (
    Bandwidth,
    Degrade,
    EmbeddingMismatch,
    LimitData,
    ModelSwap,
    PartialIndex,
    ProxyFault,
    Slicer,
    SlowClose,
    StreamCut,
    TokenRate,
    Ttft,
)
from bascule.targets.local.proxy.answers import (
    Client,
    CutShaper,
    DegradeShaper,
    Shaper,
    TtftShaper,
)
from bascule.targets.local.proxy.embeddings import EmbeddingShaper
from bascule.targets.local.proxy.modelswap import ModelSwapShaper
from bascule.targets.local.proxy.retrieval import PartialIndexShaper
from bascule.targets.local.proxy.tokens import TokenShaper
from bascule.targets.local.proxy.transport import (
    BandwidthShaper,
    LimitShaper,
    SlicerShaper,
    SlowCloseShaper,
)

if TYPE_CHECKING:
    from bascule.targets.local.proxy.route import Route

__all__ = ["shaper_for"]

_SHAPERS: Final[dict[type[ProxyFault], type[Shaper]]] = {
    Ttft: TtftShaper,
    StreamCut: CutShaper,
    TokenRate: TokenShaper,
    Degrade: DegradeShaper,
    ModelSwap: ModelSwapShaper,
    PartialIndex: PartialIndexShaper,
    EmbeddingMismatch: EmbeddingShaper,
    Bandwidth: BandwidthShaper,
    LimitData: LimitShaper,
    Slicer: SlicerShaper,
    SlowClose: SlowCloseShaper,
}


def shaper_for(state: ProxyFault, client: Client, route: Route, *, synced: bool) -> Shaper:
    """The shaper of `state` (a fault on answers or on their bytes) for one connection."""
    return _SHAPERS[type(state)](state, client, route, synced=synced)
