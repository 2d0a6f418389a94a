"""What autograd keeps for backward: copies of weights made in a forward."""
from typing import Callable, NamedTuple

import torch
import torch.nn as nn


class WeightCopies(NamedTuple):
    count: int
    bytes: int


def weight_copies_saved_for_backward(model: nn.Module, forward: Callable[[], object]
                                     ) -> WeightCopies:
    """The tensors that autograd saves for backward during ``forward()`` that have the shape
    of one of ``model``'s Linear weights (or its transpose, or two of them stacked) but are
    neither a parameter nor a view of one: copies of weights made per call (scaled, stacked),
    which live until backward. Works on the meta device, where nothing is computed."""
    shapes = set()
    for module in model.modules():
        if isinstance(module, nn.Linear):
            out_features, in_features = module.weight.shape
            for shape in ((out_features, in_features), (in_features, out_features)):
                shapes.update({shape, (2, *shape)})
    parameters = {id(param) for param in model.parameters()}
    copies = []

    def pack(tensor):
        is_parameter = id(tensor) in parameters or id(tensor._base) in parameters
        if tuple(tensor.shape) in shapes and not is_parameter:
            copies.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward()
    return WeightCopies(len(copies), sum(copies))
