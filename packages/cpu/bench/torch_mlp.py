# PyTorch side of bench/pytorch.ts: one SGD training step of an MLP per "step" line on stdin,
# answering with the step's own seconds, so the Node process can alternate it with nbit's step.
import json
import sys
import time

import torch
import torch.nn.functional as F

config = json.loads(sys.stdin.readline())
torch.set_num_threads(config["threads"])
torch.manual_seed(0)
dtype = torch.float64 if config["dtype"] == "float64" else torch.float32
dims, batch = config["dims"], config["batch"]
layers = []
for k in range(len(dims) - 1):
    layers.append(torch.nn.Linear(dims[k], dims[k + 1]))
    if k + 2 < len(dims):
        layers.append(torch.nn.ReLU())
model = torch.nn.Sequential(*layers).to(dtype)
optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
batches = [(torch.randn(batch, dims[0], dtype=dtype), torch.randint(0, dims[-1], (batch,))) for _ in range(8)]
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
i = 0
for line in sys.stdin:
    if line.strip() != "step":
        break
    x, y = batches[i % len(batches)]
    i += 1
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    value = loss.item()
    print(json.dumps({"seconds": time.perf_counter() - t0, "loss": value}), flush=True)
