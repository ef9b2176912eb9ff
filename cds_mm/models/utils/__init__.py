from .dist import (gather_labels, gather_shapes, gather_with_grad, get_rank,
                   get_world_size)
from .loss_weights import per_tap_weights

__all__ = [
    'get_rank', 'get_world_size', 'gather_shapes', 'gather_with_grad',
    'gather_labels', 'per_tap_weights'
]
