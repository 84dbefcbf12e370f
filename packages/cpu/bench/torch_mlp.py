# PyTorch side of bench/pytorch.ts: one SGD training step of an MLP per "step float32" or
# "step float64" line on stdin (one model per dtype), answering with the step's own seconds, so
# the Node process can alternate it with nbit's steps.
import json
import sys
import time

import torch
import torch.nn.functional as F

config = json.loads(sys.stdin.readline())
torch.set_num_threads(config["threads"])
torch.manual_seed(0)
dims, batch = config["dims"], config["batch"]


def setup(dtype):
    torch.manual_seed(0)
    layers = []
    for k in range(len(dims) - 1):
        layers.append(torch.nn.Linear(dims[k], dims[k + 1]))
        if k + 2 < len(dims):
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    batches = [(torch.randn(batch, dims[0], dtype=dtype), torch.randint(0, dims[-1], (batch,))) for _ in range(8)]
    return {"model": model, "optimizer": optimizer, "batches": batches, "i": 0}


runs = {"float32": setup(torch.float32), "float64": setup(torch.float64)}
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    words = line.split()
    if len(words) != 2 or words[0] != "step" or words[1] not in runs:
        break
    run = runs[words[1]]
    x, y = run["batches"][run["i"] % len(run["batches"])]
    run["i"] += 1
    t0 = time.perf_counter()
    loss = F.cross_entropy(run["model"](x), y)
    run["optimizer"].zero_grad(set_to_none=True)
    loss.backward()
    run["optimizer"].step()
    value = loss.item()
    print(json.dumps({"seconds": time.perf_counter() - t0, "loss": value}), flush=True)
