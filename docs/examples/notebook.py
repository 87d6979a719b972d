# %% [markdown]
# # attrobust in a notebook: your own model, your own DataLoader
#
# A Jupytext notebook (`jupytext --to notebook notebook.py` opens it in Jupyter; the test suite runs it as a script:
# tests/test_api.py). It trains a small network of its own in plain PyTorch, evaluates it with attrobust on a
# DataLoader, and hands the images, perturbed images and maps to an analysis of its own.

# %%
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attrobust import api

torch.manual_seed(0)
train_x, train_y = api.images("mnist_mini", split="train")  # float32 NCHW in [0, 1], int64 labels
test_x, test_y = api.images("mnist_mini", split="test")

# %% [markdown]
# A network of your own: it takes images in [0, 1] (a normalisation would live inside it). One epoch of Adam on the
# 4,000 embedded training digits take a few seconds on a CPU.

# %%
net = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
for epoch in range(1):
    for x, y in DataLoader(TensorDataset(train_x, train_y), batch_size=50, shuffle=True):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
net.eval()

# %% [markdown]
# Evaluate it as `attrobust evaluate` would: natural accuracy, accuracy under PGD, and the top-k attack on its
# gradient maps beside the random controls. The overrides are the command's own; `dataset=mnist_mini` chooses the
# threat model (eps 0.3) and names the rows. Budgets are small here so that the notebook runs in seconds.

# %%
loader = DataLoader(TensorDataset(test_x, test_y), batch_size=100)
result = api.evaluate(net, loader, "dataset=mnist_mini", "explainer=gradient", "eval.num_examples=20",
                      "threat.pgd.steps=10", "attribution_attack.steps=10", "figure_examples=4",
                      out="outputs/api/notebook")
result.table[["attack", "NA (%)", "AA (%)", "IN (%)", "CO"]]

# %% [markdown]
# Every image's numbers, as the per-image files of the command hold them:

# %%
result.per_image["attacks"].head()

# %% [markdown]
# The figure's images as plain arrays, for an analysis of your own (or Quantus): images, perturbed images, both maps
# and each per-image measure. The perturbed images stay in the eps-ball and in [0, 1].

# %%
examples = result.examples()
moved = np.abs(examples["perturbed"] - examples["image"]).max()
print(f"{len(examples['index'])} images; largest pixel change {moved:.3f} (eps {examples['eps']:.3f}); "
      f"maps {examples['original_map'].shape}")
assert moved <= examples["eps"] + 1e-6 and examples["perturbed"].min() >= 0 and examples["perturbed"].max() <= 1
