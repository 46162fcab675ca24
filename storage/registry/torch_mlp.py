"""The PyTorch tabular network of the training pipeline, rebuildable from its files.

A PyTorch version stores ``model_config.json`` (the keyword arguments of
:class:`TabularMLP`) and ``model.pt`` (its state dict). The model server
rebuilds the network from those two files with :func:`load_tabular_mlp` and
feeds it the matrix that ``preprocess.skops`` produces.

Example:
    >>> import torch
    >>> net = TabularMLP(n_features=3, n_outputs=2, hidden_dims=[8], task="classification")
    >>> probs = predict_output(net, torch.zeros(4, 3).numpy())
    >>> probs.shape, bool(abs(probs.sum(axis=1) - 1).max() < 1e-6)
    ((4, 2), True)
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn


class TabularMLP(nn.Module):
    """Fully connected layers with ReLU and dropout; logits (classification) or values (regression).

    Args:
        n_features: Width of the input matrix.
        n_outputs: Number of classes (classification) or 1 (regression).
        hidden_dims: Width of each hidden layer.
        dropout: Dropout after each hidden layer (training only).
        task: ``classification`` or ``regression``.
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden_dims: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        task: str = "classification",
    ) -> None:
        super().__init__()
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be classification or regression, got {task!r}")
        self.task = task
        layers: list[nn.Module] = []
        width = int(n_features)
        for hidden in hidden_dims:
            layers += [nn.Linear(width, int(hidden)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(float(dropout)))
            width = int(hidden)
        layers.append(nn.Linear(width, int(n_outputs)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, classes]`` or values ``[N, 1]``."""
        out: torch.Tensor = self.net(x)
        return out


def predict_output(module: TabularMLP, X: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Class probabilities ``[N, C]`` (classification) or predictions ``[N]`` (regression)."""
    module.eval()
    with torch.no_grad():
        out = module(torch.as_tensor(np.asarray(X, dtype=np.float32), device=device))
        if module.task == "classification":
            return torch.softmax(out, dim=1).cpu().numpy().astype(np.float64)
        return out[:, 0].cpu().numpy().astype(np.float64)


def state_bytes(module: nn.Module) -> bytes:
    """The module's state dict as ``torch.save`` bytes (CPU tensors)."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    return buffer.getvalue()


def load_tabular_mlp(config: Mapping[str, Any], state: bytes) -> TabularMLP:
    """Rebuild a network from ``model_config.json``'s content and ``model.pt``'s bytes.

    Example:
        >>> net = TabularMLP(n_features=2, n_outputs=1, hidden_dims=[4], task="regression")
        >>> cfg = {"n_features": 2, "n_outputs": 1, "hidden_dims": [4], "dropout": 0.0, "task": "regression"}
        >>> again = load_tabular_mlp(cfg, state_bytes(net))
        >>> import numpy as np
        >>> bool(np.allclose(predict_output(net, np.ones((2, 2))), predict_output(again, np.ones((2, 2)))))
        True
    """
    module = TabularMLP(**dict(config))
    loaded = torch.load(io.BytesIO(state), map_location="cpu", weights_only=True)
    module.load_state_dict(loaded)
    module.eval()
    return module
